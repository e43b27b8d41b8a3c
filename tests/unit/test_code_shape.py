"""The code shape issue 9 asks for, read from the source (ast, no import): product code never detects a
test, each job has one authority, and one module runs a process in a pod.

- No test detection: no comparison of a callable against a default or a module function (`restore_fn is
  _default_restore`), no capability probe of a class constant (`getattr(renderer, "BUILTIN_JUMPS")`).
- One authority per job: kernel names and the chain hash in model/naming.py, the RFC 3339 formatter and
  the Ready predicate in model/status.py, the iptables-save parser in model/iptsave.py, the /proc
  reader in dataplane/procfs.py (dataplane/netns.py for namespace files). Each rule has an explicit
  allow-list with the reason; an allow-list entry that no longer matches anything fails too, so the
  lists stay true.
- One way into a pod: under netk8s/node only node/podexec.py starts processes or builds the launcher's
  argv (netk8s.dataplane.launch, which does the setns).

Every finder has a self-test on planted source.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2]
PACKAGE = SRC / "netk8s"

Found = tuple[int, str]  # (line, what)


@functools.cache
def product_files() -> dict[str, ast.Module]:
    """Every module under netk8s/, by path relative to netk8s/ (e.g. "model/naming.py")."""
    return {p.relative_to(PACKAGE).as_posix(): ast.parse(p.read_text(encoding="utf-8"), str(p))
            for p in sorted(PACKAGE.rglob("*.py"))}


def docstrings(tree: ast.Module) -> set[int]:
    """ids of the docstring nodes (prose may name anything)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


@functools.cache
def strings(tree: ast.Module) -> tuple[tuple[int, str], ...]:
    """(line, text) of every string literal outside docstrings; an f-string yields its leading literal."""
    return tuple(_strings(tree))


def _strings(tree: ast.Module) -> Iterator[tuple[int, str]]:
    skip = docstrings(tree)
    in_fstring: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            in_fstring.update(id(v) for v in node.values)
            if node.values and isinstance(node.values[0], ast.Constant) and isinstance(node.values[0].value, str):
                yield node.lineno, node.values[0].value
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip
                and id(node) not in in_fstring):
            yield node.lineno, node.value


@functools.cache
def calls(tree: ast.Module) -> tuple[tuple[ast.Call, str], ...]:
    """Every call with its dotted callee (`subprocess.Popen`, `x.startswith`, `open`)."""
    return tuple((node, ast.unparse(node.func)) for node in ast.walk(tree) if isinstance(node, ast.Call))


# ---- product code never detects a test ------------------------------------------------------------------


def module_functions(tree: ast.Module) -> set[str]:
    """Names a module binds to functions: its own top-level defs and the names it imports from modules."""
    names = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names.update(a.asname or a.name for a in node.names if a.name[:1].islower())
    return names


def imported_modules(tree: ast.Module) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            out.update(a.asname or a.name for a in node.names)
    return out


def is_default_name(node: ast.expr) -> bool:
    """`_default_restore`, `default_fn`, `self._default`: a lowercase (callable) default, not a CONSTANT."""
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
    return bool(re.match(r"_?default(_|$)", name))


def default_comparisons(tree: ast.Module) -> list[Found]:
    """`x is _default_restore`, `fn is not some_function`, `fn == module.function`: a callable compared
    with the product's own default (or any module function) to tell a test's injected fake apart."""
    funcs, mods = module_functions(tree), imported_modules(tree)
    out: list[Found] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        for op, left, right in zip(node.ops, operands, operands[1:]):
            if not isinstance(op, (ast.Is, ast.IsNot, ast.Eq, ast.NotEq)) or any(
                    isinstance(side, ast.Constant) for side in (left, right)):  # `x is None` tells no fake apart
                continue
            if any(is_default_name(side) or (isinstance(side, ast.Name) and side.id in funcs)
                   or (isinstance(side, ast.Attribute) and isinstance(side.value, ast.Name)
                       and side.value.id in mods and side.attr[:1].islower())
                   for side in (left, right)):
                out.append((node.lineno, ast.unparse(node)))
                break
    return out


# Probing an object for an optional attribute is a protocol (a store's own watch_kinds); probing for a
# class CONSTANT or for what a renderer returned is how the old proxier told modes (and fakes) apart.
PROBED_CAPABILITIES = {"batches"}


