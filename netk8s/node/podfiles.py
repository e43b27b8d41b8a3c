"""Pure: the files kubelet writes for a pod (resolv.conf per dnsPolicy, /etc/hosts, hostname)."""

from __future__ import annotations

from netk8s import config


def pod_hostname(pod: dict) -> str:
    """spec.hostname, else the pod name (kubelet truncates to 63 characters)."""
    spec = pod.get("spec") or {}
    return (spec.get("hostname") or pod["metadata"]["name"])[:63].rstrip("-.")


def pod_fqdn(pod: dict, domain: str = config.CLUSTER_DOMAIN) -> str | None:
    """hostname.subdomain.ns.svc.domain when the pod has a subdomain (StatefulSet pods)."""
    spec = pod.get("spec") or {}
    sub = spec.get("subdomain")
    if not sub:
        return None
    ns = pod["metadata"].get("namespace", "default")
    return f"{pod_hostname(pod)}.{sub}.{ns}.svc.{domain}"


def resolv_conf(pod: dict, node_resolv: str, domain: str = config.CLUSTER_DOMAIN,
                dns_ip: str = str(config.DNS_SERVICE_IP)) -> str:
    """The pod's /etc/resolv.conf, as kubelet builds it for each dnsPolicy."""
    spec = pod.get("spec") or {}
    policy = spec.get("dnsPolicy", "ClusterFirst")
    cfg = spec.get("dnsConfig") or {}
    ns = pod["metadata"].get("namespace", "default")
    nameservers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    if policy in ("ClusterFirst", "ClusterFirstWithHostNet"):
        nameservers = [dns_ip]
        searches = [f"{ns}.svc.{domain}", f"svc.{domain}", domain]
        options = ["ndots:5"]
    elif policy == "Default":
        for line in node_resolv.splitlines():
            words = line.split()
            if not words or words[0].startswith(("#", ";")):
                continue
            if words[0] == "nameserver" and len(words) > 1:
                nameservers.append(words[1])
            elif words[0] in ("search", "domain"):
                searches.extend(words[1:])
            elif words[0] == "options":
                options.extend(words[1:])
    # dnsConfig is merged for every policy; with None it is the whole configuration.
    for ip in cfg.get("nameservers") or []:
        if ip not in nameservers:
            nameservers.append(ip)
    for s in cfg.get("searches") or []:
        if s not in searches:
            searches.append(s)
    for opt in cfg.get("options") or []:
        text = opt["name"] + (f":{opt['value']}" if opt.get("value") not in (None, "") else "")
        options = [o for o in options if o.split(":")[0] != opt["name"]] + [text]
    lines = [f"nameserver {ip}" for ip in nameservers[:3]]
    if searches:
        lines.append("search " + " ".join(searches[:32]))
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n"


def hosts_file(pod: dict, pod_ip: str | None) -> str:
    """kubelet's managed /etc/hosts: localhost, the pod's own name, then hostAliases."""
    lines = [
        "# Kubernetes-managed hosts file.",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::0\tip6-localnet",
        "fe00::0\tip6-mcastprefix",
        "fe00::1\tip6-allnodes",
        "fe00::2\tip6-allrouters",
    ]
    if pod_ip:
        fqdn = pod_fqdn(pod)
        host = pod_hostname(pod)
        lines.append(f"{pod_ip}\t{fqdn}\t{host}" if fqdn else f"{pod_ip}\t{host}")
    aliases = (pod.get("spec") or {}).get("hostAliases") or []
    if aliases:
        lines.append("")
        lines.append("# Entries added by HostAliases.")
        for a in aliases:
            lines.append(f"{a['ip']}\t" + "\t".join(a.get("hostnames") or []))
    return "\n".join(lines) + "\n"
