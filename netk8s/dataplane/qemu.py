"""VM nodes on the machine: the extracted guest kernel, the initramfs file, the tap, QEMU's process, the control socket.

The pure half (command lines, init script, cpio layout, control protocol) is netk8s.model.vmspec; this
module does the I/O. The tap is created INSIDE a namespace netk8s made (the lab's underlay switch
namespace), enslaved to its bridge there, and QEMU runs in that namespace (netk8s.dataplane.launch
setns's then execs, so QEMU's PID is the one we get) and opens the tap by name: nothing of a VM ever
sits in the host's root namespace. The host reaches a guest over that underlay, from a namespace with
an underlay address, through a socket opened inside it (netk8s.dataplane.netns.open_socket).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from netk8s.dataplane import links, netns
from netk8s.dataplane.launch import launch_argv
from netk8s.errors import KernelError
from netk8s.model import naming, vmspec

BUSYBOX_PATHS = ("/usr/bin/busybox", "/bin/busybox")
KVM_DEVICE = Path("/dev/kvm")
INSTALL_HINT = "run scripts/install-deps.sh (apt: qemu-system-x86 busybox-static; the guest kernel goes to " \
               f"{vmspec.KERNEL_CACHE})"


def kernel_cache() -> Path:
    return Path(os.environ.get("NETK8S_KERNEL_CACHE", vmspec.KERNEL_CACHE))


def find_kernel(version: str | None = None) -> tuple[str, Path, Path]:
    """(version, vmlinuz, modules dir) of the extracted guest kernel (the newest, unless `version`)."""
    root = kernel_cache()
    versions = sorted(p.name for p in root.glob("*") if (p / ".ready").exists()) if root.is_dir() else []
    if version is not None:
        versions = [v for v in versions if v == version]
    if not versions:
        raise KernelError(f"no guest kernel{' ' + version if version else ''} under {root}", hint=INSTALL_HINT)
    v = versions[-1]
    vmlinuz = root / v / "boot" / f"vmlinuz-{v}"
    mods = root / v / "lib" / "modules" / v
    if not vmlinuz.is_file() or not (mods / "modules.dep").is_file():
        raise KernelError(f"guest kernel {v} under {root} is incomplete (vmlinuz or modules.dep missing)",
                          hint=INSTALL_HINT)
    return v, vmlinuz, mods


def qemu_binary() -> str:
    found = shutil.which("qemu-system-x86_64")
    if found is None:
        raise KernelError("qemu-system-x86_64 is not installed", hint=INSTALL_HINT)
    return found


_kvm_probe: list[bool] = []


def kvm_usable() -> bool:
    """True when KVM works here: /dev/kvm opens read-write AND a paused KVM guest starts and quits (a
    /dev/kvm that opens can still fail at vCPU setup, as in nested sandboxes: "failed to set MSR").
    NETK8S_VM_ACCEL=tcg|kvm overrides the probe. The answer is kept for the process."""
    forced = os.environ.get("NETK8S_VM_ACCEL", "")
    if forced in ("tcg", "kvm"):
        return forced == "kvm"
    if _kvm_probe:
        return _kvm_probe[0]
    try:
        os.close(os.open(KVM_DEVICE, os.O_RDWR | os.O_CLOEXEC))
        p = subprocess.run([qemu_binary(), "-accel", "kvm", "-cpu", "host", "-nodefaults", "-display", "none",
                            "-S", "-machine", "pc", "-m", "64", "-monitor", "stdio", "-serial", "none"],
                           input="quit\n", capture_output=True, text=True, timeout=30, check=False)
        ok = p.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    _kvm_probe.append(ok)
    return ok


def _static_busybox() -> bytes:
    for path in BUSYBOX_PATHS:
        try:
            data = Path(path).read_bytes()
        except OSError:
            continue
        # a dynamic binary names its loader (PT_INTERP) near the start: the initramfs has no libc
        if b"/lib64/ld-linux" in data[:8192] or b"/lib/ld-linux" in data[:8192]:
            continue
        return data
    raise KernelError("no statically linked busybox (the initramfs has no libc)", hint=INSTALL_HINT)


def build_initramfs(version: str, mods: Path, out: Path) -> Path:
    """Write the initramfs (uncompressed newc cpio) for the guest kernel `version` to `out`."""
    deps = vmspec.parse_modules_dep((mods / "modules.dep").read_text())
    builtin = (mods / "modules.builtin").read_text().split() if (mods / "modules.builtin").exists() else []
    early = vmspec.load_order(deps, vmspec.EARLY_MODULES, builtin)
    node = vmspec.load_order(deps, vmspec.NODE_MODULES, builtin, vmspec.OPTIONAL_MODULES, skip=early)
    for path in early:
        if not path.endswith(".ko"):
            raise KernelError(f"guest kernel module {path} is compressed; busybox insmod needs plain .ko files")
    files = [(path, (mods / path).read_bytes()) for path in early]
    data = vmspec.cpio_newc(vmspec.initramfs_entries(_static_busybox(), files, node))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(out)
    return out


# ----------------------------------------------------------------------------- the tap


def _ip(argv: list[str]) -> None:
    p = subprocess.run(["ip", *argv], capture_output=True, text=True, timeout=30, check=False)
    if p.returncode != 0:
        raise KernelError(f"ip {' '.join(argv)}: {p.stderr.strip()}")


def ensure_tap(ns: str, tap: str, bridge: str, mtu: int | None = None) -> None:
    """A persistent tap `tap` in namespace `ns`, a port of `bridge` there, up. Never in the root namespace."""
    if not ns or not netns.netns_exists(ns):
        raise KernelError(f"tap {tap}: namespace {ns!r} does not exist", hint="the tap lives in a netk8s namespace")
    if not links.link_exists(ns, tap):
        _ip(["-n", ns, "tuntap", "add", "dev", tap, "mode", "tap"])
    argv = ["-n", ns, "link", "set", "dev", tap, "master", bridge]
    if mtu:
        argv += ["mtu", str(mtu)]
    _ip([*argv, "up"])


def delete_tap(ns: str, tap: str) -> None:
    """Remove the tap; fine when it or its namespace is gone already."""
    if netns.netns_exists(ns) and links.link_exists(ns, tap):
        links.delete_link(ns, tap)


# ----------------------------------------------------------------------------- QEMU's process


def start_qemu(spec: vmspec.VmSpec, ns: str, log: Path, tag: str, extra_env: Mapping[str, str] | None = None) -> int:
    """Start QEMU for `spec` inside namespace `ns` (where its tap is); returns QEMU's PID. QEMU's own
    messages go to `log`; the guest's console to spec.serial_log. The process carries the netk8s tag
    (naming.PROCESS_TAG_ENV), so `netk8s clean` finds it with no saved state."""
    vmspec.validate(spec)
    env = dict(os.environ)
    env[naming.PROCESS_TAG_ENV] = tag
    env.update(extra_env or {})
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(launch_argv(vmspec.qemu_argv(spec), netns=ns), stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                close_fds=True)
    _children.append(proc)
    return proc.pid


_children: list[subprocess.Popen] = []


def reap() -> None:
    """Collect the exit status of QEMU processes started here that have ended."""
    for p in list(_children):
        if p.poll() is not None:
            _children.remove(p)


def exited(pid: int) -> int | None:
    """QEMU's exit status when this process started it and it has ended, else None."""
    for p in _children:
        if p.pid == pid:
            return p.poll()
    return None