def capability_probes(tree: ast.Module) -> list[Found]:
    out: list[Found] = []
    for node, callee in calls(tree):
        if callee in ("getattr", "hasattr") and len(node.args) >= 2:
            attr = node.args[1]
            if isinstance(attr, ast.Constant) and isinstance(attr.value, str) and (
                    re.fullmatch(r"[A-Z][A-Z0-9_]+", attr.value) or attr.value in PROBED_CAPABILITIES):
                out.append((node.lineno, ast.unparse(node)))
    return out


@pytest.mark.parametrize("finder", [default_comparisons, capability_probes])
def test_product_code_never_detects_a_test(finder: Callable[[ast.Module], list[Found]]) -> None:
    bad = [f"netk8s/{path}:{line}: {what}" for path, tree in product_files().items() for line, what in finder(tree)]
    assert not bad, "\n".join(bad)


def test_the_test_detection_finders_find_planted_examples() -> None:
    planted = ast.parse(
        "from netk8s.dataplane import iptables\n"
        "from netk8s.dataplane.iptables import restore\n"
        "def _default_restore(text): ...\n"
        "class P:\n"
        "    def __init__(self, restore_fn=_default_restore, renderer=None):\n"
        "        self.kernel = restore_fn is _default_restore\n"      # 6
        "        self.real = restore_fn is not restore\n"             # 7
        "        self.real2 = restore_fn is iptables.restore\n"       # 8
        "        self.jumps = getattr(renderer, 'BUILTIN_JUMPS', ())\n"  # 9
        "        self.tx = hasattr(renderer, 'batches')\n"            # 10
        "        self.ok = restore_fn is None or renderer is not None\n"
        "        self.ok2 = getattr(renderer, 'watch_kinds', None)\n"
        "        self.ok3 = renderer.mode == iptables.MODE\n")
    assert [line for line, _ in default_comparisons(planted)] == [6, 7, 8]
    assert [line for line, _ in capability_probes(planted)] == [9, 10]


# ---- one authority per job ------------------------------------------------------------------------------


@dataclass
class Authority:
    """One job, the module(s) that own it, and the other places allowed to match the finder, with why."""

    job: str
    owners: tuple[str, ...]
    owns: str  # a function or constant the first owner defines
    finder: Callable[[ast.Module], list[Found]]
    allowed: dict[str, str] = field(default_factory=dict)

    def findings(self, files: dict[str, ast.Module]) -> dict[str, list[Found]]:
        return {path: found for path, tree in files.items() if (found := self.finder(tree))}


def hashlib_uses(tree: ast.Module) -> list[Found]:
    return [(line, "imports hashlib") for node in ast.walk(tree) for line in [getattr(node, "lineno", 0)]
            if (isinstance(node, ast.Import) and any(a.name == "hashlib" for a in node.names))
            or (isinstance(node, ast.ImportFrom) and node.module == "hashlib")]


def base32_tables(tree: ast.Module) -> list[Found]:
    """A base32 alphabet or base64.b32encode: the chain hash's encoding, spelled again."""
    out = [(line, f"base32 alphabet {text[:12]}...") for line, text in strings(tree) if "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567" in text]
    return out + [(node.lineno, callee) for node, callee in calls(tree) if callee.endswith("b32encode")]


# Kernel names netk8s creates or follows: kube-proxy's chains, tables and ipsets, and the netns tag.
KERNEL_NAME_RE = re.compile(r"^(KUBE-|kube-proxy$|kube-ipvs0$|nk8s-)")


def kernel_name_literals(tree: ast.Module) -> list[Found]:
    return [(line, repr(text)) for line, text in strings(tree) if KERNEL_NAME_RE.match(text)]


RFC3339_RE = re.compile(r"%Y-%m-%dT%H:%M:%S")


def rfc3339_formatters(tree: ast.Module) -> list[Found]:
    """A strftime pattern of RFC 3339, or datetime.isoformat() (then patched to end in `Z`)."""
    out = [(line, repr(text)) for line, text in strings(tree) if RFC3339_RE.search(text)]
    return out + [(node.lineno, callee) for node, callee in calls(tree) if callee.endswith(".isoformat")]


