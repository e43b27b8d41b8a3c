"""Label syntax and label selectors: kubectl `-l` strings and LabelSelector objects, both to one Selector.

Follows k8s.io/apimachinery pkg/labels (selector.go) and pkg/util/validation (IsQualifiedName,
IsValidLabelValue): the same grammar, operators and error wording where practical.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Literal

from netk8s.errors import ValidationError

Operator = Literal["=", "!=", "In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]

# apimachinery validation.go: qualifiedNameFmt and labelValueFmt.
_NAME_PART_RE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_LABEL_VALUE_RE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
_DNS1123_SUBDOMAIN_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_NAME_MAX = 63
_PREFIX_MAX = 253
_VALUE_MAX = 63

def _q(value: object) -> str:
    """Quote a value for a message: JSON style, one line."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


SELECTOR_HINT = "selector syntax: a=b,c!=d,e in (x,y),f notin (z),g,!h"


def validate_label_key(key: object) -> str | None:
    """Why `key` is not a valid label key (`[prefix/]name`, kubectl's qualified name), or None if it is."""
    if not isinstance(key, str):
        return f"label key must be a string, got {_q(key)}"
    if key == "":
        return "label key must not be empty"
    parts = key.split("/")
    if len(parts) > 2:
        return (f"label key {_q(key)} must be a name with an optional DNS subdomain prefix and '/' "
                "(e.g. 'example.com/MyName')")
    if len(parts) == 2:
        prefix, name = parts
        if prefix == "":
            return f"label key {_q(key)}: prefix part must be non-empty"
        if len(prefix) > _PREFIX_MAX:
            return f"label key {_q(key)}: prefix part must be no more than {_PREFIX_MAX} characters"
        if not _DNS1123_SUBDOMAIN_RE.fullmatch(prefix):
            return (f"label key {_q(key)}: prefix part must be a lowercase DNS subdomain (lower case "
                    "alphanumeric characters, '-' or '.', starting and ending with an alphanumeric character)")
    else:
        name = parts[0]
    if name == "":
        return f"label key {_q(key)}: name part must be non-empty"
    if len(name) > _NAME_MAX:
        return f"label key {_q(key)}: name part must be no more than {_NAME_MAX} characters"
    if not _NAME_PART_RE.fullmatch(name):
        return (f"label key {_q(key)}: name part must consist of alphanumeric characters, '-', '_' or '.', "
                "and must start and end with an alphanumeric character")
    return None


def validate_label_value(value: object) -> str | None:
    """Why `value` is not a valid label value, or None if it is (the empty string is valid)."""
    if not isinstance(value, str):
        shown = repr(value) if not isinstance(value, (int, float, bool)) else str(value).lower()
        return f"label value must be a string (quote it), got {shown}"
    if len(value) > _VALUE_MAX:
        return f"label value {_q(value)} must be no more than {_VALUE_MAX} characters"
    if not _LABEL_VALUE_RE.fullmatch(value):
        return (f"label value {_q(value)} must be empty or consist of alphanumeric characters, '-', '_' or '.', "
                "and must start and end with an alphanumeric character")
    return None


