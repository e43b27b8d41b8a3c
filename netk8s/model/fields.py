"""Field checks of a decoded object against its kind's schema: unknown and duplicate fields, quantities.

What kube-apiserver's decoder does with `fieldValidation` (sigs.k8s.io/json strict decoding):
unknown fields and duplicate keys are errors under Strict and warnings otherwise, each named by its
path (`unknown field "spec.replica"`, `duplicate field "spec.containers[0].image"`); resource
quantities that do not parse are always an error (they fail to decode), and good ones are stored in
their canonical form (`0.5` -> `500m`), as resource.Quantity marshals them.

Parsers mark duplicate keys with `DupDict` (a dict that remembers the keys it saw twice); `check`
reads those marks, so JSON and YAML bodies are checked the same way.
"""

from __future__ import annotations

import json
from typing import Any

from netk8s.errors import ValidationError
from netk8s.model import schema as sch
from netk8s.model.quantity import QuantityError, canonical_quantity

QUANTITY_REF = "io.k8s.apimachinery.pkg.api.resource.Quantity"
STRICT_PREFIX = "strict decoding error: "


class DupDict(dict):
    """A decoded mapping that remembers which of its keys appeared more than once (the last one wins)."""

    duplicates: list[str]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.duplicates = []


def json_object_pairs(pairs: list[tuple[str, Any]]) -> DupDict:
    """`object_pairs_hook` for json.loads that records duplicate keys instead of silently keeping one."""
    out = DupDict()
    for key, value in pairs:
        if key in out and key not in out.duplicates:
            out.duplicates.append(key)
        out[key] = value
    return out


class FieldProblems(ValidationError):
    """Strict decoding failed: `problems` are (field path, kube-apiserver's words for it)."""

    def __init__(self, message: str, problems: list[tuple[str, str]], hint: str = "") -> None:
        super().__init__(message, hint)
        self.problems = problems


def _is_quantity(raw: dict[str, Any] | None) -> bool:
    return bool(raw) and str((raw or {}).get("$ref", "")).endswith(QUANTITY_REF)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _walk(value: Any, raw: dict[str, Any] | None, path: str, unknown: list[str], dups: list[str],
          bad_quantities: list[tuple[str, str]]) -> Any:
    """Returns the value as plain dicts/lists, quantities canonical; records problems on the way."""
    if _is_quantity(raw):
        if value is None:
            return None
        try:
            return canonical_quantity(value)
        except QuantityError as err:
            bad_quantities.append((path, f"Invalid value: {json.dumps(value)}: {err}"))
            return value
    node = sch.resolve(raw) if raw is not None else None
    if isinstance(value, dict):
        for key in getattr(value, "duplicates", ()):
            dups.append(_join(path, str(key)))
        props = sch.properties(node) if node is not None else None
        extra = node.get("additionalProperties") if node is not None else None
        out = {}
        for key, sub in value.items():
            sub_path = _join(path, str(key))
            if props is not None and key in props:
                out[key] = _walk(sub, props[key], sub_path, unknown, dups, bad_quantities)
            elif isinstance(extra, dict):
                out[key] = _walk(sub, extra, sub_path, unknown, dups, bad_quantities)
            else:
                if props is not None and node is not None and not node.get("x-kubernetes-preserve-unknown-fields"):
                    unknown.append(sub_path)
                out[key] = _walk(sub, None, sub_path, unknown, dups, bad_quantities)
        return out
    if isinstance(value, list):
        item_raw = node.get("items") if node is not None else None
        return [_walk(v, item_raw if isinstance(item_raw, dict) else None, f"{path}[{i}]", unknown, dups,
                      bad_quantities) for i, v in enumerate(value)]
    return value


def check(obj: dict, kind: str | None, strict: bool) -> tuple[dict, list[str]]:
    """(the object as plain data with canonical quantities, warnings) or FieldProblems.

    With `strict`, unknown and duplicate fields are errors, worded as kube-apiserver words them:
    `strict decoding error: unknown field "spec.replica", duplicate field "spec.replicas"`. Without it
    they come back as warnings (`unknown field "spec.replica"`). A kind without a schema is only
    checked for duplicates.
    """
    raw: dict[str, Any] | None
    try:
        raw = {"$ref": sch.REF_PREFIX + sch.kind_definition(kind)} if kind else None
    except (KeyError, ValidationError):
        raw = None
    unknown: list[str] = []
    dups: list[str] = []
    bad: list[tuple[str, str]] = []
    plain = _walk(obj, raw, "", unknown, dups, bad)
    if bad:
        path, problem = bad[0]
        raise FieldProblems(f"{path}: {problem}", [(p, m) for p, m in bad],
                            hint="a quantity is a number with an optional suffix: 500m, 1.5, 128Mi, 1G")
    words = [f'unknown field "{p}"' for p in unknown] + [f'duplicate field "{p}"' for p in dups]
    if words and strict:
        problems = [(p, f'unknown field "{p}"') for p in unknown] + [(p, f'duplicate field "{p}"') for p in dups]
        raise FieldProblems(STRICT_PREFIX + ", ".join(words), problems,
                            hint="remove or fix the field (check its spelling and indentation)")
    return plain, words