def ready_predicates(tree: ast.Module) -> list[Found]:
    """`cond.get("type") == "Ready"` / `cond["type"] == "Ready"`: looking up the Ready condition by hand."""
    out: list[Found] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.Eq):
            sides = [node.left, node.comparators[0]]
            ready = any(isinstance(s, ast.Constant) and s.value == "Ready" for s in sides)
            typed = any("type" in ast.unparse(s) for s in sides if not isinstance(s, ast.Constant))
            if ready and typed:
                out.append((node.lineno, ast.unparse(node)))
    return out


def save_parsers(tree: ast.Module) -> list[Found]:
    """Reading iptables-save text: `line.startswith("*")` (a table header) or a comparison with "COMMIT"."""
    out = [(node.lineno, ast.unparse(node)) for node, callee in calls(tree)
           if callee.endswith(".startswith") and node.args and isinstance(node.args[0], ast.Constant)
           and node.args[0].value == "*"]
    out += [(node.lineno, ast.unparse(node)) for node in ast.walk(tree) if isinstance(node, ast.Compare)
            and any(isinstance(s, ast.Constant) and s.value == "COMMIT" for s in [node.left, *node.comparators])]
    return out


def proc_reads(tree: ast.Module) -> list[Found]:
    return [(line, repr(text)) for line, text in strings(tree) if text == "/proc" or text.startswith("/proc/")]


AUTHORITIES = [
    Authority("kernel-name hashing", ("model/naming.py",), "kube_chain_hash", hashlib_uses, {
        "model/vmspec.py": "a VM's MAC address from its name (an address, not a kernel object name)",
        "apiserver/openapi.py": "the OpenAPI document's ETag",
        "proxy/announce.py": "the announcing node's rendezvous-hash order",
        "proxy/testing/fake_ipvs.py": "the fake IPVS scheduler's source hashing",
        "ingress/model.py": "a certificate file name inside the controller's workdir",
        "controller/workloads.py": "pod-template-hash (a Kubernetes object name, not a kernel name)",
        "controller/endpoints.py": "an EndpointSlice name suffix (a Kubernetes object name)",
    }),
    Authority("the chain hash's base32", ("model/naming.py",), "_B32", base32_tables),
    Authority("kernel names", ("model/naming.py",), "KUBE_SERVICES", kernel_name_literals, {
    }),
    Authority("RFC 3339 formatting", ("model/status.py",), "rfc3339", rfc3339_formatters),
    Authority("the Ready predicate", ("model/status.py",), "is_ready", ready_predicates),
    Authority("parsing iptables-save", ("model/iptsave.py",), "parse_save", save_parsers, {
        "proxy/tracer_iptables.py": "the tables the packet tracer and the fake iptables-restore share: restore "
                                    "input and iptables-save -c output, with iptables-restore's semantics",
    }),
    Authority("reading /proc", ("dataplane/procfs.py", "dataplane/netns.py"), "proc_stat", proc_reads, {
        "dataplane/sysctl.py": "/proc/sys is the sysctl interface (one writer of sysctls)",
        "dataplane/ipvs.py": "/proc/net/ip_vs: probing the kernel for IPVS",
        "dataplane/launch.py": "/proc/PID/ns/uts: the namespace the launcher joins (setns)",
        "dataplane/links.py": "/proc/self/ns/net: the namespace pyroute2 opens",
        "lab/vmguest.py": "the guest's own /proc/cmdline; vmguest imports only the standard library",
    }),
]
PENDING: set[str] = set()  # allow-list entries that may stop matching once another branch lands


@pytest.mark.parametrize("authority", AUTHORITIES, ids=lambda a: a.job)
def test_one_authority_per_job(authority: Authority) -> None:
    found = authority.findings(product_files())
    bad = [f"netk8s/{path}:{line}: {what}" for path, hits in found.items()
           if path not in authority.owners and path not in authority.allowed for line, what in hits]
    assert not bad, f"{authority.job} belongs in {sorted(authority.owners)}:\n" + "\n".join(bad)
    stale = sorted(set(authority.allowed) - set(found) - PENDING)
    assert not stale, f"{authority.job}: allow-list entries that match nothing any more: {stale}"


