"""Status objects: netk8s validation problems in kube-apiserver's field.Error wording, reasons and codes."""

from __future__ import annotations

import pytest

from netk8s.apiserver.status import from_error, invalid, kube_problem
from netk8s.errors import AlreadyExists, Conflict, Expired, NotFound, ValidationError


@pytest.mark.parametrize(("problem", "kube"), [
    ("must be between 1 and 65535, got 0", "Invalid value: 0: must be between 1 and 65535, inclusive"),
    ('must be an integer, got "3"', 'Invalid value: "3": must be an integer'),
    ('must be one of TCP, UDP, SCTP, got "HTTP"',
     'Unsupported value: "HTTP": supported values: "TCP", "UDP", "SCTP"'),
    ("is required", "Required value"),
    ("is required for an ExternalName Service", "Required value: for an ExternalName Service"),
    ('Invalid value: "10.96.0.10": provided IP is already allocated',
     'Invalid value: "10.96.0.10": provided IP is already allocated'),
    ("does not match spec.template.metadata.labels", "does not match spec.template.metadata.labels"),
])
def test_problem_wording(problem: str, kube: str) -> None:
    assert kube_problem(problem) == kube


def test_invalid_status_shape() -> None:
    err = ValidationError("service/s: spec.ports[0].port must be between 1 and 65535, got 0",
                          field="spec.ports[0].port", problem="must be between 1 and 65535, got 0")
    status = invalid("Service", "s", err)
    assert status["message"] == ('Service "s" is invalid: spec.ports[0].port: Invalid value: 0: '
                                 "must be between 1 and 65535, inclusive")
    assert (status["code"], status["reason"]) == (422, "Invalid")
    assert status["details"]["causes"] == [{"reason": "FieldValueInvalid", "field": "spec.ports[0].port",
                                            "message": "Invalid value: 0: must be between 1 and 65535, inclusive"}]


@pytest.mark.parametrize(("err", "code", "reason"), [
    (NotFound('pods "x" not found in namespace "default"'), 404, "NotFound"),
    (AlreadyExists('pods "x" already exists'), 409, "AlreadyExists"),
    (Conflict("Operation cannot be fulfilled"), 409, "Conflict"),
    (Expired("too old"), 410, "Expired"),
])
def test_reasons_and_codes(err: Exception, code: int, reason: str) -> None:
    status = from_error(err, "Pod", "x")  # type: ignore[arg-type]
    assert (status["code"], status["reason"], status["details"]["kind"]) == (code, reason, "pods")
    if code == 404:
        assert status["message"] == 'pods "x" not found'
