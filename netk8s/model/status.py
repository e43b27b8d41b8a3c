"""Object status helpers shared by every layer: RFC 3339 timestamps and conditions (pure)."""

from __future__ import annotations

from datetime import datetime, timezone


def rfc3339(now: float) -> str:
    """Kubernetes' timestamp format (second precision, UTC, `Z`), as metav1.Time marshals."""
    return datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: object) -> float | None:
    """Epoch seconds of an RFC 3339 timestamp, or None if it is missing or malformed."""
    if not isinstance(text, str) or not text:
        return None
    s = text.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def condition(obj: dict, ctype: str) -> dict | None:
    """The status condition of type `ctype`, or None."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return cond
    return None


def is_ready(obj: dict) -> bool:
    """The Ready condition is True (a Pod's or a Node's; podutil.IsPodReady)."""
    cond = condition(obj, "Ready")
    return cond is not None and cond.get("status") == "True"
