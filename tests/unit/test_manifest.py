"""Manifest loading: files, directories, stdin, multi-document YAML, JSON, Lists, syntax errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from netk8s.cli.manifests import load_documents
from netk8s.errors import ValidationError
from netk8s.model.manifest import parse_text

SVC = "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  ports: [{{port: 80}}]\n"


def svc(name: str) -> str:
    return SVC.format(name=name)


def names(docs: list[tuple[str, dict]]) -> list[str]:
    return [obj["metadata"]["name"] for _, obj in docs]


def test_multi_document_origins_count_every_document() -> None:
    text = svc("a") + "---\n" + "---\n# only a comment\n---\n" + svc("b")
    docs = parse_text(text, "web.yaml")
    assert [o for o, _ in docs] == ["web.yaml#1", "web.yaml#4"]
    assert names(docs) == ["a", "b"]


def test_leading_separator_and_trailing_empty_document() -> None:
    docs = parse_text("---\n" + svc("a") + "---\n", "x.yaml")
    assert [o for o, _ in docs] == ["x.yaml#1"]


def test_empty_text_gives_nothing() -> None:
    assert parse_text("", "e.yaml") == []
    assert parse_text("# nothing here\n", "e.yaml") == []


def test_list_is_expanded_with_item_origins() -> None:
    text = "apiVersion: v1\nkind: List\nitems:\n" + "".join(
        f"- apiVersion: v1\n  kind: Namespace\n  metadata: {{name: n{i}}}\n" for i in range(3))
    docs = parse_text(svc("first") + "---\n" + text, "l.yaml")
    assert names(docs) == ["first", "n0", "n1", "n2"]
    assert [o for o, _ in docs][1:] == ["l.yaml#2.items[0]", "l.yaml#2.items[1]", "l.yaml#2.items[2]"]


def test_typed_list_kind_is_expanded() -> None:
    text = json.dumps({"apiVersion": "v1", "kind": "ServiceList", "items": [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}}]})
    assert names(parse_text(text, "j")) == ["s"]


def test_list_item_that_is_not_a_mapping() -> None:
    with pytest.raises(ValidationError) as info:
        parse_text("kind: List\nitems:\n- just a string\n", "l.yaml")
    assert info.value.message.startswith("l.yaml#1.items[0]: document is a string")


@pytest.mark.parametrize("text,what", [
    ("- a\n- b\n", "a list"),
    ("hello\n", "a string"),
    ("42\n", "a number"),
    ("true\n", "a boolean"),
])
def test_document_not_a_mapping(text: str, what: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_text(svc("ok") + "---\n" + text, "bad.yaml")
    assert info.value.message.startswith(f"bad.yaml#2: document is {what}, not a mapping")


def test_yaml_syntax_error_names_document_and_line() -> None:
    text = svc("a") + "---\n" + "apiVersion: v1\nkind: Pod\nmetadata:\n  name: [unclosed\n"
    with pytest.raises(ValidationError) as info:
        parse_text(text, "broken.yaml")
    msg = info.value.message
    assert msg.startswith("broken.yaml#2: YAML syntax error at line ")
    assert "\n" not in msg
    line = int(msg.split("at line ")[1].split()[0])
    assert 10 <= line <= 12  # the broken flow sequence starts on line 10 of the whole file


def test_tab_indentation_is_a_syntax_error() -> None:
    with pytest.raises(ValidationError) as info:
        parse_text("kind: Pod\nmetadata:\n\tname: x\n", "t.yaml")
    assert "t.yaml#1: YAML syntax error at line 3" in info.value.message


def test_duplicate_keys_are_recorded_for_strict_validation() -> None:
    # Refused later by strict field validation, which names the path (model/fields.py).
    (_, obj), = parse_text("kind: Pod\nkind: Service\nspec: {a: 1, a: 2}\n", "d.yaml")
    assert obj == {"kind": "Service", "spec": {"a": 2}}
    assert obj.duplicates == ["kind"] and obj["spec"].duplicates == ["a"]


def test_dates_stay_strings_and_yaml_types_are_kept() -> None:
    (_, obj), = parse_text("a: 2024-01-01\nb: '80'\nc: 80\nd: null\n", "x")
    assert obj == {"a": "2024-01-01", "b": "80", "c": 80, "d": None}
    json.dumps(obj)  # everything loaded is JSON-serialisable


def test_load_file_directory_and_stdin(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(svc("b1") + "---\n" + svc("b2"))
    (tmp_path / "a.yml").write_text(svc("a"))
    (tmp_path / "c.json").write_text(json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "c"}}))
    (tmp_path / "notes.txt").write_text("not a manifest: [")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "deep.yaml").write_text(svc("deep"))
    docs = load_documents([str(tmp_path), "-", str(sub / "deep.yaml")], stdin_text=svc("stdin"))
    assert names(docs) == ["a", "b1", "b2", "c", "stdin", "deep"]
    assert [o for o, _ in docs] == [
        f"{tmp_path}/a.yml#1", f"{tmp_path}/b.yaml#1", f"{tmp_path}/b.yaml#2", f"{tmp_path}/c.json#1",
        "<stdin>#1", f"{sub}/deep.yaml#1",
    ]


def test_json_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text('{"kind": "Pod",\n "metadata": }')
    with pytest.raises(ValidationError) as info:
        load_documents([str(bad)])
    assert info.value.message.startswith(f"{bad}: JSON syntax error at line 2")
    arr = tmp_path / "y.json"
    arr.write_text("[1, 2]")
    with pytest.raises(ValidationError, match=r"y\.json#1: document is a list"):
        load_documents([str(arr)])


def test_missing_path_and_missing_stdin(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="the path does not exist"):
        load_documents([str(tmp_path / "nope.yaml")])
    with pytest.raises(ValidationError, match="no standard input"):
        load_documents(["-"])


def test_non_utf8_file(tmp_path: Path) -> None:
    f = tmp_path / "bin.yaml"
    f.write_bytes(b"kind: \xff\xfe\n")
    with pytest.raises(ValidationError, match="not UTF-8"):
        load_documents([str(f)])


def test_empty_directory_gives_nothing(tmp_path: Path) -> None:
    assert load_documents([str(tmp_path)]) == []