# ----------------------------------------------------------------------------- the control socket


class GuestControl:
    """Client of the guest control server (netk8s.lab.vmguest), from namespace `ns` on the underlay."""

    def __init__(self, ns: str, ip: str, token: str, port: int = vmspec.CONTROL_PORT) -> None:
        self.ns, self.ip, self.token, self.port = ns, ip, token, port

    def _connect(self, timeout: float) -> socket.socket:
        sock = netns.open_socket(self.ns, socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect((self.ip, self.port))
        except OSError:
            sock.close()
            raise
        return sock

    def reachable(self, timeout: float = 1.0) -> bool:
        try:
            self._connect(timeout).close()
        except OSError:
            return False
        return True

    def request(self, argv: Sequence[str], *, stdin: str = "", timeout: float = 120.0,
                env: Mapping[str, str] | None = None, detach: bool = False, log: str = "") -> vmspec.GuestResult:
        data = vmspec.control_request(self.token, argv, stdin=stdin, timeout=timeout, env=env, detach=detach, log=log)
        try:
            with self._connect(10.0) as sock:
                sock.settimeout(timeout + 30.0)
                sock.sendall(data)
                buf = b""
                while not buf.endswith(b"\n"):
                    chunk = sock.recv(1 << 20)
                    if not chunk:
                        break
                    buf += chunk
        except OSError as exc:
            raise KernelError(f"guest {self.ip}: {' '.join(argv)}: {exc}",
                              hint="is the VM up? see its serial console log") from exc
        if not buf:
            raise KernelError(f"guest {self.ip}: {' '.join(argv)}: the control server closed the connection")
        return vmspec.parse_control_response(buf)


def wait_reachable(control: GuestControl, pid: int, deadline: float, serial_log: Path) -> None:
    """Poll until the guest's control server accepts a connection; KernelError when QEMU exits first or
    the deadline passes (the last console lines in the message)."""
    while True:
        if control.reachable(1.0):
            return
        rc = exited(pid)
        if rc is not None or time.monotonic() > deadline:
            tail = ""
            try:
                tail = " | ".join(serial_log.read_text(errors="replace").strip().splitlines()[-5:])
            except OSError:
                pass
            what = f"QEMU exited ({rc})" if rc is not None else "not ready before the deadline"
            raise KernelError(f"VM {control.ip}: {what}; console: {tail or '(empty)'}")
        time.sleep(0.2)
