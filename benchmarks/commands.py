"""Redis commands counted from `INFO commandstats`, net of what the service does on its own.

Each worker's steward claims and renews leases a few times a second, so an idle
window of the same length is measured and its rate subtracted. `INFO` itself,
which only the benchmark sends, is left out. Commands run inside a Lua script
count too, so commands per request bound round trips per request from above.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

import redis


def command_calls(client: redis.Redis) -> Counter[str]:
    stats = client.info("commandstats")
    return Counter(
        {
            name.removeprefix("cmdstat_"): int(row["calls"])
            for name, row in stats.items()
            if name != "cmdstat_info"
        }
    )


@dataclass(frozen=True)
class Window:
    """Commands Redis ran during `seconds`."""

    calls: Counter[str]
    seconds: float

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    @property
    def rate(self) -> float:
        return self.total / self.seconds if self.seconds else 0.0

    def per_request(self, requests: int, idle: Window) -> float:
        """Commands per request, after taking away the idle rate over this window."""
        net = self.total - idle.rate * self.seconds
        return net / requests if requests else 0.0


class Meter:
    """Start, then `stop()` for the commands run since."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._calls = command_calls(client)
        self._started = time.monotonic()

    def stop(self) -> Window:
        calls = command_calls(self._client)
        seconds = time.monotonic() - self._started
        calls.subtract(self._calls)
        return Window(+calls, seconds)


def idle_window(client: redis.Redis, seconds: float) -> Window:
    """What the service runs with no request at all, for `seconds`."""
    meter = Meter(client)
    time.sleep(seconds)
    return meter.stop()