@pytest.mark.parametrize("authority", AUTHORITIES, ids=lambda a: a.job)
def test_each_authority_owns_its_job(authority: Authority) -> None:
    """The owner module exists and defines the job's function (a rename fails here, not silently)."""
    files = product_files()
    owner = files[authority.owners[0]]
    defined = {n.name for n in owner.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    defined |= {t.id for n in owner.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    assert authority.owns in defined, f"{authority.job}: {authority.owners[0]} defines no {authority.owns}"


def test_the_authority_finders_find_planted_examples() -> None:
    planted = ast.parse(
        '"""Docstring naming KUBE-SERVICES and /proc/1/stat is prose."""\n'
        "import hashlib\n"                                                    # 2
        "ALPHA = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'\n"                        # 3
        "TABLE = 'kube-proxy'\n"                                              # 4
        "chain = f'KUBE-SVC-{h}'\n"                                           # 5
        "stamp = t.strftime('%Y-%m-%dT%H:%M:%SZ')\n"                          # 6
        "ready = [c for c in conds if c.get('type') == 'Ready']\n"            # 7
        "table = line.startswith('*') or line == 'COMMIT'\n"                  # 8
        "stat = open(f'/proc/{pid}/stat').read()\n"                           # 9
        "names = os.listdir('/proc')\n"                                       # 10
        "rule = f'-A {chain} -j KUBE-MARK-MASQ'\n"                            # 11
        "base64.b32encode(b'x')\n"                                            # 12
        "stamp2 = dt.isoformat().replace('+00:00', 'Z')\n")                   # 13
    assert [line for line, _ in hashlib_uses(planted)] == [2]
    assert sorted(line for line, _ in base32_tables(planted)) == [3, 12]
    assert sorted(line for line, _ in kernel_name_literals(planted)) == [4, 5]
    assert [line for line, _ in rfc3339_formatters(planted)] == [6, 13]
    assert [line for line, _ in ready_predicates(planted)] == [7]
    assert sorted(line for line, _ in save_parsers(planted)) == [8, 8]
    assert sorted(line for line, _ in proc_reads(planted)) == [9, 10]


# ---- one way to run a process in a pod ------------------------------------------------------------------

SPAWN_CALLS = re.compile(r"^(subprocess\.(Popen|run|call|check_call|check_output)|Popen|os\.(fork|forkpty|system|"
                         r"popen|exec\w*|spawn\w*|posix_spawnp?|setns)|launch_argv|\w*\.?run_in_netns|"
                         r"\w*\.?exec_argv|\w*\.?setns\w*)$")
LAUNCHER = "netk8s.dataplane.launch"


def pod_process_starts(tree: ast.Module) -> list[Found]:
    """Starting a process, entering a namespace, or importing the launcher that does (its argv)."""
    out = [(node.lineno, callee) for node, callee in calls(tree) if SPAWN_CALLS.match(callee)]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(LAUNCHER):
            out.append((node.lineno, f"from {node.module} import ..."))
        elif isinstance(node, ast.Import) and any(a.name.startswith(LAUNCHER) for a in node.names):
            out.append((node.lineno, f"import {LAUNCHER}"))
    out += [(line, repr(text)) for line, text in strings(tree) if text in ("nsenter", "setns", "unshare")]
    return out


def test_only_podexec_starts_processes_in_pods() -> None:
    files = {p: t for p, t in product_files().items() if p.startswith("node/")}
    assert pod_process_starts(files["node/podexec.py"]), "node/podexec.py no longer starts processes?"
    bad = [f"netk8s/{path}:{line}: {what}" for path, tree in files.items() if path != "node/podexec.py"
           for line, what in pod_process_starts(tree)]
    assert not bad, "start pod processes through netk8s.node.podexec (spawn / run):\n" + "\n".join(bad)


def test_the_pod_process_finder_finds_planted_examples() -> None:
    planted = ast.parse(
        "import subprocess\n"
        "from netk8s.dataplane.launch import launch_argv\n"                   # 2
        "subprocess.Popen(['sleep', '1'])\n"                                  # 3
        "subprocess.run(['nsenter', '-t', '1', '-n', 'true'])\n"              # 4 (twice: the call, 'nsenter')
        "netns.run_in_netns('ns', ['true'])\n"                                # 5
        "os.execvp('x', ['x'])\n"                                             # 6
        "out = subprocess.PIPE\n"
        "podexec.spawn(target, argv, env)\n")
    assert sorted(line for line, _ in pod_process_starts(planted)) == [2, 3, 4, 4, 5, 6]
