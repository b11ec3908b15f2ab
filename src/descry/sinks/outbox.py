"""A durable outbox on SQLite (stdlib sqlite3, WAL): what a network sink still has to send.

An entry is written and committed before ``deliver`` returns, so a crash or a down receiver
delays an update but never loses it. Entries of one asset go out strictly in order: only the
oldest pending entry of an asset (its head) can be claimed. A claim is a lease, so two
dispatchers on the same file never send the same entry at once, and a crashed one's claims expire.
A claim names its owner (``claim_owner``: host, process id, a random part), so a dispatcher that
starts releases at once the claims of processes on its host that no longer run
(``release_dead_claims``) instead of waiting for their leases to run out.

States: ``pending`` -> ``delivered`` | ``dead`` (gave up; kept and listed, can be requeued).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from descry.errors import ConfigError

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,
    asset TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    body BLOB NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    lease_until REAL,
    lease_owner TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    last_status INTEGER,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_heads ON outbox (channel, state, asset, id);
"""

_HEADS = """
SELECT o.* FROM outbox o
WHERE o.channel = :channel AND o.state = 'pending'
  AND o.id = (SELECT MIN(i.id) FROM outbox i
              WHERE i.channel = o.channel AND i.asset = o.asset AND i.state = 'pending')
"""


def claim_owner() -> str:
    """A claim owner for this process: ``<host>/<pid>/<random>``."""
    return f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex}"


def owner_is_dead(owner: str) -> bool:
    """True only when ``owner`` names a process on this host that no longer runs (never a guess)."""
    host, _, rest = owner.partition("/")
    pid_text = rest.partition("/")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists but is not ours (PermissionError), or cannot tell
        return False
    return False


@dataclass(frozen=True)
class OutboxEntry:
    """One queued delivery."""

    id: int
    asset: str
    idempotency_key: str
    body: bytes
    state: str
    attempts: int
    next_attempt_at: float
    created_at: float
    last_status: int | None
    last_error: str | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> OutboxEntry:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


