"""`describe service` (kubectl's ServiceDescriber), endpoints from Endpoints or EndpointSlices."""

from __future__ import annotations

from netk8s.cli.describe.common import (
    Writer,
    describe_events,
    events_for,
    metadata_block,
    optional,
    same_namespace,
)
from netk8s.cli.describe.registry import describer
from netk8s.cli.printers import NONE, _int, _meta, _spec, _status, format_endpoints, format_labels


def _service_endpoints(svc: dict, related: dict[str, list[dict]], port_name: str) -> str:
    """The Endpoints line of one service port: from the Service's Endpoints object, else from its
    EndpointSlices (kubectl >= 1.33 reads slices), `<none>` when there is neither."""
    name = _meta(svc).get("name")
    endpoints = [e for e in related.get("Endpoints") or []
                 if _meta(e).get("name") == name and same_namespace(e, svc)]
    if endpoints:
        return format_endpoints(endpoints[0], {port_name})
    slices = [s for s in related.get("EndpointSlice") or [] if same_namespace(s, svc)
              and (_meta(s).get("labels") or {}).get("kubernetes.io/service-name") == name]
    if not slices:
        return NONE
    listed: list[str] = []
    count = 0
    for s in slices:
        ready_addrs = [str((ep.get("addresses") or [""])[0]) for ep in s.get("endpoints") or []
                       if (ep.get("conditions") or {}).get("ready") is not False]
        ports = s.get("ports") or []
        if not ports:
            listed += ready_addrs
            count += len(ready_addrs)
            continue
        for port in ports:
            if (port.get("name") or "") == port_name:
                listed += [f"[{a}]:{port.get('port')}" if ":" in a else f"{a}:{port.get('port')}"
                           for a in ready_addrs]
                count += len(ready_addrs)
    ret = ",".join(listed[:3])
    return f"{ret} + {count - 3} more..." if count > 3 else ret


@describer("Service")
def describe_service(w: Writer, svc: dict, related: dict[str, list[dict]], now: float) -> None:
    meta, spec, status = _meta(svc), _spec(svc), _status(svc)
    svc_type = spec.get("type") or "ClusterIP"
    cluster_ip = spec.get("clusterIP") or ""
    metadata_block(w, meta, meta.get("namespace") or "default")
    w.write(0, f"Selector:\t{format_labels(spec.get('selector'))}\n")
    w.write(0, f"Type:\t{svc_type}\n")
    # The API server defaults IP families for every type but ExternalName.
    policy = spec.get("ipFamilyPolicy")
    families = spec.get("ipFamilies") or []
    if svc_type != "ExternalName":
        policy = policy or "SingleStack"
        families = families or ["IPv6" if ":" in cluster_ip else "IPv4"]
    if policy:
        w.write(0, f"IP Family Policy:\t{policy}\n")
    w.write(0, f"IP Families:\t{','.join(families) or NONE}\n")
    w.write(0, f"IP:\t{cluster_ip}\n")
    cluster_ips = spec.get("clusterIPs") or ([cluster_ip] if cluster_ip else [])
    w.write(0, f"IPs:\t{','.join(cluster_ips) or NONE}\n")
    if spec.get("externalIPs"):
        w.write(0, f"External IPs:\t{','.join(spec['externalIPs'])}\n")
    optional(w, 0, "IP", spec.get("loadBalancerIP"))
    optional(w, 0, "LoadBalancer Class", spec.get("loadBalancerClass"))
    optional(w, 0, "External Name", spec.get("externalName"))
    ingress = (status.get("loadBalancer") or {}).get("ingress") or []
    if ingress:
        parts = [(i.get("ip") or i.get("hostname") or "") + (f" ({i['ipMode']})" if i.get("ipMode") else "")
                 for i in ingress]
        w.write(0, f"LoadBalancer Ingress:\t{', '.join(parts)}\n")
    for port in spec.get("ports") or []:
        name = port.get("name") or "<unset>"
        proto = port.get("protocol") or "TCP"
        target = port.get("targetPort", port.get("port"))
        w.write(0, f"Port:\t{name}\t{port.get('port')}/{proto}\n")
        w.write(0, f"TargetPort:\t{target}/{proto}\n")
        if _int(port.get("nodePort")):
            w.write(0, f"NodePort:\t{name}\t{_int(port.get('nodePort'))}/{proto}\n")
        w.write(0, f"Endpoints:\t{_service_endpoints(svc, related, port.get('name') or '')}\n")
    w.write(0, f"Session Affinity:\t{spec.get('sessionAffinity') or 'None'}\n")
    external_policy = spec.get("externalTrafficPolicy") or (
        "Cluster" if svc_type in ("NodePort", "LoadBalancer") else "")
    if external_policy:
        w.write(0, f"External Traffic Policy:\t{external_policy}\n")
    internal_policy = spec.get("internalTrafficPolicy") or ("Cluster" if svc_type != "ExternalName" else "")
    if internal_policy:
        w.write(0, f"Internal Traffic Policy:\t{internal_policy}\n")
    if _int(spec.get("healthCheckNodePort")):
        w.write(0, f"HealthCheck NodePort:\t{_int(spec['healthCheckNodePort'])}\n")
    if spec.get("loadBalancerSourceRanges"):
        w.write(0, f"LoadBalancer Source Ranges:\t{','.join(spec['loadBalancerSourceRanges'])}\n")
    describe_events(w, events_for(svc, related), now)
