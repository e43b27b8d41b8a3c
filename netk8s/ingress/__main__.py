"""`python -m netk8s.ingress --store URL [ingress-nginx flags]`: what an ingress-nginx controller pod runs.

The image `registry.k8s.io/ingress-nginx/controller` maps here (netk8s.model.images). The flags are
ingress-nginx's own (`--publish-service`, `--controller-class`, `--ingress-class`,
`--watch-ingress-without-class`, `--http-port`, `--https-port`, `--healthz-port`); other flags of the
real controller (`--election-id`, `--configmap`, webhook flags ...) are accepted and ignored with a note,
so its Deployment manifest runs unchanged. `/healthz` on the healthz port answers 200 once nginx runs
with a first configuration (the pod's readiness and liveness probes).
"""

from __future__ import annotations

import argparse
import http.server
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from netk8s.errors import NetK8sError
from netk8s.ingress import certs
from netk8s.ingress.controller import DEFAULT_CERT_FILE, IngressController, SyncState
from netk8s.ingress.model import ControllerConfig
from netk8s.ingress.nginx import Nginx, Workdir
from netk8s.ingress.render import RenderOptions
from netk8s.store.factory import open_store

log = logging.getLogger("netk8s.ingress")


def _bool(text: str) -> bool:
    if text.lower() not in ("true", "false", "1", "0"):
        raise argparse.ArgumentTypeError(f"invalid boolean {text!r}")
    return text.lower() in ("true", "1")


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {text!r} (1-65535)")
    return int(text)


def _ns_name(text: str) -> tuple[str, str]:
    ns, sep, name = text.partition("/")
    if not sep or not ns or not name:
        raise argparse.ArgumentTypeError(f"expected NAMESPACE/NAME, got {text!r}")
    return ns, name


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m netk8s.ingress", description=__doc__)
    p.add_argument("--store", required=True, help="store URL the controller watches (an API client)")
    p.add_argument("--publish-service", type=_ns_name, default=None, metavar="NS/NAME",
                   help="Service whose LoadBalancer address goes into each Ingress's status")
    p.add_argument("--controller-class", default="k8s.io/ingress-nginx")
    p.add_argument("--ingress-class", default="nginx", help="value of the legacy kubernetes.io/ingress.class annotation")
    p.add_argument("--watch-ingress-without-class", type=_bool, nargs="?", const=True, default=False)
    p.add_argument("--http-port", type=_port, default=80)
    p.add_argument("--https-port", type=_port, default=443)
    p.add_argument("--healthz-port", type=_port, default=10254)
    p.add_argument("--worker-processes", type=int, default=1)
    p.add_argument("--workdir-parent", default=None, help="where the working directory is made (default: TMPDIR)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], type=str.upper)
    return p


class _Health(http.server.BaseHTTPRequestHandler):
    state: SyncState

    def do_GET(self) -> None:
        ok = self.path.split("?", 1)[0] == "/healthz" and self.state.ready.is_set()
        body = b"ok" if ok else b"not ready"
        self.send_response(200 if ok else 500)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve_health(port: int, state: SyncState, host: str = "0.0.0.0") -> http.server.ThreadingHTTPServer:
    handler = type("Health", (_Health,), {"state": state})
    server = http.server.ThreadingHTTPServer((host, port), handler)
    threading.Thread(target=server.serve_forever, name="healthz", daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> int:
    args, unknown = build_parser().parse_known_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s netk8s-ingress %(levelname)s %(message)s")
    for flag in unknown:
        log.info("ignoring ingress-nginx flag %s (no effect in netk8s)", flag)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    workdir = Workdir.create(Path(args.workdir_parent) if args.workdir_parent else None)
    nginx = Nginx(workdir, args.http_port)
    try:
        cert, key = certs.fake_certificate()
        workdir.write_private(workdir.certs / DEFAULT_CERT_FILE, cert + key)
        store = open_store(args.store)
        cfg = ControllerConfig(args.controller_class, args.ingress_class, args.watch_ingress_without_class)
        opts = RenderOptions(workdir=str(workdir.base), certs_dir=str(workdir.certs),
                             default_certificate=DEFAULT_CERT_FILE, http_port=args.http_port,
                             https_port=args.https_port, worker_processes=args.worker_processes)
        controller = IngressController(store, cfg, opts, workdir, nginx, args.publish_service)
        health = serve_health(args.healthz_port, controller.state)
        try:
            return controller.run(stop.is_set)
        finally:
            health.shutdown()
            store.close()
    except NetK8sError as exc:
        log.error("%s%s", exc.message, f" ({exc.hint})" if exc.hint else "")
        return 1
    except OSError as exc:
        log.error("%s", exc)
        return 1
    finally:
        nginx.stop()
        workdir.remove()
        log.info("stopped")


if __name__ == "__main__":
    sys.exit(main())
