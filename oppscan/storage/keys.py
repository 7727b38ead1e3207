"""Every Redis key oppscan uses, and nothing else builds key strings.

A scan's own key carries the hash tag `{scan_id}` so that its atomic steps stay
in one slot on Redis Cluster. Indexes span scans and have no tag.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    """Key builder for one prefix (default `oppscan:`)."""

    prefix: str = "oppscan:"

    def scan(self, scan_id: str) -> str:
        """Hash: everything about one scan (params, status, counts, results)."""
        return f"{self.prefix}scan:{{{scan_id}}}"

    def dedup(self, user: str, params_digest: str) -> str:
        """String: id of the newest scan of `user` with these parameters."""
        return f"{self.prefix}dedup:{user}:{params_digest}"

    def user_scans(self, user: str) -> str:
        """Sorted set: the user's scan ids scored by creation time."""
        return f"{self.prefix}user:{user}:scans"

    def running(self) -> str:
        """Sorted set: owned scan ids scored by lease deadline (ms)."""
        return f"{self.prefix}running"

    def pending(self) -> str:
        """Sorted set: queued scan ids nobody has claimed, scored by creation time."""
        return f"{self.prefix}pending"
