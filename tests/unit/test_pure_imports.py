"""The pure layers import nothing kernel-facing: no subprocess, socket, pyroute2, scapy or netk8s.dataplane,
directly or through another netk8s module (issue 9: kernel I/O only in netk8s/dataplane)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KERNEL_FACING = ("subprocess", "socket", "pyroute2", "scapy", "netk8s.dataplane", "http", "asyncio", "threading")
PURE = [
    "netk8s/model/naming.py", "netk8s/model/iptsave.py", "netk8s/model/status.py",
    "netk8s/proxy/model.py", "netk8s/proxy/render_iptables.py", "netk8s/proxy/render_nftables.py",
    "netk8s/proxy/render_ipvs.py", "netk8s/proxy/userspace_rules.py", "netk8s/proxy/rules_view.py",
    "netk8s/proxy/nft_rules_view.py", "netk8s/proxy/testing/fake_iptables.py", "netk8s/proxy/testing/fake_nft.py",
    "netk8s/proxy/testing/fake_ipvs.py",
]


def imports(path: Path) -> set[str]:
    """Every module `path` imports at any level (module-level and inside functions)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def closure(rel: str) -> dict[str, str]:
    """{imported module: the netk8s file importing it} over `rel` and the netk8s modules it imports."""
    seen: dict[str, str] = {}
    todo = [ROOT / rel]
    done: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in done:
            continue
        done.add(path)
        for mod in imports(path):
            seen.setdefault(mod, str(path.relative_to(ROOT)))
            if mod.startswith("netk8s.") and not mod.startswith("netk8s.dataplane"):
                for cand in (ROOT / (mod.replace(".", "/") + ".py"), ROOT / mod.replace(".", "/") / "__init__.py"):
                    if cand.exists():
                        todo.append(cand)
    return seen


@pytest.mark.parametrize("rel", PURE)
def test_pure_module_imports_nothing_kernel_facing(rel: str) -> None:
    bad = {mod: where for mod, where in closure(rel).items()
           if any(mod == k or mod.startswith(k + ".") for k in KERNEL_FACING)}
    assert bad == {}, f"{rel} reaches kernel-facing imports: {bad}"


@pytest.mark.parametrize("rel", PURE)
def test_pure_module_opens_no_file(rel: str) -> None:
    tree = ast.parse((ROOT / rel).read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    opened = [ast.unparse(c) for c in calls
              if isinstance(c.func, ast.Name) and c.func.id == "open"
              or isinstance(c.func, ast.Attribute) and c.func.attr in ("read_text", "write_text", "read_bytes")]
    assert opened == [], f"{rel} does file I/O: {opened}"
