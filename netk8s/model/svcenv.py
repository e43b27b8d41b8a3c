"""Service environment variables (pure): the docker-links style variables kubelet gives every container.

Follows kubernetes/kubernetes pkg/kubelet/envvars/envvars.go (FromServices, makeLinkVariables) and
kubelet_pods.go getServiceEnvVarMap: Services of the pod's namespace that have a ClusterIP (not
headless, not ExternalName) when enableServiceLinks is true, plus the `kubernetes` Service of `default`
always (a same-named Service in the pod's own namespace wins over it when links are enabled).
"""

from __future__ import annotations

MASTER_SERVICES = ("kubernetes",)


def env_var_name(name: str) -> str:
    """makeEnvVariableName: upper case, `-` -> `_` (dots stay, as upstream leaves them)."""
    return name.replace("-", "_").upper()


def _has_cluster_ip(svc: dict) -> bool:
    """v1helper.IsServiceIPSet: clusterIP neither "None" nor empty."""
    ip = (svc.get("spec") or {}).get("clusterIP")
    return bool(ip) and ip != "None"


def _ports(svc: dict) -> list[dict]:
    return [p for p in (svc.get("spec") or {}).get("ports") or [] if isinstance(p, dict)]


def _host_port(ip: str, port: int) -> str:
    """net.JoinHostPort: IPv6 addresses in brackets."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def service_vars(svc: dict) -> dict[str, str]:
    """The variables of one Service (FromServices for a single Service), in kubelet's order."""
    ports = _ports(svc)
    if not _has_cluster_ip(svc) or not ports:
        return {}
    ip = str(svc["spec"]["clusterIP"])
    prefix = env_var_name(str((svc.get("metadata") or {}).get("name", "")))
    out: dict[str, str] = {f"{prefix}_SERVICE_HOST": ip, f"{prefix}_SERVICE_PORT": str(ports[0]["port"])}
    for sp in ports:
        if sp.get("name"):
            out[f"{prefix}_SERVICE_PORT_{env_var_name(str(sp['name']))}"] = str(sp["port"])
    for i, sp in enumerate(ports):
        proto = str(sp.get("protocol") or "TCP")
        url = f"{proto.lower()}://{_host_port(ip, int(sp['port']))}"
        if i == 0:
            out[f"{prefix}_PORT"] = url  # Docker special-cases the first port
        port_prefix = f"{prefix}_PORT_{sp['port']}_{proto.upper()}"
        out[port_prefix] = url
        out[f"{port_prefix}_PROTO"] = proto.lower()
        out[f"{port_prefix}_PORT"] = str(sp["port"])
        out[f"{port_prefix}_ADDR"] = ip
    return out


def service_env(services: list[dict], namespace: str, enable_service_links: bool = True) -> dict[str, str]:
    """kubelet's Service variables for a pod in `namespace`, from every Service in the cluster.

    `services` may hold Services of every namespace (others are ignored, except default/kubernetes).
    With enable_service_links False only the master Service (`kubernetes`) variables remain.
    """
    chosen: dict[str, dict] = {}
    for svc in sorted(services, key=lambda s: ((s.get("metadata") or {}).get("namespace") or "default",
                                              (s.get("metadata") or {}).get("name") or "")):
        if not _has_cluster_ip(svc):
            continue
        md = svc.get("metadata") or {}
        name = str(md.get("name") or "")
        ns = str(md.get("namespace") or "default")
        if ns == "default" and name in MASTER_SERVICES:
            chosen.setdefault(name, svc)
        elif ns == namespace and enable_service_links:
            chosen[name] = svc
    env: dict[str, str] = {}
    for name in sorted(chosen):
        env.update(service_vars(chosen[name]))
    return env
