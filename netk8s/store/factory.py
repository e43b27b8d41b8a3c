"""Open a store from a URL: `sqlite:///abs/path.db` or a bare path, `memory://`, `etcd://host:port[/prefix][?netns=NAME]`,
and the API server: `https://HOST:PORT?kubeconfig=PATH[&context=NAME]` or `kubeconfig:///PATH[?context=NAME]`
(store/apiclient.py; what every component other than the API server uses)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

from netk8s.errors import NetK8sError
from netk8s.store.base import Store
from netk8s.store.memory import MemoryStore
from netk8s.store.sqlite import SqliteStore


def _open_sqlite(rest: str) -> Store:
    # sqlite:///abs/path.db -> rest "/abs/path.db"; sqlite://rel.db -> "rel.db" (relative to the cwd)
    if not rest:
        raise NetK8sError("store: sqlite:// URL has no path", hint="use sqlite:///absolute/path/store.db")
    return SqliteStore(Path(rest))


def _open_memory(rest: str) -> Store:
    return MemoryStore()


def _open_etcd(rest: str) -> Store:
    # etcd://HOST:PORT[/PREFIX][?netns=NAME]: with netns, connections are opened inside that network
    # namespace (the lab's etcd listens only in its control-plane namespace).
    from netk8s.store.etcd import DEFAULT_PREFIX, EtcdStore, parse_etcd_url

    host, port, opts = parse_etcd_url(rest)
    factory = None
    if opts.get("netns"):
        from netk8s.dataplane.netns import open_socket

        ns = opts["netns"]
        factory = lambda: open_socket(ns, socket.AF_INET, socket.SOCK_STREAM)
    return EtcdStore(host, port, prefix=opts.get("prefix", DEFAULT_PREFIX), socket_factory=factory)


def _open_api(url: str) -> Store:
    from netk8s.store.apiclient import ApiClientStore

    return ApiClientStore.from_url(url)


# One opener per URL scheme; an etcd backend replaces _open_etcd with one that parses host:port.
OPENERS: dict[str, Callable[[str], Store]] = {
    "sqlite": _open_sqlite,
    "memory": _open_memory,
    "etcd": _open_etcd,
    "https": lambda rest: _open_api(f"https://{rest}"),
    "kubeconfig": lambda rest: _open_api(f"kubeconfig://{rest}"),
}


def open_store(url: str) -> Store:
    """The store a URL names. A string without `scheme://` is a path to a SQLite file."""
    if not url:
        raise NetK8sError("store: empty store URL", hint="use sqlite:///path/store.db or memory://")
    scheme, sep, rest = url.partition("://")
    if not sep:
        return SqliteStore(Path(url))
    opener = OPENERS.get(scheme.lower())
    if opener is None:
        raise NetK8sError(f"store: unknown store URL scheme {scheme!r} in {url!r}",
                          hint="supported: " + ", ".join(f"{s}://" for s in OPENERS))
    return opener(rest)
