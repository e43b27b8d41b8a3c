"""`python -m netk8s.node`: run the node agent in the current network namespace (the node)."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

from netk8s.node.agent import AgentConfig, NodeAgent
from netk8s.node.kubelet_api import server_tls
from netk8s.node.registration import KUBELET_PORT
from netk8s.store.factory import open_store


def proxy_plugins(mode: str, cfg: AgentConfig, ipvs_scheduler: str = "rr") -> list:
    """The kube-proxy role of this node, in the chosen mode (IPVS only where the kernel has it)."""
    from netk8s.proxy.model import NodeContext

    node = NodeContext(node_name=cfg.node, node_ips=(cfg.node_ip,))
    if mode == "ipvs":
        from netk8s.dataplane import ipvs

        ipvs.require_support()
    if mode in ("iptables", "nftables", "userspace", "ipvs"):
        from netk8s.proxy.modes import cleanup_other_modes

        # A node changing proxy mode keeps no rule of its previous mode (kube-proxy --cleanup).
        cleanup_other_modes(mode)
    if mode in ("iptables", "nftables", "userspace", "ipvs"):
        from netk8s.proxy.modes import kernel_proxier

        return [kernel_proxier(mode, node, ipvs_scheduler)]
    if mode == "none":
        return []
    raise SystemExit(f"--proxy-mode: {mode!r} is not implemented yet")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="netk8s-node")
    ap.add_argument("--lab", required=True)
    ap.add_argument("--node", required=True)
    ap.add_argument("--node-ip", required=True)
    ap.add_argument("--store", required=True)
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--overlay", default="vxlan", choices=["vxlan", "host-gw"])
    ap.add_argument("--pod-cidr")
    ap.add_argument("--proxy-mode", default="iptables")
    ap.add_argument("--ipvs-scheduler", default="rr", help="IPVS mode's scheduler: rr, lc, sh, ... (ipvsadm(8))")
    ap.add_argument("--node-resolv", default="/etc/resolv.conf",
                    help="the node's resolver configuration (pods with dnsPolicy Default get it)")
    ap.add_argument("--kubelet-token-file", default="",
                    help="serve the kubelet API (exec, logs) on NODE_IP:--kubelet-port to this bearer token")
    ap.add_argument("--kubelet-port", type=int, default=KUBELET_PORT)
    ap.add_argument("--kubelet-tls-cert", default="", help="serve the kubelet API over TLS with this cert")
    ap.add_argument("--kubelet-tls-key", default="")
    ap.add_argument("--log-level", default="INFO")
    args = ap.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    store = open_store(args.store)
    cfg = AgentConfig(lab=args.lab, node=args.node, node_ip=args.node_ip, state_dir=Path(args.state_dir),
                      overlay=args.overlay, pod_cidr=args.pod_cidr, node_resolv=args.node_resolv)
    agent = NodeAgent(store, cfg)
    agent.plugins.extend(proxy_plugins(args.proxy_mode, cfg, args.ipvs_scheduler))
    from netk8s.policy.droplog import FILE_NAME as DROPS_FILE
    from netk8s.policy.syncer import PolicySyncer

    agent.plugins.append(PolicySyncer(cfg.node, drops_file=cfg.state_dir / DROPS_FILE))
    kubelet = None
    if args.kubelet_token_file:
        token = Path(args.kubelet_token_file).read_text().strip()
        tls = server_tls(args.kubelet_tls_cert, args.kubelet_tls_key) if args.kubelet_tls_cert else None
        kubelet = agent.start_kubelet_api(token, tls, args.kubelet_port)
    try:
        agent.run(stop)
    finally:
        if kubelet is not None:
            kubelet.stop()
    store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
