"""Authentication (client certificates, bearer tokens) and the simple RBAC split: admin, node, read-only.

Authentication follows kube-apiserver's x509 and token-auth-file authenticators: a client certificate
verified against --client-ca names the user in CN and the groups in O; a bearer token is looked up in
the --token-file CSV (`token,user,uid,"group1,group2"`). Authorization is three fixed roles in place of
RBAC objects: system:masters may do anything (as in Kubernetes), system:nodes may read everything and
write what a kubelet writes (pods and their status, nodes, endpoints, endpointslices, events),
netk8s:viewers may get, list and watch.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from netk8s.errors import ValidationError

ADMIN_GROUP = "system:masters"
NODES_GROUP = "system:nodes"
VIEWERS_GROUP = "netk8s:viewers"
AUTHENTICATED = "system:authenticated"
READ_VERBS = frozenset({"get", "list", "watch"})
# resource (with subresource) -> what a node may write there (plugin/pkg/auth/authorizer/node, the
# system:node ClusterRole): pods and their status, its Node object, endpoints, events.
NODE_WRITABLE = frozenset({"pods", "pods/status", "nodes", "nodes/status", "endpoints", "endpointslices",
                           "events"})


@dataclass(frozen=True)
class User:
    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()


def parse_token_file(text: str, origin: str = "token file") -> dict[str, User]:
    """token -> User from a token-auth-file: CSV `token,user,uid[,"group1,group2"]`, one per line."""
    tokens: dict[str, User] = {}
    for lineno, row in enumerate(csv.reader(io.StringIO(text)), 1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) < 3:
            raise ValidationError(f"{origin}:{lineno}: want token,user,uid[,groups], got {len(row)} fields")
        token, name, uid = (c.strip() for c in row[:3])
        if not token or not name:
            raise ValidationError(f"{origin}:{lineno}: token and user must not be empty")
        groups = tuple(g.strip() for g in row[3].split(",") if g.strip()) if len(row) > 3 else ()
        tokens[token] = User(name, uid, groups)
    return tokens


def user_from_peercert(peercert: dict | None) -> User | None:
    """The user of a verified client certificate (ssl.SSLSocket.getpeercert()): CN user, O groups."""
    if not peercert:
        return None
    cn = ""
    orgs: list[str] = []
    for rdn in peercert.get("subject") or ():
        for attr, value in rdn:
            if attr == "commonName":
                cn = value
            elif attr == "organizationName":
                orgs.append(value)
    return User(cn, "", tuple(orgs)) if cn else None


def user_from_bearer(authorization: str, tokens: dict[str, User]) -> User | None:
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return tokens.get(token.strip())


def with_authenticated(user: User) -> User:
    if AUTHENTICATED in user.groups:
        return user
    return User(user.name, user.uid, (*user.groups, AUTHENTICATED))


def allowed(user: User, verb: str, resource: str) -> bool:
    """Whether `user` may do `verb` (get, list, watch, create, update, patch, delete, deletecollection)
    on `resource` ("pods", "pods/status", "" for non-resource paths such as /api or /version)."""
    if ADMIN_GROUP in user.groups:
        return True
    if verb in READ_VERBS and (NODES_GROUP in user.groups or VIEWERS_GROUP in user.groups):
        return True
    if not resource:
        # discovery, /version, /openapi, health: every authenticated user (system:discovery role)
        return verb == "get"
    if NODES_GROUP in user.groups:
        return resource in NODE_WRITABLE
    return False
