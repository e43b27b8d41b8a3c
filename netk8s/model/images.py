"""The image table: what a container's image + command/args run as on the host, and its environment.

Images cannot be pulled, so well-known images map to built-in behaviour (README, "Images").
Kubernetes' command/args rules apply to every image
(https://kubernetes.io/docs/tasks/inject-data-application/define-command-argument-container/):
`command` replaces the image's ENTRYPOINT, `args` replaces its CMD; with `command` and no `args` the
image's CMD is dropped too. Pure: no I/O.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping

from netk8s.errors import NetK8sError, ValidationError

NGINX_MODULE = "netk8s.images.nginx"
AGNHOST_MODULE = "netk8s.images.agnhost"
# The cluster DNS image `lab up` deploys (netk8s.io/kube-dns): netk8s's dnslib server, args as given.
DNS_IMAGE = "netk8s.io/kube-dns:1.0"
DNS_MODULE = "netk8s.dns"
# ingress-nginx's controller image (registry.k8s.io/ingress-nginx/controller; the older
# quay.io/kubernetes-ingress-controller/nginx-ingress-controller) runs netk8s's ingress controller, which
# drives Debian's nginx. Its ENTRYPOINT is `dumb-init --`, its CMD `/nginx-ingress-controller`.
INGRESS_IMAGE = "registry.k8s.io/ingress-nginx/controller:v1.11.2"
INGRESS_MODULE = "netk8s.ingress"
INGRESS_ENTRYPOINT_WORDS = ("dumb-init", "--", "nginx-ingress-controller")
AGNHOST_SUBCOMMANDS = ("netexec", "serve-hostname", "pause")
SLEEP_FOREVER = ["sleep", "infinity"]


class ImageUnsupported(NetK8sError):
    """The container's image has no built-in behaviour and no command to run instead."""


def image_name(image: str) -> str:
    """The bare repository name of an image reference: registry, path, tag and digest stripped.

    `docker.io/library/nginx:1.17` -> `nginx`; `registry.k8s.io/e2e-test-images/agnhost:2.39` ->
    `agnhost`; `localhost:5000/busybox@sha256:ab..` -> `busybox`.
    """
    ref = image.strip().split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    return last.split(":", 1)[0].lower()


def is_ingress_nginx(image: str) -> bool:
    """Whether an image reference names ingress-nginx's controller image (any registry, tag or digest)."""
    ref = image.strip().split("@", 1)[0].lower()
    repo, _, last = ref.rpartition("/")
    path = f"{repo}/{last.split(':', 1)[0]}" if repo else last.split(":", 1)[0]
    return path.endswith(("ingress-nginx/controller", "nginx-ingress-controller"))


def _ingress_nginx(words: list[str], python: str) -> list[str]:
    """The controller's flags, with the image's entrypoint words (`/usr/bin/dumb-init -- /nginx-ingress-
    controller`) dropped from the front."""
    while words and posixpath.basename(words[0]) in INGRESS_ENTRYPOINT_WORDS:
        words = words[1:]
    return [python, "-m", INGRESS_MODULE, *words]


def _unsupported(image: str) -> ImageUnsupported:
    return ImageUnsupported(
        f"image {image!r} is not supported: give a command, or use nginx, busybox, alpine, agnhost or kube-dns",
        hint="set spec.containers[].command to a program that exists on the node",
    )


def _container_port(container: Mapping, default: int) -> int:
    for port in container.get("ports") or []:
        if (port.get("protocol") or "TCP").upper() == "TCP" and port.get("containerPort"):
            return int(port["containerPort"])
    return default


def _agnhost(image: str, words: list[str], python: str) -> list[str]:
    """agnhost's ENTRYPOINT is agnhost itself; its CMD is `pause`."""
    words = words or ["pause"]
    if words[0] not in AGNHOST_SUBCOMMANDS:
        raise ImageUnsupported(
            f"image {image!r}: agnhost subcommand {words[0]!r} is not supported "
            f"(supported: {', '.join(AGNHOST_SUBCOMMANDS)})",
            hint="use agnhost netexec, serve-hostname or pause, or give a command",
        )
    return [python, "-m", AGNHOST_MODULE, *words]


