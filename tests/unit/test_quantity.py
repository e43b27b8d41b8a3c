"""resource.Quantity: the grammar, canonical forms, and apply storing quantities as Kubernetes does."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from netk8s.model.manifest import load_documents
from netk8s.model.quantity import (
    BINARY_SI,
    DECIMAL_EXPONENT,
    DECIMAL_SI,
    ERR_FORMAT,
    ERR_SUFFIX,
    QuantityError,
    canonical_quantity,
    parse_quantity,
)
from netk8s.model.validate import validate_batch

# (written, canonical) pairs; the canonical forms are those of quantity_test.go (TestQuantityCanonicalize...).
CANONICAL = [
    ("0", "0"), ("500m", "500m"), ("0.5", "500m"), ("1.5", "1500m"), ("1000m", "1"), ("2000m", "2"),
    ("1000", "1k"), ("1500", "1500"), ("1.5k", "1500"), ("1M", "1M"), ("129M", "129M"), ("1G", "1G"),
    ("1Ki", "1Ki"), ("1024Ki", "1Mi"), ("1.5Gi", "1536Mi"), ("0.5Ki", "512"), ("100Mi", "100Mi"),
    ("1e3", "1e3"), ("12e6", "12e6"), ("0.1e0", "100e-3"), ("1E3", "1e3"),
    ("1.", "1"), (".5", "500m"), ("+1", "1"), ("-1.5", "-1500m"), ("0.0000000001", "1n"), ("1n", "1n"),
    ("1u", "1u"), ("128974848", "128974848"), ("1000000000000000000000", "1000E"),
]


@pytest.mark.parametrize(("text", "want"), CANONICAL, ids=[c[0] for c in CANONICAL])
def test_canonical_form(text: str, want: str) -> None:
    assert canonical_quantity(text) == want


def test_formats_and_values() -> None:
    assert parse_quantity("1.5Gi").format == BINARY_SI
    assert parse_quantity("1.5Gi").value == Fraction(3 * 2 ** 29)
    assert parse_quantity("500m").format == DECIMAL_SI
    assert parse_quantity("500m").value == Fraction(1, 2)
    assert parse_quantity("5e-3").format == DECIMAL_EXPONENT


@pytest.mark.parametrize(("value", "want"), [(0.5, "500m"), (2, "2"), (1e-05, "10e-6"), (1024, "1024")])
def test_json_numbers_are_quantities(value: float, want: str) -> None:
    assert canonical_quantity(value) == want


@pytest.mark.parametrize(("text", "message"), [
    ("abc", ERR_FORMAT), ("", ERR_FORMAT), ("5GB", ERR_FORMAT), ("10 Gi", ERR_FORMAT), ("Ki", ERR_FORMAT),
    ("1.2.3", ERR_FORMAT), ("-", ERR_FORMAT), ("5Gi3", ERR_SUFFIX), ("1Kii", ERR_SUFFIX), ("1ki", ERR_SUFFIX),
    ("1e", ERR_SUFFIX),
], ids=["abc", "empty", "5GB", "space", "suffix-only", "two-dots", "sign-only", "5Gi3", "1Kii", "1ki", "1e"])
def test_not_quantities(text: str, message: str) -> None:
    with pytest.raises(QuantityError) as info:
        parse_quantity(text)
    assert str(info.value) == message


@pytest.mark.parametrize("value", [True, None, [1], {"a": 1}, float("nan")])
def test_non_scalar_values_are_refused(value: object) -> None:
    with pytest.raises(QuantityError):
        canonical_quantity(value)


def test_apply_stores_canonical_quantities() -> None:
    path = Path(__file__).resolve().parents[1] / "manifests" / "valid" / "resources-quantities.yaml"
    (dep,) = validate_batch(load_documents([str(path)]))
    spec = dep["spec"]["template"]["spec"]
    res = spec["containers"][0]["resources"]
    assert res["requests"] == {"cpu": "500m", "memory": "1536Mi", "ephemeral-storage": "1e9"}
    assert res["limits"] == {"cpu": "2", "memory": "2Gi"}
    assert spec["volumes"][0]["emptyDir"]["sizeLimit"] == "500M"
