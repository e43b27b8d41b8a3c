"""The one name authority: every kernel object netk8s creates gets its name (and tag) here.

Every network namespace netk8s makes starts with `nk8s-`, so `netk8s clean` can find them with no
saved state. Interface names fit IFNAMSIZ-1 = 15 characters. Chain names follow kube-proxy.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re

from netk8s import config
from netk8s.errors import ValidationError

NETNS_PREFIX = "nk8s-"
PROCESS_TAG_ENV = "NETK8S_TAG"  # every process netk8s starts carries NETK8S_TAG=<lab>
IFNAMSIZ = 15
LAB_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,9}$")

BRIDGE = "cbr0"
UNDERLAY_BRIDGE = "br0"
NODE_UPLINK = "eth0"  # the node's underlay interface, inside the node namespace (never the host's)
POD_IFNAME = "eth0"


def check_lab_name(lab: str) -> str:
    if not LAB_NAME_RE.match(lab):
        raise ValidationError(
            f"--name: lab name {lab!r} must be 1-10 lowercase letters or digits, starting with a letter"
        )
    return lab


def node_name(index: int) -> str:
    """Kubernetes node name of lab node `index` (1-based)."""
    return f"node{index}"


def node_netns(lab: str, node: str) -> str:
    return f"{NETNS_PREFIX}{lab}-{node}"


def switch_netns(lab: str) -> str:
    return f"{NETNS_PREFIX}{lab}-sw"


def external_netns(lab: str) -> str:
    return f"{NETNS_PREFIX}{lab}-ext"


def control_plane_netns(lab: str) -> str:
    """The lab's control-plane namespace (the API server's underlay address, the controller)."""
    return f"{NETNS_PREFIX}{lab}-cp"


def pod_netns(lab: str, pod_uid: str) -> str:
    return f"{NETNS_PREFIX}{lab}-p-{pod_uid.replace('-', '')[:12]}"


def lab_netns_prefix(lab: str) -> str:
    return f"{NETNS_PREFIX}{lab}-"


def short_hash(text: str, n: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def host_veth(pod_uid: str) -> str:
    """Node-side end of a pod's veth pair (like CNI's `veth` + hash)."""
    return f"veth{short_hash(pod_uid)}"


def switch_port(lab: str, node: str) -> str:
    """Switch-side end of a node's underlay link (lives in the switch namespace)."""
    name = f"sw-{node}"
    if len(name) > IFNAMSIZ:
        name = f"sw-{short_hash(node, 10)}"
    return name


def vm_tap(lab: str, node: str) -> str:
    """The tap backing a VM node's eth0 (lives in the switch namespace, like a switch port)."""
    return f"tap-{short_hash(f'{lab}/{node}', 10)}"


def node_ip(index: int) -> ipaddress.IPv4Address:
    return ipaddress.ip_address(int(config.UNDERLAY_CIDR.network_address) + 10 + index)  # type: ignore[return-value]


EXTERNAL_IP = ipaddress.ip_address("192.168.56.100")


def node_pod_cidr(index: int) -> ipaddress.IPv4Network:
    """Node i gets 10.244.i.0/24."""
    base = int(config.CLUSTER_CIDR.network_address)
    return ipaddress.ip_network((base + (index << 8), 24))  # type: ignore[return-value]


