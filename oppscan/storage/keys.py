"""Every Redis key oppscan uses, and nothing else builds key strings.

The layout lets every atomic step touch a single hash slot, so one Redis, a
Sentinel deployment and a Redis Cluster all run the same scripts on the same keys.

Shards. The scan keys live in `shards` (default 16) groups, each named by a hash
tag of its own, `{s3.41}`: every key of a shard hashes to one slot. A user
belongs to one shard (a stable hash of the name), and so does everything the
user's steps touch together:

- each of the user's scans (`scan`), whose id ends with its shard's number in
  two hex digits, so that any worker finds a scan's key from its id alone;
- the user's dedup pointers, active set, scan index and discover counter:
  `discover` decides join, reuse, limit or create in one step over them, and
  finishing a scan updates them in the same step as its status;
- the shard's `running` and `pending` indexes: registering, claiming, renewing,
  releasing and finishing move a scan between them atomically with its record.

What spans shards needs no atomicity: a claimer asks every shard for lapsed and
queued scans (one script per shard on a cluster, one for all on a single
server), and renewing groups the leases by shard the same way. Scans of other
users are only ever read by id, and an id names its slot.

The tags spread evenly. Shard i's tag is a text whose slot falls in the 1/256th
of the slot space at the bit-reversed position of i, so shards 0..N-1 sit
evenly apart for any N that is a power of two (and near enough for others):
the 16 shards of a three-master cluster fall 6/5/5 on its masters. The shard
count is fixed for a deployment's life, like the prefix: a user's shard depends
on it, and a changed count leaves the users' dedup pointers, active sets and
indexes behind (their scans stay readable by id).

Market keys are not sharded: each series with its fetch lock, and each
exchange's token bucket, carries a tag of its own and every script on them
touches that one slot.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import re
import secrets
from dataclasses import dataclass

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from oppscan.model import DEFAULT_SHARDS, MAX_SHARDS, SCAN_ID_PREFIX

__all__ = ["DEFAULT_SHARDS", "MAX_SHARDS", "Keys", "shard_of_scan", "shard_tag"]

_HEX2 = re.compile("[0-9a-f]{2}")


@functools.cache
def shard_tag(shard: int) -> str:
    """The hash tag of shard `shard`: its slot lies in the 1/256th of the slot space
    at the bit-reversed position of `shard` (0, 1/2, 1/4, 3/4, 1/8...)."""
    lane = int(f"{shard:08b}"[::-1], 2)
    lane_width = REDIS_CLUSTER_HASH_SLOTS // MAX_SHARDS
    for n in itertools.count():
        tag = f"s{shard}.{n}"
        if key_slot(tag.encode()) // lane_width == lane:
            return tag
    raise AssertionError("unreachable")  # pragma: no cover


def shard_of_scan(scan_id: str) -> int:
    """The shard a scan id names (its last two hex digits); 0 for text that is no id."""
    digits = scan_id[-2:]
    return int(digits, 16) if _HEX2.fullmatch(digits) else 0


@dataclass(frozen=True)
class Keys:
    """Key builder for one prefix (default `oppscan:`) and shard count."""

    prefix: str = "oppscan:"
    shards: int = DEFAULT_SHARDS

    def __post_init__(self) -> None:
        if not 1 <= self.shards <= MAX_SHARDS:
            raise ValueError(f"shards must be 1..{MAX_SHARDS}, not {self.shards}")

    def shard_of_user(self, user: str) -> int:
        """The user's shard: a stable hash of the name (the same in every process)."""
        digest = hashlib.blake2b(user.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") % self.shards

    def new_scan_id(self, user: str) -> str:
        """`scan_`, 120 random bits and the user's shard, in 32 lowercase hex digits."""
        return f"{SCAN_ID_PREFIX}{secrets.token_hex(15)}{self.shard_of_user(user):02x}"

    def _in(self, shard: int) -> str:
        return f"{self.prefix}{{{shard_tag(shard)}}}:"

    def scan(self, scan_id: str) -> str:
        """Hash: everything about one scan (params, status, counts, results)."""
        return f"{self._in(shard_of_scan(scan_id))}scan:{scan_id}"

    def scan_prefix(self, shard: int) -> str:
        """A scan key's text before its id, in `shard` (for scripts that build the keys
        of the user's other scans)."""
        return f"{self._in(shard)}scan:"

    def dedup(self, user: str, params_digest: str) -> str:
        """String: id of the newest scan of `user` with these parameters."""
        return f"{self._in(self.shard_of_user(user))}dedup:{user}:{params_digest}"

    def user_scans(self, user: str) -> str:
        """Sorted set: the user's scan ids scored by creation time."""
        return f"{self._in(self.shard_of_user(user))}user:{user}:scans"

    def user_active(self, user: str) -> str:
        """Set: the user's queued and running scan ids."""
        return f"{self._in(self.shard_of_user(user))}user:{user}:active"

    def discover_rate(self, user: str, window: int) -> str:
        """Counter: the user's discover calls in one fixed window."""
        return f"{self._in(self.shard_of_user(user))}rate:{user}:{window}"

    def running(self, shard: int) -> str:
        """Sorted set: the shard's owned scan ids scored by lease deadline (ms)."""
        return f"{self._in(shard)}running"

    def pending(self, shard: int) -> str:
        """Sorted set: the shard's queued scan ids nobody has claimed, by creation time."""
        return f"{self._in(shard)}pending"

    def series(self, name: str) -> str:
        """String: one fetched market series, encoded (`market/encoding.py`). `name`
        holds the source, the series and its freshness tag, so a new candle (or a
        changed file) is a new key and the old one simply expires."""
        return f"{self.prefix}series:{{{name}}}"

    def series_fetch(self, name: str) -> str:
        """String: the token of the worker fetching that series now (same slot)."""
        return f"{self.prefix}series:{{{name}}}:fetching"

    def throttle(self, venue: str) -> str:
        """Hash: an exchange's token bucket (tokens, at, hold), shared by every worker."""
        return f"{self.prefix}throttle:{{{venue}}}"
