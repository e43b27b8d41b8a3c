"""The container and pod-template blocks that pods and workloads share (describeContainers, probes,
environment, states, volumes, DescribePodTemplate)."""

from __future__ import annotations

import re

from netk8s.cli.describe.common import (
    Writer,
    annotations_multiline,
    format_rfc1123z,
    int_or_string,
    labels_multiline,
    optional,
    or_none,
    print_bool,
    resource_lists,
    tolerations_multiline,
)
from netk8s.cli.printers import NONE, _int, _meta, _spec, _status


def describe_probe(probe: dict) -> str:
    """DescribeProbe, with the API server's defaults for unset fields (timeout 1s, period 10s,
    success 1, failure 3, HTTP scheme, path /)."""
    attrs = (f"delay={_int(probe.get('initialDelaySeconds'))}s timeout={_int(probe.get('timeoutSeconds'), 1)}s "
             f"period={_int(probe.get('periodSeconds'), 10)}s #success={_int(probe.get('successThreshold'), 1)} "
             f"#failure={_int(probe.get('failureThreshold'), 3)}")
    if probe.get("exec") is not None:
        return f"exec [{' '.join(str(a) for a in probe['exec'].get('command') or [])}] {attrs}"
    if probe.get("httpGet") is not None:
        http = probe["httpGet"]
        scheme = str(http.get("scheme") or "HTTP").lower()
        host, port = str(http.get("host") or ""), int_or_string(http.get("port"))
        netloc = (f"[{host}]:{port}" if ":" in host else f"{host}:{port}") if port else host
        path = str(http.get("path") or "/")
        if not path.startswith("/"):
            path = "/" + path
        return f"http-get {scheme}://{netloc}{path} {attrs}"
    if probe.get("tcpSocket") is not None:
        tcp = probe["tcpSocket"]
        return f"tcp-socket {tcp.get('host') or ''}:{int_or_string(tcp.get('port'))} {attrs}"
    if probe.get("grpc") is not None:
        grpc = probe["grpc"]
        return f"grpc <pod>:{_int(grpc.get('port'))} {grpc.get('service') or ''} {attrs}"
    return f"unknown {attrs}"


