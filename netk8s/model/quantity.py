"""Kubernetes resource quantities (`500m`, `1.5Gi`, `12e6`): parsing and canonical forms, as resource.Quantity.

Grammar (k8s.io/apimachinery/pkg/api/resource/quantity.go):
    <quantity>        ::= <signedNumber><suffix>
    <signedNumber>    ::= <number> | <sign><number>        <sign> ::= "+" | "-"
    <number>          ::= <digits> | <digits>.<digits> | <digits>. | .<digits>
    <suffix>          ::= <binarySI> | <decimalExponent> | <decimalSI>
    <binarySI>        ::= Ki | Mi | Gi | Ti | Pi | Ei
    <decimalSI>       ::= n | u | m | "" | k | M | G | T | P | E
    <decimalExponent> ::= "e" <signedNumber> | "E" <signedNumber>
Values keep nano precision: finer fractions round up (away from zero), as Quantity does. The canonical
form keeps the format the value was written in (binary, decimal SI or exponent), picks the largest
suffix that leaves an integer, and writes binary values below 1024 or with a fraction in decimal SI.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

# The message kube-apiserver and kubectl print for a string that is not a quantity.
ERR_FORMAT = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
ERR_SUFFIX = "unable to parse quantity's suffix"
ERR_NUMERIC = "unable to parse numeric part of quantity"

BINARY_SI = "BinarySI"
DECIMAL_SI = "DecimalSI"
DECIMAL_EXPONENT = "DecimalExponent"

_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DECIMAL_BY_EXP = {v: k for k, v in _DECIMAL.items()}
_NUMBER_RE = re.compile(r"([+-]?)(\d+\.?\d*|\.\d+)")
_EXPONENT_RE = re.compile(r"[eE]([+-]?\d+)")
_MIN_EXP = -9  # nano: Quantity's smallest scale


class QuantityError(ValueError):
    """Not a resource quantity; the message is Kubernetes' own."""


@dataclass(frozen=True)
class Quantity:
    value: Fraction
    format: str

    def __str__(self) -> str:
        return canonical(self)


def parse_quantity(text: str) -> Quantity:
    """resource.ParseQuantity: the exact value (rounded up to nano precision) and its format."""
    if not isinstance(text, str) or not text:
        raise QuantityError(ERR_FORMAT)
    text = text.strip()
    m = _NUMBER_RE.match(text)
    if m is None:
        raise QuantityError(ERR_FORMAT)
    sign, digits = m.group(1), m.group(2)
    suffix = text[m.end():]
    if not re.fullmatch(r"[eEinumkKMGTP]*[-+]?[0-9]*", suffix):
        raise QuantityError(ERR_FORMAT)
    number = Fraction(digits if "." not in digits or not digits.endswith(".") else digits[:-1] or "0")
    if suffix in _BINARY:
        value, fmt = number * 2 ** _BINARY[suffix], BINARY_SI
    elif suffix in _DECIMAL:
        value, fmt = number * Fraction(10) ** _DECIMAL[suffix], DECIMAL_SI
    elif (e := _EXPONENT_RE.fullmatch(suffix)) is not None:
        value, fmt = number * Fraction(10) ** int(e.group(1)), DECIMAL_EXPONENT
    else:
        raise QuantityError(ERR_SUFFIX)
    # Round up to nano precision (Quantity.RoundUp(Nano)): away from zero.
    scaled = value * 10 ** -_MIN_EXP
    value = Fraction(math.ceil(scaled), 10 ** -_MIN_EXP)
    return Quantity(-value if sign == "-" else value, fmt)


def _decimal(value: Fraction, exponent_form: bool) -> str:
    sign = "-" if value < 0 else ""
    mag = abs(value)
    if mag == 0:
        return "0"
    exp = _MIN_EXP
    while True:  # the largest multiple of 3 that leaves an integer mantissa
        nxt = exp + 3
        if (mag / Fraction(10) ** nxt).denominator != 1 or (not exponent_form and nxt > 18):
            break
        exp = nxt
    mantissa = int(mag / Fraction(10) ** exp)
    if exponent_form:
        return f"{sign}{mantissa}" + (f"e{exp}" if exp else "")
    return f"{sign}{mantissa}{_DECIMAL_BY_EXP[exp]}"


def canonical(q: Quantity) -> str:
    """Quantity.String(): the canonical text (`0.5` -> `500m`, `1.5Gi` -> `1536Mi`, `1000` -> `1k`)."""
    fmt = q.format
    if fmt == BINARY_SI and (q.value.denominator != 1 or -1024 < q.value < 1024):
        fmt = DECIMAL_SI
    if fmt == BINARY_SI:
        sign = "-" if q.value < 0 else ""
        mag = abs(int(q.value))
        best = ""
        for suffix, bits in _BINARY.items():
            if mag % (1 << bits) == 0:
                best = suffix
        return f"{sign}{mag >> _BINARY[best] if best else mag}{best}"
    return _decimal(q.value, fmt == DECIMAL_EXPONENT)


def canonical_quantity(value: object) -> str:
    """Canonical text of a manifest value: a quantity string or a JSON number (`cpu: 0.5`)."""
    if isinstance(value, bool) or value is None:
        raise QuantityError(ERR_FORMAT)
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise QuantityError(ERR_FORMAT)
        value = repr(value) if isinstance(value, float) else str(value)  # 1e-05 is a quantity too
    if not isinstance(value, str):
        raise QuantityError(ERR_FORMAT)
    return canonical(parse_quantity(value))
