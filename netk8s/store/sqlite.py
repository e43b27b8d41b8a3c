"""SQLite store: one WAL-mode file shared by the CLI, the controller and every node agent at once.

Every write is one `BEGIN IMMEDIATE` transaction that bumps the global revision (meta.revision), writes
the object with metadata.resourceVersion = str(revision) and appends an event; watchers poll the events
table. Each thread gets its own connection (sqlite3 connections must not be shared mid-transaction).
"""

from __future__ import annotations

import builtins
import contextlib
import sqlite3
import threading
import time
from collections.abc import Collection, Iterator
from pathlib import Path

from netk8s.errors import NetK8sError
from netk8s.store.base import (
    Event,
    EventType,
    Key,
    Op,
    WriteVerbs,
    apply_op,
    check_since,
    from_json,
    normalize_key,
    to_json,
    utc_timestamp,
)

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS objects (
        kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
        uid TEXT NOT NULL, rv INTEGER NOT NULL, data TEXT NOT NULL,
        PRIMARY KEY (kind, namespace, name))""",
    """CREATE TABLE IF NOT EXISTS events (
        rev INTEGER PRIMARY KEY, type TEXT NOT NULL, kind TEXT NOT NULL,
        namespace TEXT NOT NULL, name TEXT NOT NULL, data TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS events_kind ON events (kind, rev)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO meta (key, value) VALUES ('revision', 0)",
    # Highest revision whose event was compacted away; watch(since < this) raises Expired.
    "INSERT OR IGNORE INTO meta (key, value) VALUES ('compacted', 0)",
)

BUSY_TIMEOUT_S = 30.0
WATCH_POLL_S = 0.025
# PRAGMA data_version does not change for commits made on the same connection, so re-query now and
# then anyway (https://www.sqlite.org/pragma.html#pragma_data_version).
WATCH_FORCE_REQUERY_S = 0.5


