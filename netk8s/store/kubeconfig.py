"""Kubeconfig files: build one for a lab, read the current (or a named) context, merge into ~/.kube/config.

The format is kubectl's (clientcmd/api/v1 Config): clusters with `server` and the CA inline
(`certificate-authority-data`), users with client certificate/key inline or a bearer `token`, contexts
tying a cluster to a user. A lab's context, cluster and user are all named `netk8s-LAB` (kind names
its `kind-NAME`). Files holding credentials are written 0600, as kind and kubeadm write them.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from netk8s.errors import NetK8sError


def context_name(lab: str) -> str:
    return f"netk8s-{lab}"


@dataclass(frozen=True)
class ClientConfig:
    """What a client needs from a kubeconfig context: where the server is and how to trust and log in."""

    server: str
    ca_data: bytes
    cert_data: bytes = b""
    key_data: bytes = b""
    token: str = ""
    context: str = ""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def build(lab: str, server: str, ca_pem: bytes, cert_pem: bytes = b"", key_pem: bytes = b"",
          token: str = "") -> dict:
    """A kubeconfig with one context `netk8s-LAB` (current) for `server`, credentials inline."""
    name = context_name(lab)
    user: dict = {}
    if cert_pem:
        user["client-certificate-data"] = _b64(cert_pem)
        user["client-key-data"] = _b64(key_pem)
    if token:
        user["token"] = token
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)}}],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }


def dump(config: dict) -> str:
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False)


def write(path: Path, config: dict) -> None:
    """Write a kubeconfig with mode 0600 (created that way, never briefly readable by others)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, dump(config).encode())
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def load(path: Path) -> dict:
    """A kubeconfig file as a dict; NetK8sError naming the file when it is unreadable or not a mapping."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise NetK8sError(f"kubeconfig {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise NetK8sError(f"kubeconfig {path}: not YAML ({exc})") from None
    if not isinstance(data, dict):
        raise NetK8sError(f"kubeconfig {path}: not a mapping")
    return data


def _named(config: dict, section: str, name: str, origin: str) -> dict:
    for entry in config.get(section) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            inner = entry.get(section[:-1])
            return inner if isinstance(inner, dict) else {}
    raise NetK8sError(f"kubeconfig {origin}: {section[:-1]} {name!r} not found")


def _data(entry: dict, key: str, origin: str, base: Path | None) -> bytes:
    """`KEY-data` (base64) or the file `KEY` (relative to the kubeconfig's directory) of an entry."""
    if entry.get(f"{key}-data"):
        try:
            return base64.b64decode(entry[f"{key}-data"], validate=True)
        except (ValueError, TypeError):
            raise NetK8sError(f"kubeconfig {origin}: {key}-data is not base64") from None
    if entry.get(key):
        path = Path(entry[key])
        if not path.is_absolute() and base is not None:
            path = base / path
        try:
            return path.read_bytes()
        except OSError as exc:
            raise NetK8sError(f"kubeconfig {origin}: {key} {path}: {exc.strerror or exc}") from None
    return b""


def client_config(config: dict, context: str = "", origin: str = "kubeconfig",
                  base: Path | None = None) -> ClientConfig:
    """The server and credentials of `context` (default: current-context)."""
    name = context or config.get("current-context") or ""
    if not name:
        raise NetK8sError(f"kubeconfig {origin}: no current-context", hint="pass a context name")
    ctx = _named(config, "contexts", name, origin)
    cluster = _named(config, "clusters", str(ctx.get("cluster", "")), origin)
    user = _named(config, "users", str(ctx.get("user", "")), origin) if ctx.get("user") else {}
    server = str(cluster.get("server") or "")
    if not server.startswith("https://"):
        raise NetK8sError(f"kubeconfig {origin}: cluster server {server!r} is not an https:// URL")
    cert = _data(user, "client-certificate", origin, base)
    key = _data(user, "client-key", origin, base)
    token = str(user.get("token") or "")
    if bool(cert) != bool(key):
        raise NetK8sError(f"kubeconfig {origin}: user needs both client-certificate and client-key")
    return ClientConfig(server, _data(cluster, "certificate-authority", origin, base), cert, key, token, name)


def read(path: Path, context: str = "") -> ClientConfig:
    return client_config(load(path), context, str(path), path.parent)


def merge(existing: dict, new: dict) -> dict:
    """`existing` with `new`'s clusters, users and contexts replacing same-named ones, and new's
    current-context made current (what `kind export kubeconfig` does)."""
    out = dict(existing) if existing else {"apiVersion": "v1", "kind": "Config", "preferences": {}}
    out.setdefault("apiVersion", "v1")
    out.setdefault("kind", "Config")
    for section in ("clusters", "users", "contexts"):
        mine = {e.get("name") for e in new.get(section) or []}
        kept = [e for e in out.get(section) or [] if isinstance(e, dict) and e.get("name") not in mine]
        out[section] = kept + list(new.get(section) or [])
    if new.get("current-context"):
        out["current-context"] = new["current-context"]
    return out


def default_path() -> Path:
    """Where kubectl looks: the first file of $KUBECONFIG, else ~/.kube/config."""
    env = os.environ.get("KUBECONFIG", "")
    first = next((p for p in env.split(os.pathsep) if p), "")
    return Path(first) if first else Path.home() / ".kube" / "config"


def merge_into(path: Path, new: dict) -> None:
    existing = load(path) if path.exists() else {}
    write(path, merge(existing, new))
