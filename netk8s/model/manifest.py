"""Manifest parsing: the text of a file or of stdin to (origin, object) pairs, multi-document YAML and JSON.

Pure: the caller reads the text (netk8s.cli.manifests reads files, directories and stdin). Each object
comes with an origin such as `web.yaml#2` (the 1-based document index in its file, and
`web.yaml#1.items[3]` for an item of a `kind: List`), so every later message can name the document.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from netk8s.errors import ValidationError
from netk8s.model.fields import DupDict, json_object_pairs

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")  # what a directory given to -f contributes
STDIN_ORIGIN = "<stdin>"


class DupLoader(yaml.SafeLoader):
    """SafeLoader that records duplicate keys (fields.DupDict) and keeps dates as text.

    Duplicates are not an error here: strict field validation (model/fields.py) names them by their
    path, as kube-apiserver's strict decoding does. PyYAML turns `2024-01-01` into a datetime.date,
    which is not JSON; Kubernetes' YAML decoder keeps it a string, so the timestamp resolver is dropped.
    """


def _construct_map(loader: DupLoader, node: yaml.MappingNode) -> DupDict:
    data = DupDict()
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
        try:
            dup = key in seen
        except TypeError:  # unhashable key; construct_mapping below reports it
            continue
        if dup and key not in data.duplicates:
            data.duplicates.append(key)
        seen.add(key)
    data.update(loader.construct_mapping(node, deep=True))
    return data


DupLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
DupLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _yaml_error(origin: str, err: yaml.YAMLError) -> ValidationError:
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    context = getattr(err, "context", None)
    where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
    what = f"{context}: {problem}" if context else problem
    what = " ".join(str(what).split())
    return ValidationError(f"{origin}: YAML syntax error{where}: {what}",
                           hint="fix the YAML (indentation, ':' after keys, quoting)")


def _kind_of(value: object) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return f"a {type(value).__name__}"


def _expand(origin: str, doc: object) -> list[tuple[str, dict]]:
    """One parsed document to objects: checks it is a mapping and expands `kind: List`."""
    if not isinstance(doc, dict):
        raise ValidationError(
            f"{origin}: document is {_kind_of(doc)}, not a mapping (an object with apiVersion, kind, metadata)",
            hint="each YAML document must be one object; separate objects with '---'")
    kind = doc.get("kind")
    if isinstance(kind, str) and kind.endswith("List") and "items" in doc:
        items = doc.get("items") or []
        if not isinstance(items, list):
            raise ValidationError(f"{origin}: items must be a list")
        out: list[tuple[str, dict]] = []
        for i, item in enumerate(items):
            out.extend(_expand(f"{origin}.items[{i}]", item))
        return out
    return [(origin, doc)]


def parse_text(text: str, origin: str) -> list[tuple[str, dict]]:
    """Parse one multi-document YAML (or JSON) text. Empty documents are skipped, Lists expanded.

    Origins are `<origin>#<1-based document index>`. Raises ValidationError naming the origin (and
    the line) on a syntax error or a document that is not a mapping.
    """
    out: list[tuple[str, dict]] = []
    index = 0
    docs = yaml.load_all(text, Loader=DupLoader)
    while True:
        try:
            doc = next(docs)
        except StopIteration:
            break
        except yaml.YAMLError as err:
            raise _yaml_error(f"{origin}#{index + 1}", err) from None
        index += 1
        if doc is None:
            continue
        out.extend(_expand(f"{origin}#{index}", doc))
    return out


def parse_json(text: str, origin: str) -> list[tuple[str, dict]]:
    if not text.strip():
        return []
    try:
        doc = json.loads(text, object_pairs_hook=json_object_pairs)
    except json.JSONDecodeError as err:
        raise ValidationError(f"{origin}: JSON syntax error at line {err.lineno} column {err.colno}: {err.msg}",
                              hint="fix the JSON") from None
    return _expand(f"{origin}#1", doc)


def parse_manifest(text: str, origin: str, suffix: str) -> list[tuple[str, dict]]:
    """The objects of one manifest file's text; `suffix` (".json", ".yaml", ...) picks the syntax."""
    if suffix.lower() == ".json":
        return parse_json(text, origin)
    return parse_text(text, origin)