class _SqliteTxn:
    """TxnView over an open BEGIN IMMEDIATE transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.start_rev = _meta(conn, "revision")
        self.rev = self.start_rev

    def read(self, key: Key) -> dict | None:
        return _read(self.conn, key)

    def bump(self) -> int:
        self.rev += 1
        return self.rev

    def write(self, rev: int, etype: EventType, key: Key, obj: dict) -> None:
        data = to_json(obj)
        if etype == "DELETED":
            self.conn.execute("DELETE FROM objects WHERE kind=? AND namespace=? AND name=?", key)
        else:
            self.conn.execute(
                "INSERT OR REPLACE INTO objects (kind, namespace, name, uid, rv, data) VALUES (?,?,?,?,?,?)",
                (*key, obj["metadata"]["uid"], rev, data))
        self.conn.execute("INSERT INTO events (rev, type, kind, namespace, name, data) VALUES (?,?,?,?,?,?)",
                          (rev, etype, *key, data))


def _meta(conn: sqlite3.Connection, key: str) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
    return int(row[0]) if row else 0


def _read(conn: sqlite3.Connection, key: Key) -> dict | None:
    row = conn.execute("SELECT data FROM objects WHERE kind=? AND namespace=? AND name=?", key).fetchone()
    return from_json(row[0]) if row else None


class SqliteStore(WriteVerbs):
    """The Store protocol on one SQLite file. Safe for many threads and processes at once."""

    def __init__(self, path: str | Path, keep_events: int = 50_000, compact_every: int = 1000) -> None:
        self.path = Path(path)
        self.keep_events = keep_events
        self.compact_every = max(1, compact_every)
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise NetK8sError(f"store: cannot create {self.path.parent}: {e}") from None
        conn = self._conn()
        try:
            with self._txn(conn):
                for stmt in SCHEMA:
                    conn.execute(stmt)
        except sqlite3.Error as e:
            self.close()
            raise NetK8sError(f"store: cannot initialise {self.path}: {e}",
                              hint="check that the file is a netk8s store") from None

    # -- connections and transactions ------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise NetK8sError(f"store: {self.path} is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves. check_same_thread=False only so
            # close() may close every thread's connection; each connection is used by one thread.
            conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                   check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise NetK8sError(f"store: {self.path}: cannot switch to WAL mode (got {mode})")
            # NORMAL in WAL mode: a commit survives a crash of any process; only an OS crash or power
            # loss may lose the last transactions (https://www.sqlite.org/pragma.html#pragma_synchronous).
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as e:
            raise NetK8sError(f"store: cannot open {self.path}: {e}",
                              hint="check the path and that the file is a netk8s store") from None
        self._local.conn = conn
        with self._conns_lock:
            self._conns.append(conn)
        return conn

    @contextlib.contextmanager
    def _txn(self, conn: sqlite3.Connection, write: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction: IMMEDIATE takes the write lock up front (waiting up to busy_timeout), so a
        writer never fails half-way on a lock upgrade; DEFERRED gives readers one consistent snapshot."""
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN DEFERRED")
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _write(self, ops: list[Op]) -> list[dict]:
        conn = self._conn()
        now = utc_timestamp(time.time())
        try:
            with self._txn(conn) as c:
                view = _SqliteTxn(c)
                out = [apply_op(view, op, now) for op in ops]
                if view.rev != view.start_rev:
                    c.execute("UPDATE meta SET value=? WHERE key='revision'", (view.rev,))
                    if view.rev // self.compact_every != view.start_rev // self.compact_every:
                        self._compact(c, view.rev)
                return out
        except sqlite3.Error as e:
            raise NetK8sError(f"store: write to {self.path} failed: {e}") from None

    def _compact(self, conn: sqlite3.Connection, rev: int) -> None:
        upto = rev - self.keep_events
        if upto > _meta(conn, "compacted"):
            conn.execute("DELETE FROM events WHERE rev <= ?", (upto,))
            conn.execute("UPDATE meta SET value=? WHERE key='compacted'", (upto,))

    # -- Store protocol ------------------------------------------------------------------------------

    def try_get(self, kind: str, namespace: str, name: str) -> dict | None:
        try:
            return _read(self._conn(), normalize_key(kind, namespace, name))
        except sqlite3.Error as e:
            raise NetK8sError(f"store: read from {self.path} failed: {e}") from None

    def list(self, kind: str, namespace: str | None = None) -> tuple[list[dict], int]:
        conn = self._conn()
        try:
            with self._txn(conn, write=False) as c:
                # The first SELECT starts the read snapshot; rows and revision come from the same one.
                if namespace is None:
                    rows = c.execute("SELECT data FROM objects WHERE kind=? ORDER BY namespace, name",
                                     (kind,)).fetchall()
                else:
                    _, ns, _ = normalize_key(kind, namespace, "")
                    rows = c.execute("SELECT data FROM objects WHERE kind=? AND namespace=? ORDER BY name",
                                     (kind, ns)).fetchall()
                rev = _meta(c, "revision")
        except sqlite3.Error as e:
            raise NetK8sError(f"store: read from {self.path} failed: {e}") from None
        return [from_json(r[0]) for r in rows], rev

    def revision(self) -> int:
        try:
            return _meta(self._conn(), "revision")
        except sqlite3.Error as e:
            raise NetK8sError(f"store: read from {self.path} failed: {e}") from None

    def watch(self, since: int, kinds: Collection[str] | None = None,
              timeout: float = 1.0) -> builtins.list[Event]:
        conn = self._conn()
        kind_list = sorted(set(kinds)) if kinds is not None else None
        if kind_list == []:
            return []
        deadline = time.monotonic() + max(0.0, timeout)
        last_version: int | None = None
        last_query = 0.0
        try:
            while True:
                version = int(conn.execute("PRAGMA data_version").fetchone()[0])
                now = time.monotonic()
                if version != last_version or now - last_query >= WATCH_FORCE_REQUERY_S:
                    last_version, last_query = version, now
                    events = self._events_after(conn, since, kind_list)
                    if events:
                        return events
                if now >= deadline:
                    return []
                time.sleep(min(WATCH_POLL_S, max(0.0, deadline - now)))
        except sqlite3.Error as e:
            raise NetK8sError(f"store: watch on {self.path} failed: {e}") from None

    def _events_after(self, conn: sqlite3.Connection, since: int,
                      kinds: builtins.list[str] | None) -> builtins.list[Event]:
        with self._txn(conn, write=False) as c:
            check_since(since, _meta(c, "compacted"))
            if kinds is None:
                rows = c.execute("SELECT rev, type, data FROM events WHERE rev > ? ORDER BY rev",
                                 (since,)).fetchall()
            else:
                marks = ",".join("?" * len(kinds))
                rows = c.execute(f"SELECT rev, type, data FROM events WHERE rev > ? AND kind IN ({marks}) "
                                 "ORDER BY rev", (since, *kinds)).fetchall()
        return [Event(int(rev), etype, from_json(data)) for rev, etype, data in rows]

    def close(self) -> None:
        """Close every connection this store opened (in any thread). Idempotent."""
        self._closed = True
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:
                pass  # a connection already broken is closed enough
