"""meta/v1 Status objects from netk8s errors, with kube-apiserver's reasons, codes and message shapes.

Follows k8s.io/apimachinery/pkg/api/errors (NewNotFound, NewAlreadyExists, NewConflict, NewInvalid,
NewForbidden, NewUnauthorized, NewResourceExpired, NewBadRequest, NewMethodNotSupported): the message
is what kubectl prints after `Error from server (Reason): `.
"""

from __future__ import annotations

import re

from netk8s.errors import (
    AlreadyExists,
    BadRequest,
    Conflict,
    Expired,
    Forbidden,
    NetK8sError,
    NotFound,
    StoreUnavailable,
    Unauthorized,
    ValidationError,
)
from netk8s.model.kinds import KINDS

# error class -> (reason, HTTP code); the first match in order wins (subclasses first).
_REASONS: tuple[tuple[type[NetK8sError], str, int], ...] = (
    (NotFound, "NotFound", 404),
    (AlreadyExists, "AlreadyExists", 409),
    (Conflict, "Conflict", 409),
    (Expired, "Expired", 410),
    (Unauthorized, "Unauthorized", 401),
    (Forbidden, "Forbidden", 403),
    (BadRequest, "BadRequest", 400),
    (ValidationError, "Invalid", 422),
)

# `pod/x: ` / `service/web: ` at the start of a netk8s message: the object reference, not the field.
_REF_RE = re.compile(r"^[a-z?]+/[^:\s]*: ")


def status(code: int, reason: str, message: str, details: dict | None = None) -> dict:
    """A failure Status as kube-apiserver writes it."""
    out: dict = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                 "message": message, "reason": reason, "code": code}
    if details:
        out["details"] = details
    return out


def success(details: dict) -> dict:
    """The Status a delete answers with once the object is gone (details: name, group, kind, uid)."""
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}


def group_of(api_version: str) -> str:
    return api_version.split("/", 1)[0] if "/" in api_version else ""


def _strip_ref(message: str) -> str:
    return _REF_RE.sub("", message, count=1)


_GOT_RE = re.compile(r"^(?P<detail>.*), got (?P<value>.+)$")
_ONE_OF_RE = re.compile(r"^must be one of (?P<allowed>.*), got (?P<value>.+)$")
_REQUIRED_RE = re.compile(r"^is required\b\s*(?P<rest>.*)$")


def kube_problem(problem: str) -> str:
    """netk8s's problem text in field.Error's wording (`Invalid value: 0: must be between 1 and 65535,
    inclusive`, `Required value`, `Unsupported value: "HTTP": supported values: "TCP", "UDP"`)."""
    if problem.startswith(("Invalid value:", "Required value", "Unsupported value:", "Duplicate value:",
                           "Forbidden:")):
        return problem
    m = _REQUIRED_RE.match(problem)
    if m:
        rest = m.group("rest").strip().strip("()").strip()
        return f"Required value: {rest}" if rest else "Required value"
    m = _ONE_OF_RE.match(problem)
    if m:
        allowed = ", ".join(f'"{a.strip()}"' for a in m.group("allowed").split(","))
        return f"Unsupported value: {m.group('value')}: supported values: {allowed}"
    m = _GOT_RE.match(problem)
    if m:
        detail = m.group("detail")
        if re.fullmatch(r"must be between \S+ and \S+", detail):
            detail += ", inclusive"
        return f"Invalid value: {m.group('value')}: {detail}"
    return problem


def _cause_reason(problem: str) -> str:
    """StatusCause reasons (field.ErrorType): Required, Duplicate, NotSupported, Forbidden, Invalid."""
    low = problem.lower()
    if low.startswith(("is required", "required value")):
        return "FieldValueRequired"
    if low.startswith(("unsupported value", "must be one of")):
        return "FieldValueNotSupported"
    if low.startswith("duplicate"):
        return "FieldValueDuplicate"
    if low.startswith("forbidden"):
        return "FieldValueForbidden"
    return "FieldValueInvalid"


