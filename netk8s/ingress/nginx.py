"""Running Debian's nginx for the ingress controller: its working directory, `nginx -t` on every candidate
configuration, start, graceful reload (SIGHUP) and graceful stop (SIGQUIT).

nginx semantics relied on (nginx.org/en/docs/control.html): on SIGHUP the master re-reads the
configuration and, if it is valid, starts new workers and asks the old ones to finish their requests
and exit, keeping the listening sockets, so no connection is refused during a reload; on SIGQUIT it
stops gracefully. `nginx -t` parses a configuration and opens the files it names, without binding.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from netk8s.errors import NetK8sError

log = logging.getLogger("netk8s.ingress.nginx")

WORKDIR_PREFIX = "netk8s-ingress-"
OWNER_FILE = "owner.pid"
START_TIMEOUT = 10.0
STOP_GRACE = 10.0
FRESH_GRACE = 60.0  # seconds a working directory without an owner file is left alone


class NginxError(NetK8sError):
    """nginx refused a configuration or would not start."""


def nginx_binary() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_workdirs(parent: Path) -> list[Path]:
    """Remove working directories whose controller is gone (it was SIGKILLed and could not clean up)."""
    removed = []
    for d in parent.glob(WORKDIR_PREFIX + "*"):
        try:
            owner = int((d / OWNER_FILE).read_text())
        except (OSError, ValueError):
            owner = 0
        if owner and _pid_alive(owner):
            continue
        try:
            young = not owner and time.time() - d.stat().st_mtime < FRESH_GRACE
        except OSError:
            continue
        if young:  # another controller is starting: it has made the directory, not yet its owner file
            continue
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    return removed


@dataclass(frozen=True)
class Workdir:
    """Layout: base (0711, so nginx's unprivileged workers reach temp/), certs/ and conf/ (0700, root only:
    they hold private keys and the configuration), temp/ (nginx creates its temp paths there)."""

    base: Path

    @property
    def certs(self) -> Path:
        return self.base / "certs"

    @property
    def conf_dir(self) -> Path:
        return self.base / "conf"

    @property
    def conf(self) -> Path:
        return self.conf_dir / "nginx.conf"

    @property
    def candidate(self) -> Path:
        return self.conf_dir / "nginx.conf.new"

    @property
    def pid_file(self) -> Path:
        return self.base / "nginx.pid"

    @classmethod
    def create(cls, parent: Path | None = None) -> Workdir:
        parent = parent or Path(tempfile.gettempdir())
        sweep_stale_workdirs(parent)
        base = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX, dir=parent))
        base.chmod(0o711)
        wd = cls(base)
        for d in (wd.certs, wd.conf_dir):
            d.mkdir(mode=0o700)
        (base / "temp").mkdir(mode=0o711)
        (base / OWNER_FILE).write_text(str(os.getpid()))
        return wd

    def write_private(self, path: Path, data: bytes) -> None:
        """Write a file only root can read (created 0600, then renamed into place)."""
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)

    def sync_certificates(self, files: dict[str, bytes]) -> None:
        for name, pem in files.items():
            path = self.certs / name
            if not path.exists() or path.read_bytes() != pem:
                self.write_private(path, pem)

    def prune_certificates(self, keep: set[str]) -> None:
        for path in self.certs.iterdir():
            if path.name not in keep:
                path.unlink(missing_ok=True)

    def remove(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)


class Nginx:
    """One nginx master (in the foreground: `daemon off;`) run from a Workdir."""

    def __init__(self, workdir: Workdir, http_port: int, binary: str | None = None, host: str = "127.0.0.1") -> None:
        self.workdir = workdir
        self.http_port = http_port
        self.host = host
        self.binary = binary or nginx_binary()
        self.proc: subprocess.Popen[bytes] | None = None
        self.reloads = 0

    def _argv(self, conf: Path, *extra: str) -> list[str]:
        # -e: the error log before the configuration is read (else the compiled-in /var/log/nginx path)
        return [self.binary, *extra, "-e", "stderr", "-p", str(self.workdir.base), "-c", str(conf)]

    def test(self, text: str) -> None:
        """`nginx -t` on `text` as a candidate file; NginxError with nginx's message when it is refused."""
        self.workdir.write_private(self.workdir.candidate, text.encode())
        proc = subprocess.run(self._argv(self.workdir.candidate, "-t", "-q"), capture_output=True, text=True,
                              timeout=30, check=False)
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.strip().splitlines() if ln]
            raise NginxError(f"nginx -t refused the new configuration: {'; '.join(lines[-3:])}")

    def install(self) -> None:
        """The tested candidate becomes the configuration nginx runs."""
        os.replace(self.workdir.candidate, self.workdir.conf)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        self.proc = subprocess.Popen(self._argv(self.workdir.conf), stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while not self._listening():
            if self.proc.poll() is not None:
                raise NginxError(f"nginx exited at start with status {self.proc.returncode}")
            if time.monotonic() > deadline:
                raise NginxError(f"nginx did not listen on port {self.http_port} within {START_TIMEOUT:g}s")
            time.sleep(0.05)
        log.info("nginx started (pid %d)", self.proc.pid)

    def _listening(self) -> bool:
        try:
            with socket.create_connection((self.host, self.http_port), timeout=0.5):
                return True
        except OSError:
            return False

    def reload(self) -> None:
        """Graceful reload: SIGHUP to the master."""
        if self.proc is None:
            raise NginxError("nginx is not running")
        self.proc.send_signal(signal.SIGHUP)
        self.reloads += 1

    def stop(self, grace: float = STOP_GRACE) -> None:
        """Graceful stop (SIGQUIT), SIGKILL after `grace` seconds."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
