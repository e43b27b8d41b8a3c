#!/usr/bin/env bash
# Provisions one machine of the Vagrant lab; vagrant/Vagrantfile runs it as root in each VM:
#   provision.sh control-plane --name LAB --nodes N --proxy-mode MODE --overlay OVERLAY --bundle TAR
#   provision.sh agent --node NODE --name LAB --nodes N --proxy-mode MODE --overlay OVERLAY
# 1. installs netk8s from the synced folder with the same scripts/install-deps.sh (venv /opt/netk8s/venv);
# 2. control plane: `netk8s lab pki` makes the lab's CA, certificates, kubeconfigs and kubelet token and
#    exports the host's kubeconfig and each worker's files, bundled into TAR for the Vagrantfile's trigger;
#    worker: `netk8s lab join` installs this node's files from the synced folder's vagrant/.cluster;
# 3. `netk8s lab units` writes the systemd units (the argv the one-machine lab runs); they are enabled
#    and restarted; on the control plane `netk8s lab addons` then applies kube-dns and ingress-nginx.
#    Running it again re-provisions in place (the CA and the kubelet token are kept).
# docs/vagrant.md explains each step.
set -euo pipefail

usage="usage: provision.sh control-plane|agent [--node NODE] [--bundle TAR] [netk8s lab options...]"
kind=${1:?$usage}
shift
case $kind in
  control-plane|agent) ;;
  *) echo "provision.sh: $kind: not a machine kind ($usage)" >&2; exit 2 ;;
esac
bundle=""
args=()
while [ $# -gt 0 ]; do
  case $1 in
    --bundle) bundle=${2:?--bundle needs a path}; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done

src=${NETK8S_SRC:-/vagrant}
cluster=$src/vagrant/.cluster
export NETK8S_VENV=${NETK8S_VENV:-/opt/netk8s/venv}
# A machine needs neither the QEMU guest kernel (VM nodes) nor the tools only the test suite runs.
export NETK8S_NO_VM_KERNEL=1 NETK8S_NO_TEST_TOOLS=1
bash "$src/scripts/install-deps.sh"
netk8s=$NETK8S_VENV/bin/netk8s

# Debian's packages bring services of their own that netk8s starts itself (etcd-server's etcd.service)
# or runs only inside pods (nginx): keep them off, so the machine runs only the units below.
for service in etcd.service nginx.service; do
  if systemctl list-unit-files "$service" >/dev/null 2>&1; then
    systemctl disable --now "$service" >/dev/null 2>&1 || true
  fi
done

case $kind in
  control-plane)
    [ -n "$bundle" ] || { echo "provision.sh: control-plane needs --bundle TAR" >&2; exit 2; }
    export_dir=$(mktemp -d)
    trap 'rm -rf "$export_dir"' EXIT
    "$netk8s" lab pki "${args[@]}" --export "$export_dir"
    tar -C "$export_dir" -cf "$bundle.tmp" .
    chmod 600 "$bundle.tmp"
    chown "$(stat -c %U "$(dirname "$bundle")")" "$bundle.tmp"
    mv "$bundle.tmp" "$bundle"
    ;;
  agent)
    "$netk8s" lab join "${args[@]}" --from "$cluster" --timeout "${NETK8S_JOIN_TIMEOUT:-60s}"
    ;;
esac

unit_paths=$("$netk8s" lab units --role "$kind" "${args[@]}")
mapfile -t units <<<"$unit_paths"
systemctl daemon-reload
for unit in "${units[@]}"; do
  name=$(basename "$unit")
  systemctl enable "$name"
  systemctl restart "$name"
  echo "netk8s: $name started (journalctl -u $name)"
done

# The add-ons `lab up` deploys (kube-dns, ingress-nginx), once the API server answers; their pods start
# as the workers join.
if [ "$kind" = control-plane ]; then
  "$netk8s" lab addons "${args[@]}"
fi
