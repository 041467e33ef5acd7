"""Shard leases and checkpoints, in one PostgreSQL table beside the rows.

One row per shard of a stream: its parents, its state (open; closed: no new records go to it;
finished: read to its end and committed), its checkpoint (the sequence and sub-sequence number
of the last record committed), and its lease (owner, expiry). The checkpoint is written by the
loader inside the transaction of the rows (checkpoints.py); this module takes, renews, steals
and gives back leases on a connection of its own.

Taking is the KCL's lease taker: each process aims at ceil(shards / processes) leases; it takes
free or expired ones first, and when there are none, one lease a round from the busiest
holder, if that one holds more than its share.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import uuid
from collections import Counter
from dataclasses import dataclass

from .. import database
from ..database import database_errors
from .client import Shard

SHARDS = "loginetl_stream_shards"
STATES = ("open", "closed", "finished")

CREATE_SQL = f"""CREATE TABLE IF NOT EXISTS {SHARDS} (
    stream text NOT NULL,
    shard_id text NOT NULL,
    parents text[] NOT NULL DEFAULT '{{}}',
    state text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'closed', 'finished')),
    checkpoint numeric,
    checkpoint_sub integer NOT NULL DEFAULT -1,
    owner text,
    lease_expires timestamptz,
    leases_taken bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream, shard_id)
)"""


def new_owner() -> str:
    """This process, as a lease owner: host, pid, and a few random digits."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class Lease:
    shard_id: str
    checkpoint: tuple[int, int] | None  # (sequence, sub-sequence), None: nothing read yet


@dataclass(frozen=True)
class Round:
    taken: list[Lease]
    lost: list[str]
    eligible: int  # shards that may be read now (not finished, parents finished)


def position_sql(checkpoint, sub) -> tuple[int, int] | None:
    return None if checkpoint is None else (int(checkpoint), int(sub))


