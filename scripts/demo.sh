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
# Services and cluster DNS: the page again, by Service name, through kube-proxy and kube-dns
step "$nk" expose deployment nginx-deployment --name nginx-service --port 80
step "$nk" get svc -o wide
for _ in $(seq 50); do  # the Service's endpoints and rules land within a second or two
  "$nk" exec busybox -- curl -s --max-time 2 http://nginx-service >/dev/null 2>&1 && break
  sleep 0.2
done
step "$nk" exec busybox -- curl -s --max-time 5 http://nginx-service
step "$nk" exec busybox -- dig +short nginx-service.default.svc.cluster.local
step "$nk" exec busybox -- dig +short www.lab.example
cat <<TXT

The lab '$NETK8S_LAB' is still up. Explore it:
  export NETK8S_LAB=$NETK8S_LAB
  netk8s get pods -o wide
  netk8s lab exec node1 -- ip route
  netk8s exec busybox -- hostname
  netk8s exec busybox -- dig +short SRV _dns._udp.kube-dns.kube-system.svc.cluster.local
  netk8s rules --service default/nginx-service
Remove it with: sudo netk8s lab down --name $NETK8S_LAB
TXT
