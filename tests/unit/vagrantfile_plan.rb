# Loads a Vagrantfile against a recording stand-in for Vagrant and prints its machines as JSON (for
# tests/unit/test_vagrant.py): name, hostname, private-network IP, provisioning script and args, plus the
# box, the providers configured and the synced folders. Nothing of the Vagrantfile's blocks runs but the
# configuration (trigger bodies, `t.ruby`, are recorded, not called).
require "json"

class Recorder
  attr_reader :calls

  def initialize
    @calls = []
    @children = {}
  end

  def method_missing(name, *args, **kw, &block)
    if args.empty? && kw.empty? && block.nil? && !name.to_s.end_with?("=")
      return @children[name] ||= Recorder.new
    end
    child = Recorder.new
    @calls << [name.to_s, args, kw, child]
    block.call(child, Recorder.new) if block && name != :ruby
    child
  end

  def respond_to_missing?(*)
    true
  end

  def find(name)
    @calls.select { |c| c[0] == name }
  end
end

module Vagrant
  def self.configure(_version)
    $root = Recorder.new
    yield $root
  end
end

load ARGV.fetch(0)
if ARGV.length == 3
  # `vagrantfile_plan.rb VAGRANTFILE TAR DEST`: unpack a cluster bundle as the control plane's trigger does
  unpack_cluster_bundle(ARGV[1], ARGV[2])
  exit 0
end
vm = $root.method_missing(:vm)
machines = vm.find("define").map do |_, args, kw, m|
  mvm = m.method_missing(:vm)
  net = mvm.find("network").find { |c| c[1][0] == "private_network" }
  prov = mvm.find("provision").first
  {
    "name" => args[0].to_s,
    "primary" => kw[:primary] || false,
    "hostname" => mvm.find("hostname=").map { |c| c[1][0] }.first,
    "ip" => net && net[2][:ip],
    "provision_path" => prov && prov[2][:path],
    "provision_args" => prov && prov[2][:args],
    "triggers" => m.method_missing(:trigger).find("after").map { |c| c[1].map(&:to_s) },
  }
end
puts JSON.generate(
  "box" => vm.find("box=").map { |c| c[1][0] }.first,
  "providers" => vm.find("provider").map { |c| c[1][0].to_s },
  "synced_folders" => vm.find("synced_folder").map { |c| { "host" => c[1][0], "guest" => c[1][1], "type" => c[2][:type] } },
  "machines" => machines,
)
