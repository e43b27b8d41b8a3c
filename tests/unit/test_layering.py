"""The layering rules, read from the source: pure modules reach no kernel-facing API, the CLI spawns
nothing. Only netk8s/dataplane (and the node runtime / lab it serves) may touch the kernel.

The check is static (ast): it follows every netk8s module a pure module imports, transitively, and fails
on an import of a kernel-facing module or a call that does file or process I/O, naming the module and
line. A rename of a listed module fails here too, so the list stays true.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2]
PACKAGE = SRC / "netk8s"

# Pure by design: objects and validation, the proxy renderers, DNS records, the controller's reconcile
# functions, and the CLI's text formatting.
PURE_MODULES = [
    *sorted(f"netk8s.model.{p.stem}" for p in (PACKAGE / "model").glob("*.py") if p.stem != "__init__"),
    "netk8s.proxy.model",
    "netk8s.proxy.render_iptables",
    "netk8s.proxy.render_ipvs",
    "netk8s.proxy.render_nftables",
    "netk8s.proxy.userspace_rules",
    "netk8s.proxy.tracer_iptables",
    "netk8s.proxy.tracer_ipvs",
    "netk8s.proxy.tracer_nft",
    "netk8s.policy.model",
    "netk8s.policy.nftables",
    "netk8s.dns.records",
    "netk8s.controller.reconcile",
    "netk8s.controller.endpoints",
    "netk8s.controller.gc",
    "netk8s.controller.scheduler",
    "netk8s.controller.services",
    "netk8s.controller.workloads",
    "netk8s.cli.printers",
    "netk8s.cli.describe",
    "netk8s.trace.model",
    "netk8s.trace.paths",
]

KERNEL_MODULES = {"subprocess", "socket", "ssl", "select", "selectors", "ctypes", "multiprocessing", "pty",
                  "pyroute2", "scapy", "iptc", "nftables", "http", "urllib", "asyncio", "sqlite3", "shutil"}
# Calls that do file or process I/O: os.* functions, Path/file methods, and open() itself (reading an
# environment variable is not I/O here).
OS_SPAWN = {"system", "popen", "fork", "forkpty", "execv", "execve", "execvp", "execvpe", "spawnv", "spawnvp",
            "posix_spawn", "posix_spawnp"}
OS_IO = OS_SPAWN | {"open", "read", "write", "listdir", "scandir", "remove", "unlink", "rename", "replace",
                    "mkdir", "makedirs", "rmdir", "kill", "stat", "readlink"}
FILE_METHODS = {"open", "read_text", "read_bytes", "write_text", "write_bytes", "iterdir", "unlink", "rmdir",
                "touch"}


# Named exceptions: reading data files that ship inside an installed package (importlib.resources) is
# part of the program, not I/O on the machine. model/schema.py loads the Kubernetes JSON schemas that
# the PyPI package kubernetes-validate ships.
PACKAGE_DATA_READS = {("netk8s.model.schema", "calls .read_text()")}


@dataclass(frozen=True)
class Finding:
    module: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line}: {self.what}"


def module_path(name: str) -> Path | None:
    base = SRC.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imports(name: str, tree: ast.Module) -> Iterator[tuple[int, str]]:
    """(line, module) for every import; `from pkg import sub` yields pkg.sub when sub is a module."""
    package = name if module_path(name) and module_path(name).name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            yield node.lineno, base
            for alias in node.names:
                if module_path(f"{base}.{alias.name}"):
                    yield node.lineno, f"{base}.{alias.name}"


def io_calls(tree: ast.Module, os_names: set[str], methods: set[str], bare: set[str]) -> Iterator[tuple[int, str]]:
    """(line, what) for calls of os.NAME in os_names, of any .METHOD in methods, of a bare name in bare."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in bare:
            yield node.lineno, func.id
        elif isinstance(func, ast.Attribute):
            if isinstance(func.value, ast.Name) and func.value.id == "os" and func.attr in os_names:
                yield node.lineno, f"os.{func.attr}"
            elif func.attr in methods:
                yield node.lineno, f".{func.attr}"


