"""Label syntax and selectors: kubectl -l parsing, LabelSelector objects, matching."""

from __future__ import annotations

import pytest

from netk8s.errors import ValidationError
from netk8s.model.labels import (
    Requirement,
    Selector,
    parse_selector,
    selector_from_label_selector,
    selector_from_set,
    validate_label_key,
    validate_label_value,
)


@pytest.mark.parametrize("key", [
    "app", "app.kubernetes.io/name", "kubernetes.io/service-name", "a", "A_b.c-D", "x" * 63,
    "example.com/" + "y" * 63, "MyApp",
])
def test_valid_label_keys(key: str) -> None:
    assert validate_label_key(key) is None


@pytest.mark.parametrize("key,problem", [
    ("", "must not be empty"),
    ("x" * 64, "name part must be no more than 63 characters"),
    ("-app", "name part must consist of alphanumeric"),
    ("app-", "name part must consist of alphanumeric"),
    ("my app", "name part must consist of alphanumeric"),
    ("Example.com/app", "prefix part must be a lowercase DNS subdomain"),
    ("/app", "prefix part must be non-empty"),
    ("example.com/", "name part must be non-empty"),
    ("a/b/c", "optional DNS subdomain prefix"),
    ("a" * 254 + "/x", "prefix part must be no more than 253 characters"),
    (5, "must be a string"),
])
def test_invalid_label_keys(key: object, problem: str) -> None:
    err = validate_label_key(key)
    assert err is not None and problem in err


@pytest.mark.parametrize("value", ["", "web", "v1.2.3", "a_b-c", "Z" * 63])
def test_valid_label_values(value: str) -> None:
    assert validate_label_value(value) is None


@pytest.mark.parametrize("value,problem", [
    ("Z" * 64, "no more than 63 characters"),
    ("-web", "must start and end with an alphanumeric"),
    ("a b", "must start and end with an alphanumeric"),
    ("a/b", "must start and end with an alphanumeric"),
    (1, "must be a string (quote it), got 1"),
    (True, "got true"),
    (None, "must be a string"),
])
def test_invalid_label_values(value: object, problem: str) -> None:
    err = validate_label_value(value)
    assert err is not None and problem in err


PARSE = [
    ("", []),
    ("app=web", [Requirement("app", "=", ("web",))]),
    ("app==web", [Requirement("app", "=", ("web",))]),
    ("app!=web", [Requirement("app", "!=", ("web",))]),
    ("app=", [Requirement("app", "=", ("",))]),
    ("env in (prod, qa)", [Requirement("env", "In", ("prod", "qa"))]),
    ("env notin (dev)", [Requirement("env", "NotIn", ("dev",))]),
    ("tier", [Requirement("tier", "Exists")]),
    ("!legacy", [Requirement("legacy", "DoesNotExist")]),
    ("gen>3,gen<10", [Requirement("gen", "Gt", ("3",)), Requirement("gen", "Lt", ("10",))]),
    (" a = b , c!=d,e in (x,y),f notin (z),g,!h ", [
        Requirement("a", "=", ("b",)), Requirement("c", "!=", ("d",)), Requirement("e", "In", ("x", "y")),
        Requirement("f", "NotIn", ("z",)), Requirement("g", "Exists"), Requirement("h", "DoesNotExist")]),
    ("app.kubernetes.io/name=web", [Requirement("app.kubernetes.io/name", "=", ("web",))]),
]


@pytest.mark.parametrize("text,reqs", PARSE, ids=[p[0] or "empty" for p in PARSE])
def test_parse_selector(text: str, reqs: list[Requirement]) -> None:
    sel = parse_selector(text)
    assert list(sel.requirements) == reqs
    assert sel.empty == (not reqs)
    assert parse_selector(str(sel)) == sel  # renders back to an equivalent string


