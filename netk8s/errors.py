"""The one exception tree: every error carries a message and a hint; only the CLI maps it to an exit code."""

from __future__ import annotations


class NetK8sError(Exception):
    """Base of every netk8s error. `message` is one line; `hint` says what to do about it."""

    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ValidationError(NetK8sError):
    """A manifest or argument is invalid. The message names the object and the field.

    `field` is the field path (`spec.ports[0].port`) and `problem` the text after it, when known;
    `causes` are extra Kubernetes StatusCause dicts ({reason, message, field}). The API server turns
    them into a Status with details.causes, as kube-apiserver does for field.ErrorList.
    """

    def __init__(self, message: str, hint: str = "", field: str = "", problem: str = "",
                 causes: list[dict] | None = None) -> None:
        super().__init__(message, hint)
        self.field = field
        self.problem = problem
        self.causes = list(causes or [])


class NotFound(NetK8sError):
    """The object does not exist."""


class AlreadyExists(NetK8sError):
    """An object with that name already exists."""


class Conflict(NetK8sError):
    """Optimistic concurrency: the object changed since it was read (resourceVersion mismatch).

    `causes` (StatusCause dicts) name the fields of a server-side apply conflict."""

    def __init__(self, message: str, hint: str = "", causes: list[dict] | None = None) -> None:
        super().__init__(message, hint)
        self.causes = list(causes or [])


class Expired(NetK8sError):
    """A watch asked for a revision older than the store still keeps; relist and watch again."""


class StoreUnavailable(NetK8sError):
    """The API server's store (etcd) could not be reached; the request was not served. The API server
    answers it as kube-apiserver does an unreachable etcd: 500 ServerTimeout with Retry-After."""


class BadRequest(NetK8sError):
    """A request is malformed in a way that is not about an object's fields (HTTP 400)."""


class KernelError(NetK8sError):
    """A kernel operation (netlink, iptables-restore, nft, sysctl) failed."""


class LabError(NetK8sError):
    """The lab is missing, already up, or not in a usable state."""


class UsageError(NetK8sError):
    """Wrong command-line usage."""

    exit_code = 2


class Unauthorized(NetK8sError):
    """The API server did not accept the request's credentials (HTTP 401)."""


class Forbidden(NetK8sError):
    """The credentials are valid but not allowed to do this (HTTP 403, RBAC)."""
