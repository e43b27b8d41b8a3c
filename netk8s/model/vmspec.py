"""VM nodes, pure: the QEMU command line, the guest kernel's command line, the initramfs and its init script.

A VM node is a QEMU guest booting Debian's kernel (extracted by scripts/install-deps.sh into
KERNEL_CACHE, never installed into the host's /boot) with a small initramfs that netk8s builds:
busybox, the modules needed to reach the host's filesystem (virtio, 9p, overlay), and INIT_SCRIPT. The
init mounts the host's `/` read-only over virtio-9p, puts tmpfs/overlays where a node writes (/etc, /var,
/root, /tmp, /run), loads the node's modules (IPVS and its schedulers, conntrack, bridge, vxlan, ...)
from the extracted kernel, configures eth0 from the kernel command line, switch_roots into the host's
tree and runs the command the command line carries (by default the guest control server,
netk8s.lab.vmguest). Everything here is data in, data out: netk8s.dataplane.qemu does the I/O.

Facts this layout rests on (measured under TCG on a 2-core machine, see docs/vm-nodes.md): one vCPU
and a 256 MiB translation cache (`-accel tcg,tb-size=256`) boot fastest; `mitigations=off` saves
seconds of boot; the guest's own /proc, /sys and /dev must be moved into the new root before
switch_root, or the 9p share shows the host's; busybox wget crashes in the guest (use curl/python).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import shlex
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from netk8s.errors import ValidationError

KERNEL_CACHE = "/var/cache/netk8s/kernel"  # <version>/boot/vmlinuz-<version>, <version>/lib/modules/<version>
ROOT_TAG = "hostroot"  # the 9p mount tag of the host's `/`
CONTROL_PORT = 10240  # the guest control server (netk8s.lab.vmguest), on the guest's eth0 address
CMDLINE_MAX = 2048  # x86's COMMAND_LINE_SIZE (arch/x86/include/asm/setup.h)
GUEST_MARK = "netk8s.guest"  # on the guest's command line: code that must only run in a guest checks it
DEFAULT_MEMORY_MB = 1024

# Loaded from the initramfs itself, before the host's tree is reachable.
EARLY_MODULES = ("virtio_pci", "virtio_net", "9pnet_virtio", "9p", "overlay")
# Loaded from the extracted kernel over 9p: what a node's data plane uses. Missing ones are an error,
# unless listed in OPTIONAL_MODULES (they may be built in or absent in another kernel build).
NODE_MODULES = (
    "crc32c_generic",  # libcrc32c (conntrack, IPVS) asks the crypto API for crc32c at load time
    "ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_lc", "ip_vs_wlc", "ip_vs_lblc", "ip_vs_lblcr", "ip_vs_dh",
    "ip_vs_sh", "ip_vs_sed", "ip_vs_nq", "ip_vs_mh",
    "nf_conntrack", "nf_conntrack_netlink", "nf_nat", "dummy", "vxlan", "veth", "bridge", "br_netfilter",
    "ip_set", "ip_set_hash_ip", "ip_set_hash_ipport", "ip_set_hash_ipportip", "ip_set_hash_ipportnet",
    "ip_set_hash_net", "ip_set_bitmap_port", "xt_set",
    "ip_tables", "iptable_nat", "iptable_filter", "iptable_mangle", "iptable_raw",
    "xt_tcpudp", "xt_MASQUERADE", "xt_mark", "xt_comment", "xt_addrtype", "xt_conntrack", "xt_multiport", "xt_statistic",
    "xt_recent", "xt_nat", "xt_physdev", "xt_REDIRECT", "ipt_REJECT",
    "nf_tables", "nft_chain_nat", "nft_ct", "nft_masq", "nft_nat", "nft_numgen", "nft_redir",
    "nft_fib_ipv4", "nft_reject_ipv4", "nft_reject_inet", "nfnetlink_queue",
)
OPTIONAL_MODULES = frozenset({"xt_REDIRECT", "nft_redir", "nfnetlink_queue", "nft_reject_inet", "ip_vs_mh"})

# The writable places of a node over the read-only host tree: overlays keep the host's files visible
# (/etc/resolv.conf, /var/cache/netk8s/kernel, pyenv under /root), tmpfs start empty.
OVERLAY_DIRS = ("/etc", "/var", "/root")
TMPFS_DIRS = ("/tmp", "/run")
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class VmSpec:
    """One guest: what QEMU, the kernel and the init script need to know about it."""

    name: str
    kernel: str  # path of vmlinuz
    initrd: str  # path of the initramfs netk8s built
    kernel_version: str
    tap: str  # the tap device (in the switch namespace) backing eth0
    mac: str
    ip_cidr: str  # eth0's address, e.g. 192.168.56.11/24
    gateway: str | None
    serial_log: str
    command: tuple[str, ...]  # run after switch_root; its exit powers the guest off
    env: Mapping[str, str] = field(default_factory=dict)
    memory_mb: int = DEFAULT_MEMORY_MB
    cpus: int = 1
    kvm: bool = False
    hostname: str = ""
    qemu: str = "qemu-system-x86_64"

    @property
    def ip(self) -> str:
        return self.ip_cidr.split("/")[0]


def mac_for(name: str) -> str:
    """A stable, locally administered unicast MAC for a VM (52:54:00 is QEMU's prefix)."""
    h = hashlib.sha256(name.encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in h[:3])


def validate(spec: VmSpec) -> None:
    """ValidationError naming the field when the spec cannot boot."""
    if not spec.name or not spec.name.replace("-", "").isalnum():
        raise ValidationError(f"name: {spec.name!r} must be letters, digits and '-'")
    if not spec.tap or len(spec.tap) > 15:
        raise ValidationError(f"tap: {spec.tap!r} must be 1-15 characters")
    try:
        iface = ipaddress.IPv4Interface(spec.ip_cidr)
    except ValueError as exc:
        raise ValidationError(f"ip_cidr: {exc}") from None
    if iface.network.prefixlen == 32 or "/" not in spec.ip_cidr:
        raise ValidationError(f"ip_cidr: {spec.ip_cidr!r} needs a prefix length below 32")
    if spec.gateway is not None and ipaddress.IPv4Address(spec.gateway) not in iface.network:
        raise ValidationError(f"gateway: {spec.gateway} is not in {iface.network}")
    if not spec.command:
        raise ValidationError("command: the guest needs a command to run")
    if not 128 <= spec.memory_mb <= 65536:
        raise ValidationError(f"memory_mb: {spec.memory_mb} must be between 128 and 65536")
    if not 1 <= spec.cpus <= 64:
        raise ValidationError(f"cpus: {spec.cpus} must be between 1 and 64")
    kernel_cmdline(spec)  # raises when it does not fit


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def unb64(text: str) -> str:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()


def kernel_cmdline(spec: VmSpec) -> str:
    """The guest kernel's command line: the console, speed options and the init script's parameters
    (netk8s.cmd: the command, base64url of a shell line; netk8s.env: base64url of JSON)."""
    params = [
        "console=ttyS0", "mitigations=off", "panic=-1", "quiet", "loglevel=4",
        # Under TCG the kernel calibrates the TSC against the HPET, and on a loaded host it can get it
        # badly wrong (seen: a guest's 300 s timeout fired after 35 s): keep time by the HPET, which QEMU
        # derives from the host's clock.
        "clocksource=hpet",
        # the soft-lockup watchdog measures with sched_clock, which under TCG on a busy host jumps:
        # its warnings were false alarms that cost console output (seen: "stuck for 49s" every minute)
        "nowatchdog", "dummy.numdummies=0", "noreplace-smp", "8250.nr_uarts=1", "i8042.noaux", "i8042.nokbd",
        f"{GUEST_MARK}={spec.name}",
        f"netk8s.ip={spec.ip_cidr}",
        f"netk8s.kver={spec.kernel_version}",
        f"netk8s.hostname={spec.hostname or spec.name}",
        f"netk8s.cmd={_b64(shlex.join(spec.command))}",
    ]
    if spec.gateway:
        params.append(f"netk8s.gw={spec.gateway}")
    if spec.env:
        params.append(f"netk8s.env={_b64(shell_exports(spec.env))}")
    line = " ".join(params)
    if len(line) >= CMDLINE_MAX:
        raise ValidationError(f"command: the kernel command line would be {len(line)} bytes, over {CMDLINE_MAX - 1}",
                              hint="pass long arguments through a file under the host tree")
    return line


def shell_exports(env: Mapping[str, str]) -> str:
    """`export K=V` lines for the init script (values shell-quoted)."""
    for key in env:
        if not key.replace("_", "").isalnum() or key[0].isdigit():
            raise ValidationError(f"env: {key!r} is not a variable name")
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(env.items()))