@pytest.mark.parametrize("text,problem", [
    ("a=b,", "trailing ','"),
    (",a=b", "expected a label key"),
    ("=b", "expected a label key"),
    ("a b", "unexpected \"b\" after key \"a\""),
    ("a=b c=d", "expected ',' between requirements"),
    ("a in x", "expected '(' after in/notin"),
    ("a in (x", "expected ',' or ')' in a value set"),
    ("a in ()", "needs at least one value"),
    ("a notin", "expected '(' after in/notin"),
    ("!", "expected a label key at the end"),
    ("a=b=c", "expected ',' between requirements"),
    ("a>b", "needs an integer"),
    ("A_/b=c", "prefix part must be a lowercase DNS subdomain"),
    ("a=-b", "label value \"-b\""),
    ("a!b", "unexpected \"!\""),
])
def test_parse_selector_errors(text: str, problem: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_selector(text)
    msg = info.value.message
    assert msg.startswith("-l: ")
    assert problem in msg
    assert "\n" not in msg
    assert info.value.hint


LABELS = {"app": "web", "tier": "frontend", "gen": "5"}
MATCH = [
    ("app=web", True), ("app=api", False), ("app!=api", True), ("app!=web", False),
    ("missing!=x", True), ("tier in (frontend,backend)", True), ("tier in (backend)", False),
    ("tier notin (backend)", True), ("missing notin (x)", True), ("tier notin (frontend)", False),
    ("app", True), ("missing", False), ("!missing", True), ("!app", False),
    ("gen>4", True), ("gen>5", False), ("gen<6", True), ("app>1", False), ("missing<9", False),
    ("app=web,tier=frontend", True), ("app=web,tier=backend", False), ("", True),
]


@pytest.mark.parametrize("text,expected", MATCH, ids=[m[0] or "empty" for m in MATCH])
def test_selector_matches(text: str, expected: bool) -> None:
    assert parse_selector(text).matches(LABELS) is expected


def test_label_selector_objects() -> None:
    sel = selector_from_label_selector({
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["frontend", "cache"]},
            {"key": "legacy", "operator": "DoesNotExist"},
            {"key": "gen", "operator": "Exists", "values": []},
            {"key": "env", "operator": "NotIn", "values": ["dev"]},
        ],
    })
    assert sel.matches(LABELS)
    assert not sel.matches({**LABELS, "legacy": "true"})
    assert not sel.matches({**LABELS, "env": "dev"})
    assert not sel.matches({"app": "web", "tier": "frontend"})  # gen missing
    empty = selector_from_label_selector({})
    assert empty.empty and empty.matches({}) and empty.matches(LABELS)
    assert selector_from_label_selector({"matchLabels": {}, "matchExpressions": []}).empty


@pytest.mark.parametrize("ls,problem", [
    ({"matchLabels": {"app": 1}}, "selector.matchLabels[app] label value must be a string"),
    ({"matchLabels": ["app"]}, "selector.matchLabels must be a mapping"),
    ({"matchExpressions": [{"key": "a", "operator": "in", "values": ["x"]}]},
     "selector.matchExpressions[0].operator must be one of In, NotIn, Exists, DoesNotExist, got \"in\""),
    ({"matchExpressions": [{"operator": "Exists"}]}, "selector.matchExpressions[0].key is required"),
    ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": []}]},
     "selector.matchExpressions[0].values must be specified when operator is NotIn"),
    ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist", "values": ["x"]}]},
     "values may not be specified when operator is DoesNotExist"),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["ok", "not ok"]}]},
     "selector.matchExpressions[0].values[1] label value \"not ok\""),
    ({"matchExpressions": {"key": "a"}}, "selector.matchExpressions must be a list"),
    ("app=web", "selector must be a mapping"),
])
def test_label_selector_errors(ls: object, problem: str) -> None:
    with pytest.raises(ValidationError) as info:
        selector_from_label_selector(ls)  # type: ignore[arg-type]
    assert problem in info.value.message


def test_selector_from_set_and_str() -> None:
    sel = selector_from_set({"b": "2", "a": "1"})
    assert str(sel) == "a=1,b=2"
    assert sel.matches({"a": "1", "b": "2", "c": "3"})
    assert not sel.matches({"a": "1"})
    assert selector_from_set(None).empty and selector_from_set({}) == Selector(())
    assert parse_selector("x in (a,b),!y").matches(None) is False
    assert parse_selector("!y").matches(None) is True