def _nginx(container: Mapping, python: str) -> list[str]:
    return [python, "-m", NGINX_MODULE, "--port", str(_container_port(container, 80))]


def expand(text: str, mapping: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion (third_party/forked/golang/expansion): `$(NAME)` becomes the
    value when NAME is defined and stays as written otherwise; `$$` is an escaped `$`."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "$" or i + 1 >= n:
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            close = text.find(")", i + 2)
            if close < 0:
                out.append(text[i:])
                break
            name = text[i + 2:close]
            out.append(mapping[name] if name in mapping else text[i:close + 1])
            i = close + 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def container_argv(container: Mapping, python: str, env: Mapping[str, str] | None = None) -> list[str]:
    """The host argv a container runs, from its image and Kubernetes command/args.

    `python` is the interpreter used for built-in images. `env` (the container's environment) is used
    for $(VAR) expansion in command and args, as kubelet does.
    """
    image = str(container.get("image") or "")
    name = image_name(image)
    mapping = env or {}
    command = [expand(str(w), mapping) for w in (container.get("command") or [])]
    args = [expand(str(w), mapping) for w in (container.get("args") or [])]
    if is_ingress_nginx(image):
        return _ingress_nginx(command + args, python)
    if "agnhost" in name:
        # Manifests often spell the entrypoint out (`command: ["/agnhost", "netexec"]`).
        if command and posixpath.basename(command[0]) == "agnhost":
            return _agnhost(image, command[1:] + args, python)
        if not command:
            return _agnhost(image, args, python)
    elif name.startswith("nginx"):
        # nginx's CMD is `nginx -g "daemon off;"`; the entrypoint script execs any other args as given.
        words = command or args
        if not words or posixpath.basename(words[0]) == "nginx":
            return _nginx(container, python)
        if not command:
            return args
    elif name == "kube-dns" and not command:
        return [python, "-m", DNS_MODULE, *args]
    elif name.startswith(("busybox", "alpine")) and not command:
        # No ENTRYPOINT; CMD is `sh`, which would exit at once on /dev/null, so sleep instead.
        return args or list(SLEEP_FOREVER)
    if command:
        return command + args
    raise _unsupported(image)


def field_context(pod: Mapping, host_ip: str = "") -> dict[str, str]:
    """The downward-API values of a pod, keyed by fieldPath, for env_list_to_dict."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    ctx = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", "default"),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
        "status.podIP": status.get("podIP", ""),
        "status.hostIP": status.get("hostIP", "") or host_ip,
    }
    for key, value in (meta.get("labels") or {}).items():
        ctx[f"metadata.labels['{key}']"] = str(value)
    for key, value in (meta.get("annotations") or {}).items():
        ctx[f"metadata.annotations['{key}']"] = str(value)
    return {k: str(v) for k, v in ctx.items()}


def env_list_to_dict(
    container_env: list[dict] | None,
    context: Mapping[str, str] | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """A container's `env` list as a dict, the way kubelet builds it.

    `base` (e.g. service-link variables) comes first and may be overridden. Each `value` is $(VAR)
    expanded against the variables defined before it; `valueFrom.fieldRef` reads `context`
    (fieldPath -> value, see field_context). Other valueFrom sources raise ValidationError.
    """
    ctx = context or {}
    out: dict[str, str] = dict(base or {})
    for i, item in enumerate(container_env or []):
        name = item.get("name")
        if not name:
            raise ValidationError(f"env[{i}].name: required")
        source = item.get("valueFrom")
        if source:
            field_ref = source.get("fieldRef")
            if not field_ref:
                kind = next(iter(source), "valueFrom")
                raise ValidationError(f"env[{i}].valueFrom.{kind}: not supported (only fieldRef)")
            path = field_ref.get("fieldPath", "")
            if path not in ctx:
                raise ValidationError(f"env[{i}].valueFrom.fieldRef.fieldPath: unsupported {path!r}")
            out[name] = ctx[path]
        else:
            out[name] = expand(str(item.get("value", "")), out)
    return out