def qemu_argv(spec: VmSpec) -> list[str]:
    """QEMU's argv: no default devices, the serial console to a file, the host's `/` read-only over
    virtio-9p, one virtio-net NIC on the tap (opened by name, so QEMU must run in the tap's namespace)."""
    accel = ["-accel", "kvm", "-cpu", "host"] if spec.kvm else ["-accel", "tcg,tb-size=256"]
    return [
        spec.qemu, "-name", spec.name,
        "-nodefaults", "-no-user-config", "-nographic", "-display", "none", "-vga", "none",
        "-machine", "pc", *accel, "-smp", str(spec.cpus), "-m", str(spec.memory_mb),
        "-no-reboot",  # a guest that powers off or panics (panic=-1) makes QEMU exit
        "-kernel", spec.kernel, "-initrd", spec.initrd, "-append", kernel_cmdline(spec),
        "-chardev", f"file,id=console,path={spec.serial_log}", "-serial", "chardev:console",
        "-fsdev", "local,id=root,path=/,security_model=none,readonly=on,multidevs=remap",
        "-device", f"virtio-9p-pci,fsdev=root,mount_tag={ROOT_TAG}",
        "-netdev", f"tap,id=net0,ifname={spec.tap},script=no,downscript=no",
        # romfile= : no iPXE option ROM (the kernel is loaded directly; nothing boots from the network)
        "-device", f"virtio-net-pci,netdev=net0,mac={spec.mac},romfile=",
    ]