def invalid(kind: str, name: str, err: ValidationError) -> dict:
    """422 Invalid: `Service "s" is invalid: spec.ports[0].port: <problem>` with details.causes."""
    causes = list(err.causes)
    if err.field:
        problem = kube_problem(err.problem) if err.problem else _strip_ref(err.message)
        causes.insert(0, {"reason": _cause_reason(problem), "message": problem, "field": err.field})
        text = f"{err.field}: {problem}"
    else:
        text = _strip_ref(err.message)
    if len(causes) > 1:
        # field.ErrorList.ToAggregate(): several errors print as a bracketed list.
        text = "[" + ", ".join(f"{c['field']}: {c['message']}" if c.get("field") else c["message"]
                               for c in causes) + "]"
    info = KINDS.get(kind)
    details: dict = {"name": name, "group": group_of(info.api_version) if info else "", "kind": kind}
    if causes:
        details["causes"] = causes
    return status(422, "Invalid", f'{kind} "{name}" is invalid: {text}', details)


def from_error(err: NetK8sError, kind: str = "", name: str = "") -> dict:
    """The Status for any netk8s error raised while serving a request about (kind, name)."""
    if isinstance(err, ValidationError) and not isinstance(err, BadRequest):
        return invalid(kind or "Object", name, err)
    info = KINDS.get(kind)
    if isinstance(err, NotFound) and info is not None and name and err.message.startswith(f'{info.plural} "'):
        # the store says `pods "x" not found in namespace "y"`; kube-apiserver names the group instead
        return not_found(info.plural, name, group_of(info.api_version))
    if isinstance(err, StoreUnavailable):
        return server_timeout(err.message, kind)
    for cls, reason, code in _REASONS:
        if isinstance(err, cls):
            details: dict = {}
            if name:
                details["name"] = name
            if info is not None:
                details["group"] = group_of(info.api_version)
                details["kind"] = info.plural
            causes = getattr(err, "causes", None)
            if causes:
                details["causes"] = list(causes)
            return status(code, reason, err.message, details)
    return status(500, "InternalError", f"Internal error occurred: {err.message}")


# Seconds a client is asked to wait before repeating a request the store could not serve (kube-apiserver's
# InterpretGetError & co. use 2 for an unreachable storage: storage/errors.go).
RETRY_AFTER_S = 2


def server_timeout(message: str, kind: str = "") -> dict:
    """500 ServerTimeout (apierrors.NewServerTimeout): the store is unreachable, try again in
    RETRY_AFTER_S seconds (details.retryAfterSeconds; the response carries Retry-After too)."""
    info = KINDS.get(kind)
    details: dict = {"retryAfterSeconds": RETRY_AFTER_S}
    if info is not None:
        details.update(group=group_of(info.api_version), kind=info.plural)
    return status(500, "ServerTimeout", f"the request could not be completed at this time, please try again "
                                        f"({message})", details)


def not_found(plural: str, name: str, group: str = "") -> dict:
    return status(404, "NotFound", f'{plural + "." + group if group else plural} "{name}" not found',
                  {"name": name, "group": group, "kind": plural})


def path_not_found() -> dict:
    """A path no route serves: kube-apiserver's bare 404 Status."""
    return status(404, "NotFound", "the server could not find the requested resource", {})


def method_not_allowed(verb: str, plural: str) -> dict:
    return status(405, "MethodNotAllowed", f"{verb} is not supported on resources of kind {plural!r}", {})


def unauthorized() -> dict:
    return status(401, "Unauthorized", "Unauthorized")


def forbidden(user: str, verb: str, resource: str, group: str, namespace: str, name: str) -> dict:
    """authorization's denial text (endpoints/handlers/responsewriters/errors.go forbiddenMessage)."""
    where = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    base = resource.split("/", 1)[0]
    subject = f'{base}{"." + group if group else ""}' + (f' "{name}"' if name else "")
    message = (f'{subject} is forbidden: User "{user}" cannot {verb} resource "{resource}" '
               f'in API group "{group}" {where}')
    details: dict = {"group": group, "kind": resource.split("/")[0]}
    if name:
        details["name"] = name
    return status(403, "Forbidden", message, details)