class Outbox:
    """The outbox file of one channel (e.g. ``webhook``); every method is thread-safe and short."""

    def __init__(self, path: Path, channel: str) -> None:
        self.path = Path(path)
        self.channel = channel
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"cannot open the outbox {self.path}: {exc}",
                hint="make DESCRY_DATA_DIR a writable directory on a local disk",
            ) from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, sql: str, params: dict[str, object]) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, params)

    def enqueue(self, asset: str, idempotency_key: str, body: bytes, now: float | None = None) -> int:
        """Add an entry (committed when this returns); an identical pending one is not added twice."""
        now = time.time() if now is None else now
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT id FROM outbox WHERE channel = ? AND idempotency_key = ? AND state = 'pending'",
                    (self.channel, idempotency_key),
                ).fetchone()
                if row is not None:
                    self._db.execute("COMMIT")
                    return int(row["id"])
                cur = self._db.execute(
                    "INSERT INTO outbox (channel, asset, idempotency_key, body, next_attempt_at, created_at,"
                    " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (self.channel, asset, idempotency_key, body, now, now, now),
                )
                self._db.execute("COMMIT")
                return int(cur.lastrowid or 0)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def claim(
        self, limit: int, lease_seconds: float, owner: str, now: float | None = None
    ) -> list[OutboxEntry]:
        """Lease up to ``limit`` due heads (the oldest pending entry of each asset)."""
        now = time.time() if now is None else now
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                rows = self._db.execute(
                    _HEADS + " AND o.next_attempt_at <= :now"
                    " AND (o.lease_until IS NULL OR o.lease_until <= :now)"
                    " ORDER BY o.next_attempt_at, o.id LIMIT :limit",
                    {"channel": self.channel, "now": now, "limit": limit},
                ).fetchall()
                self._db.executemany(
                    "UPDATE outbox SET lease_until = ?, lease_owner = ? WHERE id = ?",
                    [(now + lease_seconds, owner, row["id"]) for row in rows],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return [OutboxEntry.from_row(row) for row in rows]

    def release_dead_claims(self, now: float | None = None) -> int:
        """Release the live claims of owners that are dead processes on this host; returns how many."""
        now = time.time() if now is None else now
        with self._lock:
            owners = [
                row["lease_owner"]
                for row in self._db.execute(
                    "SELECT DISTINCT lease_owner FROM outbox WHERE channel = ? AND state = 'pending'"
                    " AND lease_owner IS NOT NULL AND lease_until > ?",
                    (self.channel, now),
                ).fetchall()
            ]
        dead = [owner for owner in owners if owner_is_dead(owner)]
        if not dead:
            return 0
        return self._write(
            "UPDATE outbox SET lease_until = NULL, lease_owner = NULL WHERE channel = :channel"
            " AND state = 'pending' AND lease_owner IN (SELECT value FROM json_each(:owners))",
            {"channel": self.channel, "owners": json.dumps(dead)},
        ).rowcount

    def mark_delivered(self, entry_id: int, status: int) -> None:
        self._finish(entry_id, "delivered", status, None, None)

    def mark_dead(self, entry_id: int, status: int | None, error: str) -> None:
        self._finish(entry_id, "dead", status, error, None)

    def mark_retry(self, entry_id: int, status: int | None, error: str, next_attempt_at: float) -> None:
        self._finish(entry_id, "pending", status, error, next_attempt_at)

    def _finish(
        self, entry_id: int, state: str, status: int | None, error: str | None, next_at: float | None
    ) -> None:
        self._write(
            "UPDATE outbox SET state = :state, attempts = attempts + 1, last_status = :status,"
            " last_error = :error, next_attempt_at = COALESCE(:next_at, next_attempt_at),"
            " lease_until = NULL, lease_owner = NULL, updated_at = :now WHERE id = :id",
            {
                "state": state,
                "status": status,
                "error": error,
                "next_at": next_at,
                "now": time.time(),
                "id": entry_id,
            },
        )

    def seconds_until_due(self, now: float | None = None) -> float | None:
        """How long until some head can be sent; None when nothing is pending."""
        now = time.time() if now is None else now
        with self._lock:
            row = self._db.execute(
                "SELECT MIN(MAX(next_attempt_at, COALESCE(lease_until, 0))) AS due FROM (" + _HEADS + ")",
                {"channel": self.channel},
            ).fetchone()
        return None if row["due"] is None else max(0.0, row["due"] - now)

    def counts(self) -> dict[str, int]:
        """Entries per state (pending, delivered, dead)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT state, COUNT(*) AS n FROM outbox WHERE channel = ? GROUP BY state", (self.channel,)
            ).fetchall()
        out = {"pending": 0, "delivered": 0, "dead": 0}
        out.update({row["state"]: row["n"] for row in rows})
        return out

    def entries(self, state: str) -> list[OutboxEntry]:
        """Entries in ``state``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM outbox WHERE channel = ? AND state = ? ORDER BY id", (self.channel, state)
            ).fetchall()
        return [OutboxEntry.from_row(row) for row in rows]

    def requeue_dead(self, ids: list[int] | None = None) -> int:
        """Give dead entries (all, or those ``ids``) a fresh set of attempts; returns how many."""
        sql = (
            "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = :now, updated_at = :now"
            " WHERE channel = :channel AND state = 'dead'"
        )
        params: dict[str, object] = {"now": time.time(), "channel": self.channel}
        if ids is not None:
            sql += " AND id IN (SELECT value FROM json_each(:ids))"
            params["ids"] = "[" + ",".join(str(int(i)) for i in ids) + "]"
        return self._write(sql, params).rowcount

    def prune_delivered(self, older_than_seconds: float) -> int:
        """Forget delivered entries older than this; returns how many."""
        return self._write(
            "DELETE FROM outbox WHERE channel = :channel AND state = 'delivered' AND updated_at < :cutoff",
            {"channel": self.channel, "cutoff": time.time() - older_than_seconds},
        ).rowcount
