"""The ingress controller loop: watch Ingresses, IngressClasses, Services, EndpointSlices and Secrets, render
nginx.conf, check it with `nginx -t`, reload nginx gracefully, and publish the LoadBalancer address in
every served Ingress's status (ingress-nginx's --publish-service).

An API client like every component: an Informer (list, then watch; relist when the history is gone)
feeds a cache; one sync renders the whole configuration from a snapshot of it and applies it only when
the text or the certificates changed. A configuration nginx refuses is logged and never installed:
the last good one keeps running, and the same text is not tried again until something changes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from netk8s.errors import NetK8sError
from netk8s.ingress import certs
from netk8s.ingress.model import ControllerConfig, Model, Snapshot, build_model
from netk8s.ingress.nginx import Nginx, NginxError, Workdir
from netk8s.ingress.render import RenderOptions, render
from netk8s.store.base import Store, mutate
from netk8s.store.informer import Informer

log = logging.getLogger("netk8s.ingress")

WATCHED_KINDS = ["Ingress", "IngressClass", "Service", "EndpointSlice", "Secret"]
DEFAULT_CERT_FILE = "default-fake-certificate.pem"
QUIET = 0.05  # seconds without events before a sync: a burst of changes is one reload
MAX_BATCH = 0.5  # ... but a steady stream of changes still syncs this often
POLL = 0.25  # longest wait for events: how soon a stop request (SIGTERM) is seen


@dataclass
class SyncState:
    applied: tuple[str, tuple[tuple[str, bytes], ...]] | None = None
    refused: tuple[str, tuple[tuple[str, bytes], ...]] | None = None
    problems: frozenset[str] = frozenset()
    ready: threading.Event = field(default_factory=threading.Event)
    syncs: int = 0


def desired_status(lb_service: dict | None) -> dict:
    """An Ingress status holding the published Service's LoadBalancer addresses (ips and hostnames)."""
    ingress = [{k: v for k, v in entry.items() if k in ("ip", "hostname")}
               for entry in ((lb_service or {}).get("status") or {}).get("loadBalancer", {}).get("ingress") or []]
    return {"loadBalancer": {"ingress": ingress}} if ingress else {"loadBalancer": {}}


class IngressController:
    def __init__(self, store: Store, cfg: ControllerConfig, opts: RenderOptions, workdir: Workdir, nginx: Nginx,
                 publish_service: tuple[str, str] | None = None) -> None:
        self.store = store
        self.cfg = cfg
        self.opts = opts
        self.workdir = workdir
        self.nginx = nginx
        self.publish_service = publish_service
        self.informer = Informer(store, WATCHED_KINDS)
        self.state = SyncState()

    def snapshot(self) -> Snapshot:
        inf = self.informer
        return Snapshot(ingresses=inf.list("Ingress"), classes=inf.list("IngressClass"),
                        services=inf.list("Service"), slices=inf.list("EndpointSlice"), secrets=inf.list("Secret"))

    def sync(self) -> Model:
        """Render from the cache; test, install and reload when it changed; update Ingress statuses."""
        model = build_model(self.snapshot(), self.cfg, check_pair=certs.pair_problem)
        self._log_problems(model)
        text = render(model, self.opts)
        wanted = (text, tuple(sorted(model.certificates.items())))
        self.state.syncs += 1
        if wanted != self.state.applied and wanted != self.state.refused:
            self._apply(text, model)
            if self.state.refused != wanted:
                self.state.applied = wanted
        self._update_statuses(model)
        return model

    def _apply(self, text: str, model: Model) -> None:
        self.workdir.sync_certificates(model.certificates)
        try:
            self.nginx.test(text)
        except NginxError as exc:
            log.error("%s; keeping the last good configuration", exc.message)
            self.state.refused = (text, tuple(sorted(model.certificates.items())))
            return
        self.nginx.install()
        if self.nginx.running():
            self.nginx.reload()
            log.info("configuration changed: nginx reloaded (%d servers, %d upstreams)",
                     len(model.servers), len(model.upstreams))
        else:
            self.nginx.start()
            self.state.ready.set()
        self.state.refused = None
        self.workdir.prune_certificates(set(model.certificates) | {self.opts.default_certificate})

    def _log_problems(self, model: Model) -> None:
        problems = frozenset(model.problems)
        for p in sorted(problems - self.state.problems):
            log.warning("%s", p)
        self.state.problems = problems

    def _update_statuses(self, model: Model) -> None:
        if self.publish_service is None:
            return
        status = desired_status(self.informer.get("Service", *self.publish_service))
        for ing in model.ingresses:
            if (ing.get("status") or {}) == status:
                continue
            meta = ing["metadata"]

            def put_status(obj: dict, status: dict = status) -> dict | None:
                if (obj.get("status") or {}) == status:
                    return None
                obj["status"] = status
                return obj

            try:
                mutate(self.store, "Ingress", meta.get("namespace", ""), meta["name"], put_status)
                log.info("ingress %s/%s: status.loadBalancer %s", meta.get("namespace"), meta["name"],
                         status["loadBalancer"].get("ingress", []))
            except NetK8sError as exc:
                log.warning("ingress %s/%s: cannot update status: %s", meta.get("namespace"), meta["name"],
                            exc.message)

    def run(self, stopping: Callable[[], bool]) -> int:
        """List, then watch until `stopping()`; 1 when nginx died (the kubelet restarts the container)."""
        self.informer.sync()
        self.sync()
        while not stopping():
            events = self.informer.poll(POLL)
            if events:
                batch_end = time.monotonic() + MAX_BATCH
                while time.monotonic() < batch_end and self.informer.poll(QUIET):
                    pass
                self.sync()
            if self.nginx.proc is not None and not self.nginx.running():
                log.error("nginx exited with status %s", self.nginx.proc.returncode)
                return 1
        return 0
