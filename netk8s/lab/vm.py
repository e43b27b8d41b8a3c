"""VM nodes: boot a QEMU guest on a lab's underlay switch, run commands in it, stop it leaving nothing.

A `VmNode` is one guest (netk8s.model.vmspec says what it boots, netk8s.dataplane.qemu does the I/O):
`boot()` builds its initramfs in the VM's work directory, creates its tap in the switch namespace on
the switch's bridge and starts QEMU there; `wait_ready()` waits for the guest control server
(netk8s.lab.vmguest), which the guest runs by default; `run()` executes a command in the guest and
returns its exit status and output; `stop()` stops QEMU by PID and deletes the tap. The work directory
keeps `serial.log` (the guest console: `netk8s lab logs NODE`), `qemu.log` and `qemu.pid`.

Command channel choice: a TCP control server in the guest on its underlay address, reached from a
namespace on the same underlay (the lab's control-plane namespace, or the switch namespace with an
address). It needs nothing but the network the node has anyway, serves concurrent commands (one
connection each), and is the path a remote node's exec would take; a serial-console protocol would
serialise every command through one character device. Requests carry a per-VM token.
"""

from __future__ import annotations

import os
import secrets
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from netk8s.dataplane import qemu
from netk8s.errors import KernelError
from netk8s.lab import procs
from netk8s.model import vmspec
from netk8s.model.vmspec import GuestResult

BOOT_TIMEOUT = 300.0  # s: TCG on a loaded 2-core machine


def control_command(token: str, port: int = vmspec.CONTROL_PORT) -> tuple[str, ...]:
    """The guest's default command: the control server, with this interpreter (the host's tree is the guest's)."""
    return (sys.executable, "-m", "netk8s.lab.vmguest", "--port", str(port), "--token", token)


@dataclass
class VmNode:
    """One QEMU guest on a switch: its tap in `switch_netns` on `bridge`, reached from `control_netns`."""

    name: str
    switch_netns: str
    bridge: str
    tap: str
    ip_cidr: str
    workdir: Path
    tag: str  # naming.PROCESS_TAG_ENV value: the lab's name
    control_netns: str | None = None  # default: the switch namespace
    gateway: str | None = None
    memory_mb: int = vmspec.DEFAULT_MEMORY_MB
    env: Mapping[str, str] = field(default_factory=dict)
    kernel_version: str | None = None
    pid: int | None = None
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    booted_at: float | None = None
    ready_after: float | None = None  # s from QEMU's start to the first answer of the control server

    @property
    def ip(self) -> str:
        return self.ip_cidr.split("/")[0]

    @property
    def serial_log(self) -> Path:
        return self.workdir / "serial.log"

    @property
    def control(self) -> qemu.GuestControl:
        return qemu.GuestControl(self.control_netns or self.switch_netns, self.ip, self.token)

    def spec(self) -> vmspec.VmSpec:
        version, vmlinuz, _ = qemu.find_kernel(self.kernel_version)
        return vmspec.VmSpec(
            name=self.name, kernel=str(vmlinuz), initrd=str(self.workdir / "initrd.cpio"), kernel_version=version,
            tap=self.tap, mac=vmspec.mac_for(f"{self.tag}/{self.name}"), ip_cidr=self.ip_cidr, gateway=self.gateway,
            serial_log=str(self.serial_log), command=control_command(self.token), env=self.env,
            memory_mb=self.memory_mb, kvm=qemu.kvm_usable(), qemu=qemu.qemu_binary(), hostname=self.name)

    def boot(self) -> None:
        """Build the initramfs, plug the tap into the switch, start QEMU. Rolls back on failure."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        spec = self.spec()
        vmspec.validate(spec)
        version, _, mods = qemu.find_kernel(spec.kernel_version)
        qemu.build_initramfs(version, mods, Path(spec.initrd))
        self.serial_log.write_bytes(b"")
        try:
            qemu.ensure_tap(self.switch_netns, self.tap, self.bridge)
            self.booted_at = time.monotonic()
            self.pid = qemu.start_qemu(spec, self.switch_netns, self.workdir / "qemu.log", self.tag)
            (self.workdir / "qemu.pid").write_text(f"{self.pid}\n")
        except BaseException:
            self.stop()
            raise

    def wait_ready(self, timeout: float = BOOT_TIMEOUT) -> float:
        """Wait until the guest answers a command; returns the seconds since QEMU started."""
        if self.pid is None or self.booted_at is None:
            raise KernelError(f"VM {self.name}: not booted")
        qemu.wait_reachable(self.control, self.pid, self.booted_at + timeout, self.serial_log)
        r = self.run(["true"], timeout=60)
        if not r.ok:
            raise KernelError(f"VM {self.name}: `true` failed in the guest: {r.stderr.strip()}")
        self.ready_after = time.monotonic() - self.booted_at
        return self.ready_after

    def run(self, argv: Sequence[str], *, stdin: str = "", timeout: float = 120.0,
            env: Mapping[str, str] | None = None, check: bool = False) -> GuestResult:
        """Run `argv` in the guest and wait; with check=True a non-zero exit raises KernelError."""
        r = self.control.request(argv, stdin=stdin, timeout=timeout, env=env)
        if check and not r.ok:
            raise KernelError(f"VM {self.name}: {' '.join(argv)} exited {r.rc}: "
                              f"{(r.stderr or r.stdout).strip()[-800:]}")
        return r

    def start(self, argv: Sequence[str], log: str, env: Mapping[str, str] | None = None) -> int:
        """Start `argv` in the guest in the background (output to the guest path `log`); its guest PID."""
        r = self.control.request(argv, env=env, detach=True, log=log)
        if r.pid is None:
            raise KernelError(f"VM {self.name}: could not start {' '.join(argv)}: {r.stderr.strip()}")
        return r.pid

    def running(self) -> bool:
        return self.pid is not None and procs.alive(self.pid)

    def stop(self, grace: float = 5.0) -> None:
        """Stop QEMU by PID (SIGTERM, then SIGKILL), delete the tap. Idempotent."""
        if self.pid is not None:
            procs.stop_pids([self.pid], grace=grace)
            qemu.reap()
            self.pid = None
        (self.workdir / "qemu.pid").unlink(missing_ok=True)
        qemu.delete_tap(self.switch_netns, self.tap)


def stop_from_workdir(workdir: Path, switch_netns: str, tap: str, tag: str) -> None:
    """Stop a VM another process started (its PID in WORKDIR/qemu.pid, killed only while that process
    carries the lab's tag: a PID reused by another program is left alone) and delete its tap."""
    pid_file = workdir / "qemu.pid"
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        pid = None
    if pid is not None and pid != os.getpid() and pid in procs.tagged_pids(tag):
        procs.stop_pids([pid])
    pid_file.unlink(missing_ok=True)
    qemu.delete_tap(switch_netns, tap)
