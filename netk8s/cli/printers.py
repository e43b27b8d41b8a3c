"""kubectl-faithful output for `netk8s get`: tables (`-o wide`), `-o name`, `-o json`, `-o yaml`.

Pure formatting: objects are plain dicts in Kubernetes' shape, the current time comes in as `now`
(seconds since the epoch). The columns and cells are kubectl's (kube-apiserver's printers), shared with
the API server's Table output in netk8s/apiserver/tables.py; this module lays them out as kubectl's
tabwriter does. Renderers return text without a trailing newline; the CLI prints it.
"""

from __future__ import annotations

import json

import yaml

# The cell helpers live in apiserver/tables.py; describe and the tests keep importing them from here.
from netk8s.apiserver.tables import (
    NONE,
    _int,
    _meta,
    _spec,
    _status,
    columns,
    format_age,
    format_endpoints,
    format_label_selector,
    format_labels,
    human_duration,
    node_roles,
    parse_time,
    row_cells,
)
from netk8s.model.kinds import KINDS

__all__ = ["NONE", "_int", "_meta", "_spec", "_status", "format_age", "format_endpoints", "format_label_selector",
           "format_labels", "human_duration", "node_roles", "parse_time", "qualified_name", "render_json",
           "render_name", "render_table", "render_yaml", "table_rows", "tabwrite"]

# kubectl's `get` tabwriter: minwidth 6, tabwidth 4, padding 3, pad with spaces
# (k8s.io/cli-runtime/pkg/printers/tabwriter.go).
TABLE_MINWIDTH = 6
TABLE_PADDING = 3


# ---------------------------------------------------------------------------------------- tabwriter


def tabwrite(text: str, minwidth: int, padding: int) -> str:
    """Align tab-terminated cells the way Go's text/tabwriter does (pad char ' ', no flags).

    A column's width is set per *block*: the run of consecutive lines that have a cell in that column;
    the text after a line's last tab is not a cell and is never padded. kubectl's `get` and `describe`
    both print through this, which is what lines up "Labels:" continuation lines and the like.
    """
    trailing_newline = text.endswith("\n")
    raw = text[:-1] if trailing_newline else text
    lines = [line.split("\t") for line in raw.split("\n")] if raw or trailing_newline else []
    out: list[str] = []
    widths: list[int] = []

    def write_lines(line0: int, line1: int) -> None:
        for i in range(line0, line1):
            cells = lines[i]
            parts = []
            for j, cell in enumerate(cells):
                parts.append(cell)
                if j < len(widths) and j < len(cells) - 1:
                    parts.append(" " * (widths[j] - len(cell)))
            out.append("".join(parts))

    def format_block(line0: int, line1: int) -> None:
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            write_lines(line0, this)
            line0 = this
            width = minwidth
            while this < line1 and column < len(lines[this]) - 1:
                width = max(width, len(lines[this][column]) + padding)
                this += 1
            widths.append(width)
            format_block(line0, this)
            widths.pop()
            line0 = this
        write_lines(line0, line1)

    format_block(0, len(lines))
    return "\n".join(out) + ("\n" if trailing_newline else "")



# ------------------------------------------------------------------------------------ names


def _api_group(obj: dict) -> str:
    info = KINDS.get(obj.get("kind", ""))
    api_version = info.api_version if info else str(obj.get("apiVersion") or "v1")
    return api_version.split("/", 1)[0] if "/" in api_version else ""


def qualified_name(obj: dict) -> str:
    """kubectl's `kind.group/name` (`pod/web-abc`, `deployment.apps/web`)."""
    kind = str(obj.get("kind") or "").lower()
    group = _api_group(obj)
    resource = f"{kind}.{group}" if group else kind
    return f"{resource}/{_meta(obj).get('name', '')}"


# ------------------------------------------------------------------------------------------ render


def table_rows(kind: str, objs: list[dict], now: float, wide: bool = False, all_namespaces: bool = False,
               show_kind: bool = False) -> list[list[str]]:
    """The table as cells, header first (what render_table aligns)."""
    info = KINDS.get(kind)
    with_ns = all_namespaces and (info is None or info.namespaced)
    header = (["NAMESPACE"] if with_ns else []) + ["NAME"] + [c.header for c in columns(kind, wide)]
    rows = [header]
    for obj in objs:
        meta = _meta(obj)
        name = qualified_name({**obj, "kind": obj.get("kind") or kind}) if show_kind else meta.get("name", "")
        row = ([str(meta.get("namespace") or "")] if with_ns else []) + [str(name)]
        rows.append(row + row_cells(kind, obj, now, wide))
    return rows


def render_table(kind: str, objs: list[dict], now: float, wide: bool = False, all_namespaces: bool = False,
                 show_kind: bool = False) -> str:
    """`netk8s get KIND` as kubectl prints it; "" for no objects (the CLI prints "No resources found")."""
    if not objs:
        return ""
    rows = table_rows(kind, objs, now, wide, all_namespaces, show_kind)
    text = "".join("\t".join(cell.replace("\t", " ") for cell in row) + "\n" for row in rows)
    return tabwrite(text, TABLE_MINWIDTH, TABLE_PADDING).rstrip("\n")


def render_name(objs: list[dict]) -> str:
    """`-o name`: one `kind.group/name` line per object."""
    return "\n".join(qualified_name(obj) for obj in objs)


def as_list(objs: list[dict]) -> dict:
    """The `List` kubectl wraps several objects in."""
    return {"apiVersion": "v1", "items": list(objs), "kind": "List", "metadata": {"resourceVersion": ""}}


def render_json(obj_or_list: dict | list[dict]) -> str:
    """`-o json`: keys sorted, 4-space indent, like kubectl; a list becomes a `List`."""
    doc = as_list(obj_or_list) if isinstance(obj_or_list, list) else obj_or_list
    text = json.dumps(doc, indent=4, sort_keys=True, ensure_ascii=False)
    # Go's encoding/json escapes these inside strings (they only occur inside strings in JSON).
    for char, escaped in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text


class _KubeYamlDumper(yaml.SafeDumper):
    """SafeDumper tuned towards sigs.k8s.io/yaml output: strings that cannot be plain are
    double-quoted (`"1"`, `""`), multi-line strings use a literal block."""

    def choose_scalar_style(self) -> str:
        style = super().choose_scalar_style()
        return '"' if style == "'" else style


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_KubeYamlDumper.add_representer(str, _represent_str)


def render_yaml(obj_or_list: dict | list[dict]) -> str:
    """`-o yaml`: block style, keys sorted, like kubectl; a list becomes a `List`."""
    doc = as_list(obj_or_list) if isinstance(obj_or_list, list) else obj_or_list
    text = yaml.dump(doc, Dumper=_KubeYamlDumper, default_flow_style=False, sort_keys=True,
                     allow_unicode=True)
    return text.rstrip("\n")
