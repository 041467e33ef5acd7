"""Shard leases and checkpoints, in one PostgreSQL table beside the rows.

One row per shard of a stream: its parents, its state (open; closed: no new records go to it;
finished: read to its end and committed), its checkpoint (the sequence and sub-sequence number
of the last record committed), its lease (owner, expiry), and `updated_at`, when its owner last
took, renewed or checkpointed it: a holder that is alive moves it every renewal, so its age
tells a live holder from one that stopped. The checkpoint is written by the loader inside the
transaction of the rows (checkpoints.py); this module takes, renews, steals and gives back
leases on a connection of its own, retried through a database outage as batches are.

Taking is the KCL's lease taker: each process aims at ceil(shards / processes) leases; it takes
free or expired ones first, and when there are none, one lease a round from the busiest
holder, if that one holds more than its share. Only a following run steals: a one-shot run
leaves a live holder's shards to it and reports them.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from .. import database
from ..database import database_errors
from .client import Shard

SHARDS = "loginetl_stream_shards"
LEASE_SECONDS = 10.0  # a lease not renewed for this long may be taken (--lease-for)
RENEWAL_SECONDS = 3.0  # how often a run renews and takes leases (--renewal)
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
class Held:
    """A shard that may be read now, under another owner's live lease."""

    shard_id: str
    owner: str
    lease_expires: datetime
    updated_at: datetime  # the owner's last take, renewal or checkpoint


@dataclass(frozen=True)
class Round:
    taken: list[Lease]
    lost: list[str]
    eligible: int  # shards that may be read now (not finished, parents finished)
    held_by_others: list[Held]  # of those, the ones another owner's live lease holds now


def position_sql(checkpoint, sub) -> tuple[int, int] | None:
    return None if checkpoint is None else (int(checkpoint), int(sub))


class Leases:
    """This process's leases on one stream, on a connection of its own (autocommit).

    Every statement is safe to run twice (a retry after a lost reply finds its work done), so
    each is retried through a database outage for up to `retry_for` seconds, as a batch's
    commit is."""

    def __init__(
        self,
        database_url: str,
        stream: str,
        lease_seconds: float,
        owner: str,
        retry_for: float = 0.0,
        stop: threading.Event | None = None,
        on_outage: Callable[[], None] = lambda: None,
    ) -> None:
        self.db = database.Database(database_url, retry_for, stop, on_outage)
        self.stream = stream
        self.lease_seconds = lease_seconds
        self.owner = owner
        self.held: set[str] = set()
        self.taken_total = 0
        self.lost_total = 0
        self.lock = threading.RLock()  # the coordinator and the readers share the connection

    def _execute(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self.lock:
            return self.db.execute(
                sql, params, f"cannot update the leases in {SHARDS}", f"the leases in {SHARDS}"
            )

    def close(self) -> None:
        self.db.close()

    def sync(self, shards: list[Shard]) -> None:
        """Add the shards the table does not know; mark closed those that closed."""
        for shard in shards:
            self._execute(
                f"INSERT INTO {SHARDS} (stream, shard_id, parents, state) VALUES (%s, %s, %s, %s) "
                f"ON CONFLICT (stream, shard_id) DO UPDATE SET state = 'closed' "
                f"WHERE {SHARDS}.state = 'open' AND excluded.state = 'closed'",
                (self.stream, shard.id, list(shard.parents), "closed" if shard.closed else "open"),
            )

    def round(self, wanted: bool = True, steal: bool = True) -> Round:
        """Renew what is held, then take toward a fair share if `wanted`: free and expired
        leases, and (if `steal`) one from a holder with more than its share."""
        with self.lock:
            return self._round(wanted, steal)

    def _round(self, wanted: bool, steal: bool) -> Round:
        renewed = {
            shard_id
            for (shard_id,) in self._execute(
                f"UPDATE {SHARDS} SET updated_at = clock_timestamp(), "
                "lease_expires = clock_timestamp() + %s * interval '1 second' "
                "WHERE stream = %s AND owner = %s AND shard_id = ANY(%s) RETURNING shard_id",
                (self.lease_seconds, self.stream, self.owner, sorted(self.held)),
            )
        }
        lost = sorted(self.held - renewed)
        self.held = renewed
        self.lost_total += len(lost)
        rows = self._execute(
            "SELECT shard_id, parents, state, owner, "
            "owner IS NOT NULL AND lease_expires > clock_timestamp(), lease_expires, updated_at "
            f"FROM {SHARDS} WHERE stream = %s ORDER BY shard_id",
            (self.stream,),
        )
        finished = {row[0] for row in rows if row[2] == "finished"}
        known = {row[0] for row in rows}
        eligible = [
            row
            for row in rows
            if row[2] != "finished" and all(p in finished or p not in known for p in row[1])
        ]
        holders = [(row[0], row[3] if row[4] else None) for row in eligible]  # (shard, live owner)
        taken: list[Lease] = []
        if wanted:
            others = Counter(owner for _, owner in holders if owner and owner != self.owner)
            share = math.ceil(len(holders) / (len(others) + 1)) if holders else 0
            free = [shard_id for shard_id, owner in holders if owner is None]
            for shard_id in free[: max(0, share - len(self.held))]:
                taken += self._take(shard_id, None)
            if steal and len(self.held) < share and not free and others:
                busiest, count = others.most_common(1)[0]
                if count > share:
                    victim = next(s for s, owner in holders if owner == busiest)
                    taken += self._take(victim, busiest)
        taken_ids = {lease.shard_id for lease in taken}
        held_by_others = [
            Held(shard_id, owner, expires, updated)
            for shard_id, _, _, owner, live, expires, updated in eligible
            if live and owner != self.owner and shard_id not in taken_ids
        ]
        return Round(taken, lost, len(eligible), held_by_others)

    def _take(self, shard_id: str, from_owner: str | None) -> list[Lease]:
        """Take a free or expired lease, or the one `from_owner` holds (stealing). Taking a
        lease this owner already holds succeeds too: a retry after a lost reply."""
        rows = self._execute(
            f"UPDATE {SHARDS} SET owner = %s, leases_taken = leases_taken + 1, "
            "lease_expires = clock_timestamp() + %s * interval '1 second', "
            "updated_at = clock_timestamp() "
            "WHERE stream = %s AND shard_id = %s AND state <> 'finished' AND (owner IS NULL "
            "OR lease_expires <= clock_timestamp() OR owner = %s OR owner = %s) "
            "RETURNING checkpoint, checkpoint_sub",
            (self.owner, self.lease_seconds, self.stream, shard_id, from_owner or "", self.owner),
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
    """Every shard the table knows for `stream`, for status and peek: an owner is shown until
    it gives the lease back, expired or not, with the seconds since it last renewed."""
    with database_errors(connection, f"cannot read {SHARDS}"):
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT shard_id, parents, state, checkpoint::text, checkpoint_sub, owner, "
                "lease_expires, extract(epoch FROM clock_timestamp() - updated_at)::float8 "
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
            "checkpoint": None
            if checkpoint is None
            else checkpoint + ("" if sub < 0 else f"/{sub}"),
            "lease_expires": expires.isoformat() if owner and expires else None,
            "renewed_seconds_ago": round(age, 1) if owner else None,
        }
        for shard_id, parents, state, checkpoint, sub, owner, expires, age in rows
    ]