# ----------------------------------------------------------------------------- modules


def parse_modules_dep(text: str) -> dict[str, tuple[str, list[str]]]:
    """{module name: (path, [dependency paths])} from a modules.dep text (depmod(8))."""
    out: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        path, sep, deps = line.partition(":")
        if not sep:
            continue
        out[module_name(path)] = (path, deps.split())
    return out


def module_name(path: str) -> str:
    """`kernel/net/netfilter/ipvs/ip_vs_rr.ko(.xz)` -> `ip_vs_rr` (depmod names: '-' and '_' are one)."""
    base = path.rsplit("/", 1)[-1]
    for ext in (".ko.xz", ".ko.zst", ".ko.gz", ".ko"):
        if base.endswith(ext):
            base = base[: -len(ext)]
            break
    return base.replace("-", "_")


def load_order(deps: Mapping[str, tuple[str, list[str]]], wanted: Iterable[str], builtin: Iterable[str] = (),
               optional: Iterable[str] = (), skip: Iterable[str] = ()) -> list[str]:
    """Module paths in an order insmod accepts (every dependency before its users), each once.

    `builtin`: names in modules.builtin (nothing to load); `optional`: names that may be missing;
    `skip`: paths already loaded (the early modules). A missing required module is a ValidationError."""
    by_path = {path: name for name, (path, _) in deps.items()}
    built = {module_name(b) for b in builtin}
    opt = {o.replace("-", "_") for o in optional}
    done: list[str] = []
    seen = set(skip)

    def visit(path: str) -> None:
        if path in seen:
            return
        seen.add(path)
        for dep in deps[by_path[path]][1] if path in by_path else []:
            visit(dep)
        done.append(path)

    for want in wanted:
        name = want.replace("-", "_")
        if name in deps:
            visit(deps[name][0])
        elif name not in built and name not in opt:
            raise ValidationError(f"modules: the guest kernel has no module {want!r}",
                                  hint="is the kernel under /var/cache/netk8s/kernel complete? re-run scripts/install-deps.sh")
    return done