class Leases:
    """This process's leases on one stream, on a connection of its own (autocommit)."""

    def __init__(self, database_url: str, stream: str, lease_seconds: float, owner: str) -> None:
        self.database_url = database_url
        self.stream = stream
        self.lease_seconds = lease_seconds
        self.owner = owner
        self.held: set[str] = set()
        self.connection = None
        self.taken_total = 0
        self.lost_total = 0
        self.lock = threading.RLock()  # the coordinator and the readers share the connection

    def _execute(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self.lock:
            return self._execute_locked(sql, params)

    def _execute_locked(self, sql: str, params: tuple) -> list[tuple]:
        if self.connection is None or self.connection.closed:
            self.connection = database.connect(self.database_url)
            self.connection.autocommit = True
        with database_errors(self.connection, f"cannot update the leases in {SHARDS}"):
            with self.connection.cursor() as cursor:
                cursor.execute(sql, params)
                return cursor.fetchall() if cursor.description else []

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()

    def sync(self, shards: list[Shard]) -> None:
        """Add the shards the table does not know; mark closed those that closed."""
        for shard in shards:
            self._execute(
                f"INSERT INTO {SHARDS} (stream, shard_id, parents, state) VALUES (%s, %s, %s, %s) "
                f"ON CONFLICT (stream, shard_id) DO UPDATE SET state = 'closed' "
                f"WHERE {SHARDS}.state = 'open' AND excluded.state = 'closed'",
                (self.stream, shard.id, list(shard.parents), "closed" if shard.closed else "open"),
            )

    def round(self, wanted: bool = True) -> Round:
        """Renew what is held, then take (or steal) toward a fair share if `wanted`."""
        with self.lock:
            return self._round(wanted)

    def _round(self, wanted: bool) -> Round:
        renewed = {
            shard_id
            for (shard_id,) in self._execute(
                f"UPDATE {SHARDS} SET lease_expires = clock_timestamp() + %s * interval '1 second' "
                "WHERE stream = %s AND owner = %s AND shard_id = ANY(%s) RETURNING shard_id",
                (self.lease_seconds, self.stream, self.owner, sorted(self.held)),
            )
        }
        lost = sorted(self.held - renewed)
        self.held = renewed
        self.lost_total += len(lost)
        rows = self._execute(
            "SELECT shard_id, parents, state, owner, "
            "owner IS NOT NULL AND lease_expires > clock_timestamp() "
            f"FROM {SHARDS} WHERE stream = %s ORDER BY shard_id",
            (self.stream,),
        )
        finished = {shard_id for shard_id, _, state, _, _ in rows if state == "finished"}
        known = {row[0] for row in rows}
        eligible = [
            (shard_id, owner if live else None)
            for shard_id, parents, state, owner, live in rows
            if state != "finished" and all(p in finished or p not in known for p in parents)
        ]
        taken: list[Lease] = []
        if wanted:
            others = Counter(owner for _, owner in eligible if owner and owner != self.owner)
            share = math.ceil(len(eligible) / (len(others) + 1)) if eligible else 0
            free = [shard_id for shard_id, owner in eligible if owner is None]
            for shard_id in free[: max(0, share - len(self.held))]:
                taken += self._take(shard_id, None)
            if len(self.held) < share and not free and others:
                busiest, count = others.most_common(1)[0]
                if count > share:
                    victim = next(s for s, owner in eligible if owner == busiest)
                    taken += self._take(victim, busiest)
        return Round(taken, lost, len(eligible))

    def _take(self, shard_id: str, from_owner: str | None) -> list[Lease]:
        """Take a free or expired lease, or the one `from_owner` holds (stealing)."""
        rows = self._execute(
            f"UPDATE {SHARDS} SET owner = %s, leases_taken = leases_taken + 1, "
            "lease_expires = clock_timestamp() + %s * interval '1 second' "
            "WHERE stream = %s AND shard_id = %s AND state <> 'finished' AND (owner IS NULL "
            "OR lease_expires <= clock_timestamp() OR owner = %s) "
            "RETURNING checkpoint, checkpoint_sub",
            (self.owner, self.lease_seconds, self.stream, shard_id, from_owner or ""),
        )
        if not rows:
            return []
        self.held.add(shard_id)
        self.taken_total += 1
        return [Lease(shard_id, position_sql(*rows[0]))]

    def finish(self, shard_id: str) -> None:
        """The shard is read to its end and all of it committed: children may start."""
        self._execute(
            f"UPDATE {SHARDS} SET state = 'finished', owner = NULL, lease_expires = NULL, "
            "updated_at = clock_timestamp() WHERE stream = %s AND shard_id = %s AND owner = %s",
            (self.stream, shard_id, self.owner),
        )
        self.held.discard(shard_id)

    def give_back(self, shard_ids: list[str] | None = None) -> None:
        """Release leases at once (at the end of a run), for others to take without waiting."""
        ids = sorted(self.held if shard_ids is None else set(shard_ids))
        self._execute(
            f"UPDATE {SHARDS} SET owner = NULL, lease_expires = NULL "
            "WHERE stream = %s AND owner = %s AND shard_id = ANY(%s)",
            (self.stream, self.owner, ids),
        )
        self.held -= set(ids)


def shard_rows(connection, stream: str) -> list[dict]:
    """Every shard the table knows for `stream`, for status and peek."""
    with database_errors(connection, f"cannot read {SHARDS}"):
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT shard_id, parents, state, checkpoint::text, checkpoint_sub, "
                "CASE WHEN lease_expires > clock_timestamp() THEN owner END, lease_expires "
                f"FROM {SHARDS} WHERE stream = %s ORDER BY shard_id",
                (stream,),
            )
            rows = cursor.fetchall()
        connection.rollback()
    return [
        {
            "id": shard_id,
            "parent": ",".join(parents) or None,
            "state": state,
            "owner": owner,
            "checkpoint": None if checkpoint is None else
            checkpoint + ("" if sub < 0 else f"/{sub}"),
            "lease_expires": expires.isoformat() if owner and expires else None,
        }  # fmt: skip
        for shard_id, parents, state, checkpoint, sub, owner, expires in rows
    ]
