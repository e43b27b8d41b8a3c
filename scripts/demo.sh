#!/usr/bin/env bash
# `sudo make demo`: bring up a 3-node lab and run the Kubernetes docs' nginx Deployment end to end.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
nk="$here/.venv/bin/netk8s"
export NETK8S_LAB=${NETK8S_LAB:-demo}
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

if [ -f "/var/lib/netk8s/$NETK8S_LAB/lab.json" ]; then
  echo "removing the previous '$NETK8S_LAB' lab"
  "$nk" lab down --name "$NETK8S_LAB"
fi
step "$nk" lab up --nodes 3
step "$nk" get nodes -o wide
step "$nk" apply -f "$here/examples/nginx-deployment.yaml"
step "$nk" apply -f "$here/examples/busybox.yaml"
step "$nk" wait --for=condition=Ready pod -l app=nginx --timeout 60s
step "$nk" wait --for=condition=Ready pod/busybox --timeout 60s
step "$nk" get pods -o wide
ip=$("$nk" get pods -l app=nginx -o json | "$here/.venv/bin/python" -c \
  'import json,sys; print(json.load(sys.stdin)["items"][0]["status"]["podIP"])')
step "$nk" exec busybox -- wget -qO- "http://$ip/"
step "$nk" logs "$("$nk" get pods -l app=nginx -o name | head -n1 | cut -d/ -f2)"
cat <<TXT

The lab '$NETK8S_LAB' is still up. Explore it:
  export NETK8S_LAB=$NETK8S_LAB
  netk8s get pods -o wide
  netk8s lab exec node1 -- ip route
  netk8s exec busybox -- hostname
Remove it with: sudo netk8s lab down --name $NETK8S_LAB
TXT
