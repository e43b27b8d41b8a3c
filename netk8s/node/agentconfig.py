"""The node agent's configuration: which lab and node it is, its address, state directory and overlay."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from netk8s import config


@dataclass
class AgentConfig:
    lab: str
    node: str
    node_ip: str
    state_dir: Path
    overlay: str = "vxlan"
    pod_cidr: str | None = None
    mtu: int = config.UNDERLAY_MTU - config.VXLAN_OVERHEAD
    node_resolv: str = "/etc/resolv.conf"