@dataclass(frozen=True)
class Requirement:
    """One term of a selector: `key operator values`."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: dict) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.operator in ("=", "In"):
            return present and value in self.values
        if self.operator in ("!=", "NotIn"):
            return not present or value not in self.values
        if self.operator == "Exists":
            return present
        if self.operator == "DoesNotExist":
            return not present
        # Gt / Lt: the label must hold an integer (apimachinery Requirement.Matches).
        if not present or not isinstance(value, str):
            return False
        try:
            have, want = int(value), int(self.values[0])
        except ValueError:
            return False
        return have > want if self.operator == "Gt" else have < want

    def __str__(self) -> str:
        op = self.operator
        if op == "Exists":
            return self.key
        if op == "DoesNotExist":
            return f"!{self.key}"
        if op in ("=", "!="):
            return f"{self.key}{op}{self.values[0]}"
        if op in ("Gt", "Lt"):
            return f"{self.key}{'>' if op == 'Gt' else '<'}{self.values[0]}"
        return f"{self.key} {op.lower()} ({','.join(self.values)})"


@dataclass(frozen=True)
class Selector:
    """A conjunction of requirements. No requirements: matches every label set."""

    requirements: tuple[Requirement, ...] = field(default_factory=tuple)

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, labels: dict | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


# ---------------------------------------------------------------------------------------------------------
# kubectl -l syntax


_SPECIAL = "!=(),<>"
_OPERATOR_TOKENS = ("==", "!=", "=", "!", "(", ")", ",", ">", "<")


def _tokenize(text: str) -> list[tuple[str, str]]:
    """Tokens as (type, text); types: ID, IN, NOTIN and the operator symbols themselves."""
    tokens: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        for sym in _OPERATOR_TOKENS:
            if text.startswith(sym, i):
                tokens.append((sym, sym))
                i += len(sym)
                break
        else:
            j = i
            while j < n and not text[j].isspace() and text[j] not in _SPECIAL:
                j += 1
            word = text[i:j]
            kind = {"in": "IN", "notin": "NOTIN"}.get(word, "ID")
            tokens.append((kind, word))
            i = j
    tokens.append(("EOF", ""))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0

    def fail(self, problem: str) -> ValidationError:
        return ValidationError(f"-l: {problem} in selector {_q(self.text)}", hint=SELECTOR_HINT)

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.pos]

    def take(self) -> tuple[str, str]:
        tok = self.tokens[self.pos]
        if tok[0] != "EOF":
            self.pos += 1
        return tok

    def key(self) -> str:
        kind, word = self.take()
        if kind == "EOF":
            raise self.fail("expected a label key at the end")
        if kind != "ID":
            raise self.fail(f"expected a label key, found {_q(word)}")
        err = validate_label_key(word)
        if err:
            raise self.fail(err)
        return word

    def value(self) -> str:
        kind, word = self.peek()
        if kind in (",", ")", "EOF"):
            return ""  # `a=` selects label a with the empty value, as in apimachinery
        if kind not in ("ID", "IN", "NOTIN"):
            raise self.fail(f"expected a label value, found {_q(word)}")
        self.take()
        err = validate_label_value(word)
        if err:
            raise self.fail(err)
        return word

    def value_set(self) -> tuple[str, ...]:
        if self.take()[0] != "(":
            raise self.fail("expected '(' after in/notin")
        values: list[str] = []
        if self.peek()[0] == ")":
            self.take()
            return ()
        while True:
            values.append(self.value())
            kind, word = self.take()
            if kind == ")":
                return tuple(values)
            if kind != ",":
                raise self.fail(f"expected ',' or ')' in a value set, found {_q(word or 'the end')}")

    def requirement(self) -> Requirement:
        if self.peek()[0] == "!":
            self.take()
            return Requirement(self.key(), "DoesNotExist")
        key = self.key()
        kind, word = self.peek()
        if kind in (",", "EOF"):
            return Requirement(key, "Exists")
        self.take()
        if kind in ("=", "=="):
            return Requirement(key, "=", (self.value(),))
        if kind == "!=":
            return Requirement(key, "!=", (self.value(),))
        if kind in ("IN", "NOTIN"):
            values = self.value_set()
            if not values:
                raise self.fail(f"{key} {word} needs at least one value")
            return Requirement(key, "In" if kind == "IN" else "NotIn", values)
        if kind in (">", "<"):
            num = self.value()
            if not re.fullmatch(r"-?[0-9]+", num):
                raise self.fail(f"{key}{word} needs an integer, got {_q(num)}")
            return Requirement(key, "Gt" if kind == ">" else "Lt", (num,))
        raise self.fail(f"unexpected {_q(word)} after key {_q(key)}")

    def parse(self) -> Selector:
        reqs: list[Requirement] = []
        if self.peek()[0] == "EOF":
            return Selector(())
        while True:
            reqs.append(self.requirement())
            kind, word = self.take()
            if kind == "EOF":
                return Selector(tuple(reqs))
            if kind != ",":
                raise self.fail(f"expected ',' between requirements, found {_q(word)}")
            if self.peek()[0] == "EOF":
                raise self.fail("trailing ','")


def parse_selector(text: str) -> Selector:
    """Parse kubectl's `-l` syntax (`a=b,c!=d,e in (x,y),f notin (z),g,!h`, `==`, `>`/`<`).

    The empty string is the empty selector (matches everything). Bad syntax raises
    ValidationError("-l: ...").
    """
    return _Parser(text).parse()


# ---------------------------------------------------------------------------------------------------------
# LabelSelector objects (matchLabels / matchExpressions)

_EXPR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def label_selector_error(ls: object) -> tuple[str, str] | None:
    """First problem of a LabelSelector as (field path relative to the selector, problem), or None.

    The path is "" for the selector itself, else e.g. "matchExpressions[0].operator" or
    "matchLabels[app]". Used by validate.py to prefix it with `spec.selector`.
    """
    if not isinstance(ls, dict):
        return "", f"must be a mapping with matchLabels and/or matchExpressions, got {type(ls).__name__}"
    ml = ls.get("matchLabels")
    if ml is not None:
        if not isinstance(ml, dict):
            return "matchLabels", "must be a mapping of label keys to values"
        for k, v in ml.items():
            err = validate_label_key(k)
            if err:
                return f"matchLabels[{k}]", err
            err = validate_label_value(v)
            if err:
                return f"matchLabels[{k}]", err
    exprs = ls.get("matchExpressions")
    if exprs is not None:
        if not isinstance(exprs, list):
            return "matchExpressions", "must be a list"
        for i, e in enumerate(exprs):
            p = f"matchExpressions[{i}]"
            if not isinstance(e, dict):
                return p, "must be a mapping with key, operator and values"
            key = e.get("key")
            if key in (None, ""):
                return f"{p}.key", "is required"
            err = validate_label_key(key)
            if err:
                return f"{p}.key", err
            op = e.get("operator")
            if op not in _EXPR_OPERATORS:
                return f"{p}.operator", f"must be one of In, NotIn, Exists, DoesNotExist, got {_q(op)}"
            values = e.get("values")
            if values is not None and not isinstance(values, list):
                return f"{p}.values", "must be a list"
            values = values or []
            if op in ("In", "NotIn") and not values:
                return f"{p}.values", f"must be specified when operator is {op}"
            if op in ("Exists", "DoesNotExist") and values:
                return f"{p}.values", f"may not be specified when operator is {op}"
            for j, v in enumerate(values):
                err = validate_label_value(v)
                if err:
                    return f"{p}.values[{j}]", err
    return None


def selector_from_label_selector(ls: dict) -> Selector:
    """A Selector from a LabelSelector mapping. `{}` is the empty selector (matches everything).

    Raises ValidationError("selector.<path> <problem>") when it is malformed.
    """
    err = label_selector_error(ls)
    if err:
        path, problem = err
        raise ValidationError(f"selector{'.' + path if path else ''} {problem}")
    reqs: list[Requirement] = []
    for k, v in sorted((ls.get("matchLabels") or {}).items()):
        reqs.append(Requirement(k, "=", (v,)))
    for e in ls.get("matchExpressions") or []:
        reqs.append(Requirement(e["key"], e["operator"], tuple(e.get("values") or ())))
    return Selector(tuple(reqs))


def selector_from_set(labels: dict | None) -> Selector:
    """A Selector requiring every key=value of a plain map (a Service's `spec.selector`)."""
    return Selector(tuple(Requirement(k, "=", (v,)) for k, v in sorted((labels or {}).items())))
