"""VM nodes, pure: QEMU's argv, the guest kernel's command line, module load order, the initramfs archive,
the control protocol, and the one-line errors for specs that cannot boot."""

from __future__ import annotations

import json
import shlex
import stat
from dataclasses import replace

import pytest

from netk8s.errors import ValidationError
from netk8s.lab import vmguest
from netk8s.model import naming, vmspec

SPEC = vmspec.VmSpec(
    name="node1", kernel="/var/cache/netk8s/kernel/6.1.0-57-amd64/boot/vmlinuz-6.1.0-57-amd64",
    initrd="/tmp/vm/initrd.cpio", kernel_version="6.1.0-57-amd64", tap="tap-0123456789",
    mac=vmspec.mac_for("lab/node1"), ip_cidr="192.168.56.11/24", gateway="192.168.56.1",
    serial_log="/tmp/vm/serial.log", command=("/usr/bin/python3", "-m", "netk8s.lab.vmguest", "--token", "a b"),
    env={"NETK8S_LAB": "lab"})


def arg_after(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_qemu_argv_tcg_9p_read_only_tap_by_name_serial_to_file() -> None:
    argv = vmspec.qemu_argv(SPEC)
    assert argv[0] == "qemu-system-x86_64"
    assert arg_after(argv, "-accel") == ["tcg,tb-size=256"] and arg_after(argv, "-smp") == ["1"]
    fsdev = arg_after(argv, "-fsdev")[0]
    assert "path=/," in fsdev and "readonly=on" in fsdev
    assert f"mount_tag={vmspec.ROOT_TAG}" in " ".join(arg_after(argv, "-device"))
    assert arg_after(argv, "-netdev") == ["tap,id=net0,ifname=tap-0123456789,script=no,downscript=no"]
    assert f"virtio-net-pci,netdev=net0,mac={SPEC.mac},romfile=" in arg_after(argv, "-device")
    assert arg_after(argv, "-chardev") == ["file,id=console,path=/tmp/vm/serial.log"]
    assert "-no-reboot" in argv and "-nodefaults" in argv
    kvm = vmspec.qemu_argv(replace(SPEC, kvm=True))
    assert arg_after(kvm, "-accel") == ["kvm"] and arg_after(kvm, "-cpu") == ["host"]


def test_kernel_cmdline_carries_the_command_and_env_losslessly() -> None:
    line = vmspec.kernel_cmdline(SPEC)
    words = dict(w.split("=", 1) for w in line.split() if "=" in w)
    assert "mitigations=off" in line.split() and words["console"] == "ttyS0"
    assert words[vmspec.GUEST_MARK] == "node1" and vmguest.in_guest(line)
    assert words["netk8s.ip"] == "192.168.56.11/24" and words["netk8s.gw"] == "192.168.56.1"
    assert shlex.split(vmspec.unb64(words["netk8s.cmd"])) == list(SPEC.command)  # "a b" stays one argument
    assert vmspec.unb64(words["netk8s.env"]) == "export NETK8S_LAB=lab\n"
    assert not vmguest.in_guest("BOOT_IMAGE=/vmlinuz root=/dev/vda ro")


@pytest.mark.parametrize(("change", "field"), [
    ({"name": "node 1"}, "name"),
    ({"tap": "tap-much-too-long-name"}, "tap"),
    ({"ip_cidr": "192.168.56.11"}, "ip_cidr"),
    ({"ip_cidr": "192.168.56.300/24"}, "ip_cidr"),
    ({"gateway": "10.0.0.1"}, "gateway"),
    ({"command": ()}, "command"),
    ({"command": ("x" * 3000,)}, "command"),
    ({"memory_mb": 64}, "memory_mb"),
    ({"env": {"1BAD": "x"}}, "env"),
])
def test_specs_that_cannot_boot_are_refused_naming_the_field(change: dict, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        vmspec.validate(replace(SPEC, **change))
    assert err.value.message.startswith(f"{field}:") and "\n" not in err.value.message


MODULES_DEP = """\
kernel/net/netfilter/ipvs/ip_vs_rr.ko: kernel/net/netfilter/ipvs/ip_vs.ko kernel/net/netfilter/nf_conntrack.ko kernel/lib/libcrc32c.ko
kernel/net/netfilter/ipvs/ip_vs.ko: kernel/net/netfilter/nf_conntrack.ko kernel/lib/libcrc32c.ko
kernel/net/netfilter/nf_conntrack.ko: kernel/lib/libcrc32c.ko
kernel/lib/libcrc32c.ko:
kernel/drivers/net/dummy.ko:
kernel/net/bridge/br_netfilter.ko: kernel/net/bridge/bridge.ko
kernel/net/bridge/bridge.ko:
"""


def test_load_order_puts_every_dependency_first_once() -> None:
    deps = vmspec.parse_modules_dep(MODULES_DEP)
    order = vmspec.load_order(deps, ["ip_vs_rr", "ip_vs", "br-netfilter", "dummy"], builtin=["kernel/net/veth.ko"],
                              optional=["xt_nope"])
    assert order == ["kernel/lib/libcrc32c.ko", "kernel/net/netfilter/nf_conntrack.ko",
                     "kernel/net/netfilter/ipvs/ip_vs.ko", "kernel/net/netfilter/ipvs/ip_vs_rr.ko",
                     "kernel/net/bridge/bridge.ko", "kernel/net/bridge/br_netfilter.ko", "kernel/drivers/net/dummy.ko"]
    assert vmspec.load_order(deps, ["veth", "xt_nope"], builtin=["kernel/drivers/net/veth.ko"],
                             optional=["xt_nope"]) == []
    skip = vmspec.load_order(deps, ["ip_vs"], skip=["kernel/lib/libcrc32c.ko"])
    assert skip == ["kernel/net/netfilter/nf_conntrack.ko", "kernel/net/netfilter/ipvs/ip_vs.ko"]
    with pytest.raises(ValidationError, match="modules: the guest kernel has no module 'ip_vs_xx'"):
        vmspec.load_order(deps, ["ip_vs_xx"])
    assert vmspec.module_name("kernel/net/x/nf-foo.ko.xz") == "nf_foo"


def parse_cpio(data: bytes) -> dict[str, tuple[int, bytes]]:
    """A reader of the newc format, for the test: {path: (mode, data)}."""
    out, pos = {}, 0
    while True:
        assert data[pos:pos + 6] == b"070701"
        fields = [int(data[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name_at = pos + 110
        name = data[name_at:name_at + namesize - 1].decode()
        body = name_at + namesize
        body += -body % 4
        if name == "TRAILER!!!":
            return out
        out[name] = (mode, data[body:body + size])
        pos = body + size
        pos += -pos % 4


def test_initramfs_holds_init_busybox_early_modules_and_the_lists() -> None:
    early = [("kernel/fs/9p/9p.ko", b"\x7fELF9p"), ("kernel/fs/overlayfs/overlay.ko", b"\x7fELFov")]
    files = parse_cpio(vmspec.cpio_newc(vmspec.initramfs_entries(b"\x7fELFbusybox", early,
                                                                   ["kernel/net/netfilter/ipvs/ip_vs.ko"])))
    mode, init = files["init"]
    assert stat.S_ISREG(mode) and mode & 0o111 and init.startswith(b"#!/bin/busybox sh")
    assert b"mount -t 9p" in init and b"switch_root /newroot" in init
    assert b"mount --move" in init  # the guest's /proc /sys /dev, not the host's through 9p
    for d in vmspec.OVERLAY_DIRS:
        assert d.encode() in init
    assert files["bin/busybox"][1] == b"\x7fELFbusybox"
    assert files["kernel/fs/9p/9p.ko"][1] == b"\x7fELF9p" and stat.S_ISDIR(files["kernel/fs/9p"][0])
    assert files["early-modules"][1] == b"kernel/fs/9p/9p.ko\nkernel/fs/overlayfs/overlay.ko\n"
    assert files["node-modules"][1] == b"kernel/net/netfilter/ipvs/ip_vs.ko\n"
    assert b"poweroff -f" in files["stage2"][1]


def test_control_protocol_round_trip_and_errors() -> None:
    req = json.loads(vmspec.control_request("tok", ["ipvsadm", "-Ln"], stdin="x", timeout=5, env={"A": "1"}))
    assert req == {"token": "tok", "argv": ["ipvsadm", "-Ln"], "stdin": "x", "timeout": 5, "env": {"A": "1"},
                   "detach": False, "log": ""}
    r = vmspec.parse_control_response(b'{"rc": 3, "stdout": "o", "stderr": "e"}\n')
    assert (r.rc, r.stdout, r.stderr, r.ok) == (3, "o", "e", False)
    with pytest.raises(ValidationError, match="guest control: bad token"):
        vmspec.parse_control_response(b'{"error": "bad token"}\n')
    with pytest.raises(ValidationError, match="argv"):
        vmspec.control_request("tok", [])


def test_names_are_stable_and_fit_the_kernel() -> None:
    assert vmspec.mac_for("lab/node1") == vmspec.mac_for("lab/node1") != vmspec.mac_for("lab/node2")
    assert vmspec.mac_for("x").startswith("52:54:00:")
    tap = naming.vm_tap("t123x4vm", "node1")
    assert len(tap) <= 15 and tap != naming.vm_tap("t123x4vm", "node2")
