"""LocalThrottle: a token bucket per venue, driven by a hand-moved clock."""

from __future__ import annotations

import pytest

from oppscan.market.throttle import LocalThrottle


class Clock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def throttle(clock: Clock) -> LocalThrottle:
    return LocalThrottle(clock)


def take(throttle: LocalThrottle, cost: float = 1.0, venue: str = "binance") -> float:
    """10 tokens a second, 5 at most."""
    return throttle.take(venue, cost, per_second=10.0, burst=5.0)


def test_a_full_bucket_sends_a_burst_at_once(throttle: LocalThrottle) -> None:
    """A new venue's bucket is full: `burst` worth of requests wait nothing."""
    assert [0.0] * 5 == [take(throttle) for _ in range(5)]


def test_takers_past_the_burst_queue_up_as_debt(throttle: LocalThrottle) -> None:
    """Past the burst each taker waits one more cost/per_second than the one before."""
    for _ in range(5):
        take(throttle)
    assert [0.1, 0.2, 0.3] == pytest.approx([take(throttle) for _ in range(3)])


def test_the_cost_sets_the_wait(throttle: LocalThrottle) -> None:
    """A request costing 0.4 tokens past an empty bucket waits 0.04 s at 10 tokens/s."""
    take(throttle, cost=5.0)
    assert 0.04 == pytest.approx(take(throttle, cost=0.4))


def test_the_bucket_refills_with_time(throttle: LocalThrottle, clock: Clock) -> None:
    """Once the debt is repaid by the clock, the next request goes at once."""
    for _ in range(7):
        take(throttle)
    clock.now += 0.3  # repays 2 in debt and refills 1
    assert 0.0 == pytest.approx(take(throttle), abs=1e-9)
    assert 0.1 == pytest.approx(take(throttle))


def test_refill_stops_at_the_burst(throttle: LocalThrottle, clock: Clock) -> None:
    """An idle hour leaves `burst` tokens, not an hour's worth."""
    take(throttle)
    clock.now += 3600.0
    waits = [take(throttle) for _ in range(6)]
    assert [0.0] * 5 == waits[:5]
    assert 0.1 == pytest.approx(waits[5])


def test_venues_have_their_own_buckets(throttle: LocalThrottle) -> None:
    """Spending one venue's tokens leaves another's full."""
    for _ in range(8):
        take(throttle, venue="binance")
    assert 0.0 == take(throttle, venue="kraken")


def test_a_hold_off_delays_every_later_request(throttle: LocalThrottle, clock: Clock) -> None:
    """After hold_off(3 s) even a full bucket waits out the 3 s, then goes at the rate."""
    throttle.hold_off("binance", 3.0)
    assert [3.1, 3.2] == pytest.approx([take(throttle), take(throttle)])
    clock.now += 1.0
    assert 2.3 == pytest.approx(take(throttle))


def test_a_hold_off_empties_a_full_bucket(throttle: LocalThrottle, clock: Clock) -> None:
    """Once the pause is over the bucket refills from empty: no burst right after a 429."""
    take(throttle)
    throttle.hold_off("binance", 2.0)
    clock.now += 2.0
    assert 0.1 == pytest.approx(take(throttle))
    clock.now += 0.2
    assert 0.0 == pytest.approx(take(throttle), abs=1e-9)


def test_a_shorter_hold_off_does_not_cut_a_longer_one(throttle: LocalThrottle) -> None:
    """hold_off(5) then hold_off(1): requests still wait the 5 s."""
    throttle.hold_off("binance", 5.0)
    throttle.hold_off("binance", 1.0)
    assert 5.1 == pytest.approx(take(throttle))


def test_a_hold_off_is_per_venue(throttle: LocalThrottle) -> None:
    """One venue's pause does not hold up another."""
    throttle.hold_off("binance", 5.0)
    assert 0.0 == take(throttle, venue="kraken")


def test_a_rate_must_be_positive(throttle: LocalThrottle) -> None:
    """per_second 0 would mean waiting forever: refused."""
    with pytest.raises(ValueError, match="per_second"):
        throttle.take("binance", 1.0, per_second=0.0, burst=1.0)
