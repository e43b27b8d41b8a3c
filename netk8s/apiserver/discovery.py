"""Discovery documents: /api, /apis, per group-version APIResourceLists, aggregated discovery, /version.

Shapes follow k8s.io/apimachinery/pkg/apis/meta/v1 (APIVersions, APIGroupList, APIResourceList) and
k8s.io/api/apidiscovery/v2 (APIGroupDiscoveryList, served at /api and /apis when the Accept header
asks for `as=APIGroupDiscoveryList;g=apidiscovery.k8s.io;v=v2`, as kubectl 1.34 does).
"""

from __future__ import annotations

import platform

from netk8s.apiserver import resources as res

AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
AGGREGATED_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
# What /version reports: the Kubernetes minor whose API this server follows.
KUBE_VERSION = ("1", "34", "v1.34.0-netk8s")


def api_versions(server_address: str) -> dict:
    """GET /api (APIVersions of the core group)."""
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def _group_entry(group: str, versions: list[str]) -> dict:
    gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": gvs, "preferredVersion": gvs[0]}


def _groups() -> dict[str, list[str]]:
    """group -> versions, in registry order."""
    out: dict[str, list[str]] = {}
    for gv in res.group_versions():
        group, version = res.split_api_version(gv)
        out.setdefault(group, []).append(version)
    return out


def api_group_list() -> dict:
    """GET /apis (APIGroupList of every named group)."""
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [_group_entry(g, vs) for g, vs in _groups().items()]}


def api_group(group: str) -> dict | None:
    """GET /apis/GROUP (APIGroup), None for a group not served."""
    versions = _groups().get(group)
    if not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_entry(group, versions)}


def api_resource_list(group_version: str) -> dict | None:
    """GET /api/v1 or /apis/GROUP/VERSION (APIResourceList), None for a group/version not served."""
    infos = res.kinds_of(group_version)
    if not infos:
        return None
    resources: list[dict] = []
    for info in infos:
        entry: dict = {"name": info.plural, "singularName": info.kind.lower(), "namespaced": info.namespaced,
                       "kind": info.kind, "verbs": res.verbs_of(info)}
        if info.short_names:
            entry["shortNames"] = list(info.short_names)
        if info.kind in res.ALL_CATEGORY:
            entry["categories"] = ["all"]
        resources.append(entry)
        for name, verbs, (group, version, kind) in res.subresources_of(info):
            sub: dict = {"name": f"{info.plural}/{name}", "singularName": "", "namespaced": info.namespaced,
                         "kind": kind, "verbs": list(verbs)}
            if (group, version) != res.split_api_version(info.api_version):
                sub["group"], sub["version"] = group, version
            resources.append(sub)
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}


def _discovery_resource(info: res.KindInfo) -> dict:
    group, version = res.split_api_version(info.api_version)
    entry: dict = {"resource": info.plural, "responseKind": {"group": group, "version": version, "kind": info.kind},
                   "scope": "Namespaced" if info.namespaced else "Cluster",
                   "singularResource": info.kind.lower(), "verbs": res.verbs_of(info)}
    if info.short_names:
        entry["shortNames"] = list(info.short_names)
    if info.kind in res.ALL_CATEGORY:
        entry["categories"] = ["all"]
    subs = [{"subresource": name, "responseKind": {"group": g, "version": v, "kind": k}, "verbs": list(verbs)}
            for name, verbs, (g, v, k) in res.subresources_of(info)]
    if subs:
        entry["subresources"] = subs
    return entry


def _discovery_group(group: str, versions: list[str]) -> dict:
    return {"metadata": {"name": group},
            "versions": [{"version": v, "freshness": "Current",
                          "resources": [_discovery_resource(i) for i in res.kinds_of(f"{group}/{v}" if group else v)]}
                         for v in versions]}


def aggregated(legacy: bool, api_version: str = "apidiscovery.k8s.io/v2") -> dict:
    """The APIGroupDiscoveryList kube-apiserver serves at /api (legacy=True: the core group) or /apis."""
    items = [_discovery_group("", ["v1"])] if legacy else [_discovery_group(g, vs) for g, vs in _groups().items()]
    return {"kind": "APIGroupDiscoveryList", "apiVersion": api_version, "metadata": {}, "items": items}


def wants_aggregated(accept: str) -> str | None:
    """The aggregated discovery media type an Accept header asks for first, or None for the plain lists.

    kubectl sends `application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,...,application/json`."""
    for part in accept.split(","):
        params = {k.strip().lower(): v.strip() for k, _, v in (p.partition("=") for p in part.split(";")[1:])}
        if params.get("as") == "APIGroupDiscoveryList" and params.get("g") == "apidiscovery.k8s.io":
            if params.get("v") == "v2":
                return AGGREGATED_V2
            if params.get("v") == "v2beta1":
                return AGGREGATED_V2BETA1
    return None


def version_info() -> dict:
    """GET /version (version.Info)."""
    major, minor, git = KUBE_VERSION
    return {"major": major, "minor": minor, "gitVersion": git, "gitCommit": "", "gitTreeState": "clean",
            "buildDate": "", "goVersion": "", "compiler": "cpython",
            "platform": f"{platform.system().lower()}/{platform.machine()}"}