def _resolve_field(pod: dict | None, path: str) -> str:
    """EnvValueRetriever: the value a downward-API fieldRef resolves to for this pod."""
    if pod is None:
        return ""
    meta, spec, status = _meta(pod), _spec(pod), _status(pod)
    simple = {
        "metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"), "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"), "status.hostIP": status.get("hostIP"),
        "status.podIP": status.get("podIP"),
        "status.podIPs": ",".join(str(i.get("ip", "")) for i in status.get("podIPs") or []) or None,
    }
    if path in simple:
        return str(simple[path] or "")
    m = re.match(r"^metadata\.(labels|annotations)\['(.+)'\]$", path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    return ""


def _describe_env(w: Writer, container: dict, pod: dict | None) -> None:
    env = container.get("env") or []
    w.write(2, "Environment:" + ("" if env else f"\t{NONE}") + "\n")
    for e in env:
        name, source = e.get("name", ""), e.get("valueFrom")
        if source is None:
            for i, line in enumerate(str(e.get("value") or "").split("\n")):
                w.write(3, f"{name}:\t{line}\n" if i == 0 else f"\t{line}\n")
        elif source.get("fieldRef") is not None:
            ref = source["fieldRef"]
            path = ref.get("fieldPath", "")
            w.write(3, f"{name}:\t{_resolve_field(pod, path)} ({ref.get('apiVersion') or 'v1'}:{path})\n")
        elif source.get("resourceFieldRef") is not None:
            ref = source["resourceFieldRef"]
            w.write(3, f"{name}:\t{ref.get('containerName') or container.get('name', '')} "
                       f"({ref.get('resource', '')})\n")
        elif source.get("secretKeyRef") is not None:
            ref = source["secretKeyRef"]
            w.write(3, f"{name}:\t<set to the key '{ref.get('key', '')}' in secret '{ref.get('name', '')}'>\t"
                       f"Optional: {str(bool(ref.get('optional'))).lower()}\n")
        elif source.get("configMapKeyRef") is not None:
            ref = source["configMapKeyRef"]
            w.write(3, f"{name}:\t<set to the key '{ref.get('key', '')}' of config map "
                       f"'{ref.get('name', '')}'>\tOptional: {str(bool(ref.get('optional'))).lower()}\n")


def _describe_state(w: Writer, title: str, state: dict) -> None:
    """describeStatus: Running (Started), Waiting (Reason), Terminated (Reason, Exit Code, times)."""
    if state.get("running") is not None:
        w.write(2, f"{title}:\tRunning\n")
        w.write(3, f"Started:\t{format_rfc1123z(state['running'].get('startedAt'))}\n")
    elif state.get("waiting") is not None:
        waiting = state["waiting"]
        w.write(2, f"{title}:\tWaiting\n")
        optional(w, 3, "Reason", waiting.get("reason"))
        # kubectl leaves the message to Events; netk8s records no events, so it shows it here.
        optional(w, 3, "Message", waiting.get("message"))
    elif state.get("terminated") is not None:
        term = state["terminated"]
        w.write(2, f"{title}:\tTerminated\n")
        optional(w, 3, "Reason", term.get("reason"))
        optional(w, 3, "Message", term.get("message"))
        w.write(3, f"Exit Code:\t{_int(term.get('exitCode'))}\n")
        if _int(term.get("signal")) > 0:
            w.write(3, f"Signal:\t{_int(term.get('signal'))}\n")
        w.write(3, f"Started:\t{format_rfc1123z(term.get('startedAt'))}\n")
        w.write(3, f"Finished:\t{format_rfc1123z(term.get('finishedAt'))}\n")
    else:
        w.write(2, f"{title}:\tWaiting\n")


def describe_containers(w: Writer, label: str, containers: list[dict], statuses: list[dict] | None,
                         pod: dict | None, space: str = "") -> None:
    """describeContainers: one block per container, as kubectl lays it out."""
    by_name = {s.get("name"): s for s in statuses or []}
    w.write(0, f"{space}{label}:{'' if containers else ' ' + NONE}\n")
    name_indent = " " if space else ""
    for c in containers:
        status = by_name.get(c.get("name"))
        w.write(1, f"{name_indent}{c.get('name', '')}:\n")
        if status is not None:
            w.write(2, f"Container ID:\t{status.get('containerID') or ''}\n")
        w.write(2, f"Image:\t{c.get('image', '')}\n")
        if status is not None:
            w.write(2, f"Image ID:\t{status.get('imageID') or ''}\n")
        ports = c.get("ports") or []
        port_list = [f"{p.get('containerPort')}/{p.get('protocol') or 'TCP'}"
                     + (f" ({p['name']})" if p.get("name") else "") for p in ports]
        host_list = [f"{_int(p.get('hostPort'))}/{p.get('protocol') or 'TCP'}" for p in ports]
        w.write(2, (f"Ports:\t{', '.join(port_list)}" if len(port_list) > 1
                    else f"Port:\t{or_none(''.join(port_list))}") + "\n")
        w.write(2, (f"Host Ports:\t{', '.join(host_list)}" if len(host_list) > 1
                    else f"Host Port:\t{or_none(''.join(host_list))}") + "\n")
        for title, words in (("Command", c.get("command")), ("Args", c.get("args"))):
            if words:
                w.write(2, f"{title}:\n")
                for word in words:
                    for line in str(word).split("\n"):
                        w.write(3, f"{line}\n")
        if status is not None:
            _describe_state(w, "State", status.get("state") or {})
            last = status.get("lastState") or {}
            if last.get("terminated") is not None:
                _describe_state(w, "Last State", last)
            w.write(2, f"Ready:\t{print_bool(status.get('ready'))}\n")
            w.write(2, f"Restart Count:\t{_int(status.get('restartCount'))}\n")
        resource_lists(w, 2, c.get("resources") or {}, (("Limits", "limits"), ("Requests", "requests")))
        for title, key in (("Liveness", "livenessProbe"), ("Readiness", "readinessProbe"),
                           ("Startup", "startupProbe")):
            if c.get(key) is not None:
                w.write(2, f"{title}:\t{describe_probe(c[key])}\n")
        _describe_env(w, c, pod)
        mounts = sorted(c.get("volumeMounts") or [], key=lambda m: str(m.get("mountPath", "")))
        w.write(2, "Mounts:" + ("" if mounts else f"\t{NONE}") + "\n")
        for m in mounts:
            flags = ["ro" if m.get("readOnly") else "rw"]
            if m.get("subPath"):
                flags.append(f'path="{m["subPath"]}"')
            w.write(3, f"{m.get('mountPath', '')} from {m.get('name', '')} ({','.join(flags)})\n")


def describe_volumes(w: Writer, volumes: list[dict] | None, space: str = "") -> None:
    if not volumes:
        w.write(0, f"{space}Volumes:\t{NONE}\n")
        return
    w.write(0, f"{space}Volumes:\n")
    name_indent = " " if space else ""
    for vol in volumes:
        w.write(1, f"{name_indent}{vol.get('name', '')}:\n")
        if vol.get("emptyDir") is not None:
            w.write(2, "Type:\tEmptyDir (a temporary directory that shares a pod's lifetime)\n")
            w.write(2, f"Medium:\t{vol['emptyDir'].get('medium') or ''}\n")
            w.write(2, f"SizeLimit:\t{vol['emptyDir'].get('sizeLimit') or '<unset>'}\n")
        elif vol.get("hostPath") is not None:
            w.write(2, "Type:\tHostPath (bare host directory volume)\n")
            w.write(2, f"Path:\t{vol['hostPath'].get('path', '')}\n")
            w.write(2, f"HostPathType:\t{vol['hostPath'].get('type') or ''}\n")
        elif vol.get("configMap") is not None:
            w.write(2, "Type:\tConfigMap (a volume populated by a ConfigMap)\n")
            w.write(2, f"Name:\t{vol['configMap'].get('name', '')}\n")
            w.write(2, f"Optional:\t{str(bool(vol['configMap'].get('optional'))).lower()}\n")
        else:
            kinds = [k for k in vol if k != "name"]
            w.write(2, f"Type:\t{kinds[0] if kinds else '<unknown>'} (a volume netk8s does not describe)\n")


def describe_pod_template(w: Writer, template: dict | None) -> None:
    """DescribePodTemplate: labels, annotations, containers and volumes indented under the owner."""
    w.write(0, "Pod Template:\n")
    if template is None:
        w.write(1, "<unset>")
        return
    meta, spec = template.get("metadata") or {}, template.get("spec") or {}
    labels_multiline(w, "  Labels", meta.get("labels"))
    if meta.get("annotations"):
        annotations_multiline(w, "  Annotations", meta.get("annotations"))
    optional(w, 1, "Service Account", spec.get("serviceAccountName"))
    if spec.get("initContainers"):
        describe_containers(w, "Init Containers", spec["initContainers"], None, None, "  ")
    describe_containers(w, "Containers", spec.get("containers") or [], None, None, "  ")
    describe_volumes(w, spec.get("volumes"), "  ")
    optional(w, 1, "Priority Class Name", spec.get("priorityClassName"))
    labels_multiline(w, "  Node-Selectors", spec.get("nodeSelector"))
    tolerations_multiline(w, "  Tolerations", spec.get("tolerations"))