# ----------------------------------------------------------------------------- initramfs


INIT_SCRIPT = r"""#!/bin/busybox sh
# netk8s guest init (netk8s.lab.vmspec): host tree over 9p, writable overlays, modules, eth0, the command.
/bin/busybox mkdir -p /proc /sys /dev /bin /newroot /ovl
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
say() { echo "netk8s-init: $*" > /dev/console; }
fail() { say "FAILED: $*"; poweroff -f; }
arg() { sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p" /proc/cmdline | head -n 1; }
unb64() { v=$(echo "$1" | tr '_-' '/+'); while [ $(( ${#v} % 4 )) -ne 0 ]; do v="$v="; done; echo "$v" | base64 -d; }
for m in $(cat /early-modules); do insmod "/$m" || fail "insmod $m"; done
mount -t 9p -o ro,trans=virtio,version=9p2000.L,cache=loose,msize=262144 hostroot /newroot || fail "mount 9p"
mount -t tmpfs -o mode=755 tmpfs /ovl
for d in OVERLAY_DIRS; do
  u=/ovl/$(echo "$d" | tr / _); mkdir -p "$u/upper" "$u/work"
  mount -t overlay overlay -o "lowerdir=/newroot$d,upperdir=$u/upper,workdir=$u/work" "/newroot$d" || fail "overlay $d"
done
for d in TMPFS_DIRS; do mount -t tmpfs -o mode=755 tmpfs "/newroot$d" || fail "tmpfs $d"; done
chmod 1777 /newroot/tmp
kver=$(arg netk8s.kver)
mods=/var/cache/netk8s/kernel/$kver
for m in $(cat /node-modules); do insmod "/newroot$mods/lib/modules/$kver/$m" 2>/dev/null || [ -d "/sys/module/$(basename "$m" .ko | tr - _)" ] || say "insmod $m failed"; done
# the kernel's own module requests (ipvsadm's scheduler, iptables' matches) use the extracted modules;
# the wrapper runs after switch_root, so its path is the one in the host's tree
mkdir -p /newroot/run/netk8s
printf '#!/bin/sh\nexec /sbin/modprobe -d %s "$@"\n' "$mods" > /newroot/run/netk8s/modprobe
chmod 755 /newroot/run/netk8s/modprobe
echo /run/netk8s/modprobe > /proc/sys/kernel/modprobe
hostname "$(arg netk8s.hostname)"
ip link set lo up
ip link set eth0 up || fail "no eth0"
ip addr add "$(arg netk8s.ip)" dev eth0 || fail "eth0 address"
gw=$(arg netk8s.gw); [ -n "$gw" ] && ip route add default via "$gw"
unb64 "$(arg netk8s.cmd)" > /newroot/run/netk8s/command
env=$(arg netk8s.env); [ -n "$env" ] && unb64 "$env" > /newroot/run/netk8s/env
cp /stage2 /newroot/run/netk8s/init && chmod 755 /newroot/run/netk8s/init
for d in proc sys dev; do mount --move /$d /newroot/$d; done
say "switch_root"
exec switch_root /newroot /run/netk8s/init
"""

# PID 1 after switch_root (host's tree): run the command, report its status on the console, power off.
STAGE2_SCRIPT = r"""#!/bin/sh
export PATH=GUEST_PATH HOME=/root PYTHONDONTWRITEBYTECODE=1
[ -f /run/netk8s/env ] && . /run/netk8s/env
mkdir -p /dev/pts /dev/shm /run/netns
mount -t devpts devpts /dev/pts 2>/dev/null
mount -t tmpfs tmpfs /dev/shm 2>/dev/null
echo "netk8s-guest: up $(cut -d' ' -f1 /proc/uptime)s" > /dev/console
sh /run/netk8s/command < /dev/null > /dev/console 2>&1
echo "netk8s-guest: command exited $?" > /dev/console
exec /bin/busybox poweroff -f 2>/dev/null || echo o > /proc/sysrq-trigger
"""


