"""Every Redis key oppscan uses, and nothing else builds key strings.

A scan's own key carries the hash tag `{scan_id}`; indexes span scans and have
no tag. The scripts touch a scan's key together with indexes (and REGISTER and
FINISH build the keys of other scans inside Lua), so they need a single Redis,
or Sentinel in front of one, not Cluster.
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

    def scan_around_id(self) -> tuple[str, str]:
        """The scan key's text before and after the id (for scripts that build it)."""
        before, after = self.scan("\x00").split("\x00")
        return before, after

    def user_active(self, user: str) -> str:
        """Set: the user's queued and running scan ids."""
        return f"{self.prefix}user:{user}:active"

    def discover_rate(self, user: str, window: int) -> str:
        """Counter: the user's discover calls in one fixed window."""
        return f"{self.prefix}rate:{user}:{window}"

    def running(self) -> str:
        """Sorted set: owned scan ids scored by lease deadline (ms)."""
        return f"{self.prefix}running"

    def pending(self) -> str:
        """Sorted set: queued scan ids nobody has claimed, scored by creation time."""
        return f"{self.prefix}pending"

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
