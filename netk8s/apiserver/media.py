"""Content negotiation: what an Accept header asks for (plain JSON, a meta.k8s.io Table)."""

from __future__ import annotations

JSON = "application/json"
TABLE_TYPE = "application/json;as=Table;v=v1;g=meta.k8s.io"


def accept_params(accept: str) -> list[dict[str, str]]:
    """Each media range of an Accept header as a dict of its parameters plus "type"."""
    out = []
    for part in accept.split(","):
        pieces = part.split(";")
        params = {k.strip().lower(): v.strip() for k, _, v in (p.partition("=") for p in pieces[1:])}
        params["type"] = pieces[0].strip().lower()
        out.append(params)
    return out


def accepts_json(accept: str) -> bool:
    """Whether an Accept header takes plain JSON (no header, */*, application/*, application/json)."""
    if not accept.strip():
        return True
    return any(p["type"] in ("*/*", "application/*", JSON) and "as" not in p for p in accept_params(accept))


def wants_table(accept: str) -> bool:
    """`application/json;as=Table;v=v1;g=meta.k8s.io` (kubectl get's server-side printing)."""
    return any(p.get("as") == "Table" and p.get("g") == "meta.k8s.io" and p.get("v") in ("v1", "v1beta1")
               for p in accept_params(accept))