def init_script() -> str:
    return (INIT_SCRIPT.replace("OVERLAY_DIRS", " ".join(OVERLAY_DIRS))
            .replace("TMPFS_DIRS", " ".join(TMPFS_DIRS)))


def stage2_script() -> str:
    return STAGE2_SCRIPT.replace("GUEST_PATH", GUEST_PATH)


@dataclass(frozen=True)
class CpioEntry:
    path: str  # inside the archive, no leading '/'
    mode: int  # full st_mode (type + permissions)
    data: bytes = b""  # file contents, or the link target of a symlink


def initramfs_entries(busybox: bytes, early: Sequence[tuple[str, bytes]], node_modules: Sequence[str]) -> list[CpioEntry]:
    """The initramfs' files: /init, /stage2, busybox, the early modules (path, contents) and the lists
    the init script reads (early module paths to insmod, node module paths under the extracted kernel)."""
    entries = [CpioEntry(d, stat.S_IFDIR | 0o755) for d in ("bin", "dev", "proc", "sys", "newroot", "ovl", "lib")]
    entries += [
        CpioEntry("init", stat.S_IFREG | 0o755, init_script().encode()),
        CpioEntry("stage2", stat.S_IFREG | 0o755, stage2_script().encode()),
        CpioEntry("bin/busybox", stat.S_IFREG | 0o755, busybox),
        CpioEntry("early-modules", stat.S_IFREG | 0o644, "".join(f"{p}\n" for p, _ in early).encode()),
        CpioEntry("node-modules", stat.S_IFREG | 0o644, "".join(f"{p}\n" for p in node_modules).encode()),
    ]
    dirs: set[str] = set()
    for path, _ in early:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    entries += [CpioEntry(d, stat.S_IFDIR | 0o755) for d in sorted(dirs)]
    entries += [CpioEntry(path, stat.S_IFREG | 0o644, data) for path, data in early]
    return entries


def cpio_newc(entries: Iterable[CpioEntry]) -> bytes:
    """A cpio archive in the "newc" format the kernel unpacks as initramfs (Documentation/driver-api/
    early-userspace/buffer-format.rst): 110-byte ASCII header, name, data, each padded to 4 bytes."""
    out = bytearray()

    def pad() -> None:
        out.extend(b"\0" * (-len(out) % 4))

    def record(ino: int, path: str, mode: int, data: bytes) -> None:
        name = path.encode() + b"\0"
        nlink = 2 if stat.S_ISDIR(mode) else 1
        fields = (ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name), 0)
        out.extend(b"070701" + "".join(f"{f:08X}" for f in fields).encode())
        out.extend(name)
        pad()
        out.extend(data)
        pad()

    for ino, e in enumerate(entries, start=1):
        record(ino, e.path.lstrip("/"), e.mode, e.data)
    record(0, "TRAILER!!!", 0, b"")
    return bytes(out)


# ----------------------------------------------------------------------------- the control protocol


def control_request(token: str, argv: Sequence[str], *, stdin: str = "", timeout: float = 120.0,
                    env: Mapping[str, str] | None = None, detach: bool = False, log: str = "") -> bytes:
    """One request to the guest control server: a JSON line. `detach`: start the command in the
    background (its output to `log`, a guest path) and answer with its PID at once."""
    if not argv:
        raise ValidationError("argv: empty command")
    req = {"token": token, "argv": list(argv), "stdin": stdin, "timeout": timeout, "env": dict(env or {}),
           "detach": detach, "log": log}
    return (json.dumps(req) + "\n").encode()


@dataclass(frozen=True)
class GuestResult:
    """What a command in the guest did: exit status (None: it timed out), output, the PID when detached."""

    rc: int | None
    stdout: str
    stderr: str
    pid: int | None = None

    @property
    def ok(self) -> bool:
        return self.rc == 0


def parse_control_response(line: bytes) -> GuestResult:
    try:
        data = json.loads(line)
    except ValueError as exc:
        raise ValidationError(f"guest control response: not JSON ({exc})") from None
    if "error" in data:
        raise ValidationError(f"guest control: {data['error']}")
    return GuestResult(data.get("rc"), data.get("stdout", ""), data.get("stderr", ""), data.get("pid"))