def file_or_process_io(tree: ast.Module) -> Iterator[tuple[int, str]]:
    return io_calls(tree, OS_IO, FILE_METHODS, {"open"})


def spawns(tree: ast.Module) -> Iterator[tuple[int, str]]:
    return io_calls(tree, OS_SPAWN, {"Popen"}, {"Popen"})


def parse(name: str) -> ast.Module:
    path = module_path(name)
    assert path is not None, f"{name}: no such module (renamed? update the list in {__file__})"
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


def purity_findings(root: str) -> list[Finding]:
    """Kernel-facing imports and I/O calls in `root` and every netk8s module it reaches."""
    findings: list[Finding] = []
    seen: set[str] = set()
    todo = [root]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        tree = parse(name)
        for line, mod in imports(name, tree):
            top = mod.split(".")[0]
            if top in KERNEL_MODULES:
                findings.append(Finding(name, line, f"imports {mod}"))
            elif top == "netk8s" and module_path(mod):
                todo.append(mod)
        findings += [Finding(name, line, f"calls {what}()") for line, what in file_or_process_io(tree)
                     if (name, f"calls {what}()") not in PACKAGE_DATA_READS]
    return findings


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_module_reaches_no_kernel_or_file_io(module: str) -> None:
    findings = purity_findings(module)
    assert not findings, "\n".join(map(str, findings))


def cli_modules() -> list[str]:
    return sorted(".".join(p.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
                  for p in (PACKAGE / "cli").rglob("*.py"))


@pytest.mark.parametrize("module", cli_modules())
def test_cli_spawns_no_process_and_reads_no_proc(module: str) -> None:
    tree = parse(module)
    bad = [Finding(module, line, f"imports {mod}") for line, mod in imports(module, tree)
           if mod.split(".")[0] in ("subprocess", "multiprocessing", "pty")]
    bad += [Finding(module, line, f"calls {what}()") for line, what in spawns(tree)]
    bad += [Finding(module, node.lineno, f"reads {node.value!r}") for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("/proc")]
    bad += [Finding(module, node.lineno, f"reads {ast.unparse(node)!r}") for node in ast.walk(tree)
            if isinstance(node, ast.JoinedStr) and ast.unparse(node).startswith(("f'/proc", 'f"/proc'))]
    assert not bad, "\n".join(map(str, bad))


def test_the_checks_find_what_they_look_for() -> None:
    """The walker itself: a kernel import, a file read and a spawn in made-up source are all reported."""
    tree = ast.parse("import subprocess\nfrom pathlib import Path\nPath('x').read_text()\n"
                     "subprocess.Popen(['true'])\nopen('/proc/1/stat')\nos.system('x')\n'a'.replace('a', 'b')\n")
    assert [m for _, m in imports("x", tree)] == ["subprocess", "pathlib"]
    assert sorted(w for _, w in file_or_process_io(tree)) == [".read_text", "open", "os.system"]
    assert sorted(w for _, w in spawns(tree)) == [".Popen", "os.system"]
    assert any(isinstance(n, ast.Constant) and n.value == "/proc/1/stat" for n in ast.walk(tree))


def product_modules() -> list[str]:
    return sorted(".".join(p.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
                  for p in PACKAGE.rglob("*.py") if "testing" not in p.relative_to(PACKAGE).parts)


@pytest.mark.parametrize("module", product_modules())
def test_product_code_does_not_import_the_test_fakes(module: str) -> None:
    """The tracer `netk8s trace` runs is the product's (netk8s.proxy.tracer_*); the fakes in
    netk8s.proxy.testing import it, never the other way round."""
    found = [f"{module}:{line}: imports {mod}" for line, mod in imports(module, parse(module))
             if mod == "netk8s.proxy.testing" or mod.startswith("netk8s.proxy.testing.")]
    assert not found, "\n".join(found)