# ----- kube-proxy's names (pkg/proxy/iptables, pkg/proxy/nftables, pkg/proxy/ipvs) ----------------------
# iptables mode: the top-level chains (pkg/proxy/iptables/proxier.go) and the per-service prefixes.
KUBE_CHAIN_PREFIX = "KUBE-"  # every chain (and ipset) kube-proxy owns starts with it; cleanup sweeps by it
KUBE_SERVICES = "KUBE-SERVICES"
KUBE_EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
KUBE_NODEPORTS = "KUBE-NODEPORTS"
KUBE_POSTROUTING = "KUBE-POSTROUTING"
KUBE_MARK_MASQ = "KUBE-MARK-MASQ"
KUBE_FORWARD = "KUBE-FORWARD"
KUBE_PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"
SVC_PREFIX = "KUBE-SVC-"
SVL_PREFIX = "KUBE-SVL-"
EXT_PREFIX = "KUBE-EXT-"
FW_PREFIX = "KUBE-FW-"
SEP_PREFIX = "KUBE-SEP-"
# the userspace mode's portal chains (pkg/proxy/userspace, removed upstream in 1.26)
KUBE_PORTALS_CONTAINER = "KUBE-PORTALS-CONTAINER"
KUBE_PORTALS_HOST = "KUBE-PORTALS-HOST"
KUBE_PORTALS_REJECT = "KUBE-PORTALS-REJECT"
KUBE_NODEPORT_CONTAINER = "KUBE-NODEPORT-CONTAINER"
KUBE_NODEPORT_HOST = "KUBE-NODEPORT-HOST"
XLB_PREFIX = "KUBE-XLB-"  # pre-1.24 local-traffic chains, still followed by the rules view
# nftables mode: `table ip kube-proxy`
KUBE_PROXY_TABLE = "kube-proxy"
# ipvs mode (pkg/proxy/ipvs/proxier.go): the dummy device holding every Service IP, its chains and ipsets
KUBE_IPVS_DEVICE = "kube-ipvs0"
KUBE_NODE_PORT = "KUBE-NODE-PORT"
KUBE_LOAD_BALANCER = "KUBE-LOAD-BALANCER"
IPSET_CLUSTER_IP = "KUBE-CLUSTER-IP"
IPSET_LOOP_BACK = "KUBE-LOOP-BACK"
IPSET_EXTERNAL_IP = "KUBE-EXTERNAL-IP"
IPSET_LOAD_BALANCER = "KUBE-LOAD-BALANCER"
IPSET_LOAD_BALANCER_LOCAL = "KUBE-LOAD-BALANCER-LOCAL"
IPSET_NODE_PORT_TCP = "KUBE-NODE-PORT-TCP"
IPSET_NODE_PORT_UDP = "KUBE-NODE-PORT-UDP"
IPSET_NODE_PORT_LOCAL_TCP = "KUBE-NODE-PORT-LOCAL-TCP"
IPSET_NODE_PORT_LOCAL_UDP = "KUBE-NODE-PORT-LOCAL-UDP"

# base32 alphabet (RFC 4648) by pairs: one lookup encodes 10 bits. base64.b32encode is a pure-Python
# loop that was a third of a 10,000-Service render; renders hash every endpoint of every service.
_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_B32_PAIRS = tuple(a + b for a in _B32 for b in _B32)


def kube_chain_hash(prefix: str, text: str) -> str:
    """kube-proxy's chain naming: prefix + first 16 chars of base32(sha256(text)) (the first 80 bits, as
    8 lookups of 10 bits)."""
    n = int.from_bytes(hashlib.sha256(text.encode()).digest()[:10], "big")
    p = _B32_PAIRS
    return (prefix + p[n >> 70] + p[(n >> 60) & 1023] + p[(n >> 50) & 1023] + p[(n >> 40) & 1023]
            + p[(n >> 30) & 1023] + p[(n >> 20) & 1023] + p[(n >> 10) & 1023] + p[n & 1023])


# kube-proxy nftables mode (pkg/proxy/nftables/proxier.go): chain names are `<prefix><HASH>-<base>` with
# knftables.NameLengthMax = 256 and prefixes of at most 16 characters.
NFT_NAME_BASE_MAX = 256 - 16


def kube_nft_name(prefix: str, base: str) -> str:
    """kube-proxy's nftables naming (hashAndTruncate): prefix + first 8 chars of base32(sha256(base)) + "-" +
    base, e.g. `service-ULMVA6XW-ns1/svc1/tcp/p80`; truncated with "..." past 240 characters."""
    n = int.from_bytes(hashlib.sha256(base.encode()).digest()[:5], "big")
    p = _B32_PAIRS
    name = p[n >> 30] + p[(n >> 20) & 1023] + p[(n >> 10) & 1023] + p[n & 1023] + "-" + base
    if len(name) > NFT_NAME_BASE_MAX:
        name = name[:NFT_NAME_BASE_MAX - 3] + "..."
    return prefix + name
