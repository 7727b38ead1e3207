"""The per-symbol strategies on crafted series: each finds its textbook case."""

from __future__ import annotations

import numpy as np

from oppscan.market.base import FloatArray
from oppscan.strategies import available_strategies
from oppscan.strategies.base import Strategy
from tests.unit.strategies.strategy_fakes import (
    bars_of,
    context,
    found,
    quiet,
    walk,
)


def strategy(name: str) -> Strategy:
    return available_strategies()[name]


def rally(n: int, step: float) -> FloatArray:
    return 100.0 * np.cumprod(np.full(n, 1.0 + step))


def slide_then_rally(rally_bars: int) -> FloatArray:
    """An accelerating slide, then a steady rally of `rally_bars` bars."""
    slide = 100.0 - 0.001 * np.arange(150.0) ** 2
    return np.concatenate([slide, slide[-1] + 0.4 * np.arange(1, rally_bars + 1)])


def test_momentum_rides_a_strong_rally() -> None:
    """A 24-bar rally far beyond the series' own volatility is a long."""
    closes = np.concatenate([quiet(276), rally(24, 0.005)])
    assert [("UP", "long")] == found(strategy("momentum"), context(bars_of("UP", closes)))


def test_momentum_rides_a_strong_slide() -> None:
    """The same move downwards is a short."""
    closes = np.concatenate([quiet(276), rally(24, -0.005)])
    assert [("DOWN", "short")] == found(strategy("momentum"), context(bars_of("DOWN", closes)))


def test_mean_reversion_fades_a_plunge_in_a_range() -> None:
    """A close far below the 20-bar mean of a ranging series is a long, aiming at the mean."""
    closes = quiet(300)
    closes[-1] = 97.0
    opportunities = strategy("mean_reversion").run(context(bars_of("MR", closes)))
    assert [("MR", "long")] == [(o.symbol, o.side) for o in opportunities]
    assert 99.0 < opportunities[0].take_profit < 101.0


def test_mean_reversion_stands_aside_in_a_trend() -> None:
    """A stretched close in a strong trend (ADX above 30) is not faded."""
    closes = np.concatenate([quiet(250), rally(50, 0.004)])
    closes[-1] = closes[-2] * 1.03
    assert [] == found(strategy("mean_reversion"), context(bars_of("TREND", closes)))


def test_donchian_takes_a_fresh_breakout() -> None:
    """A close above the 20-bar high, after a close inside it, is a long."""
    closes = quiet(300)
    closes[-2:] = [100.0, 102.0]
    assert [("BO", "long")] == found(strategy("donchian_breakout"), context(bars_of("BO", closes)))


def test_donchian_takes_a_breakdown() -> None:
    """A close below the 20-bar low is a short."""
    closes = quiet(300)
    closes[-2:] = [100.0, 98.0]
    assert [("BD", "short")] == found(strategy("donchian_breakout"), context(bars_of("BD", closes)))


def test_rsi_reversal_buys_the_recovery_from_oversold() -> None:
    """Ten falling bars then two strong rises: RSI(14) crosses back above 30."""
    slide = np.concatenate([quiet(288), 100.0 * np.cumprod(np.full(10, 0.99))])
    closes = np.concatenate([slide, slide[-1] * np.cumprod([1.02, 1.02])])
    opportunities = strategy("rsi_reversal").run(context(bars_of("RSI", closes)))
    assert [("RSI", "long")] == [(o.symbol, o.side) for o in opportunities]
    assert "back above 30 from oversold" in opportunities[0].signal


def test_rsi_reversal_sells_the_fade_from_overbought() -> None:
    """The mirror image: RSI(14) crosses back below 70."""
    climb = np.concatenate([quiet(288), 100.0 * np.cumprod(np.full(10, 1.01))])
    closes = np.concatenate([climb, climb[-1] * np.cumprod([0.98, 0.98])])
    assert [("RSI", "short")] == found(strategy("rsi_reversal"), context(bars_of("RSI", closes)))


def test_macd_crossover_catches_the_turn() -> None:
    """Two bars into a rally after a slide, MACD crosses above its signal line."""
    ctx = context(bars_of("TURN", slide_then_rally(2)))
    opportunities = strategy("macd_crossover").run(ctx)
    assert [("TURN", "long")] == [(o.symbol, o.side) for o in opportunities]
    assert "on the last bar, below the zero line" in opportunities[0].signal


def test_macd_crossover_catches_the_turn_down() -> None:
    """The mirror image crosses below."""
    closes = 300.0 - slide_then_rally(2)
    assert [("TOP", "short")] == found(strategy("macd_crossover"), context(bars_of("TOP", closes)))


def test_macd_crossover_ignores_an_old_cross() -> None:
    """Ten bars into the rally the cross is stale."""
    assert [] == found(strategy("macd_crossover"), context(bars_of("OLD", slide_then_rally(10))))


def test_ma_crossover_finds_a_golden_cross() -> None:
    """A V whose rally has just lifted SMA(20) above SMA(50) is a long."""
    slide = 100.0 * np.exp(-0.003 * np.arange(200))
    closes = np.concatenate([slide, slide[-1] * np.exp(0.003 * np.arange(1, 24))])
    opportunities = strategy("ma_crossover").run(context(bars_of("GC", closes)))
    assert [("GC", "long")] == [(o.symbol, o.side) for o in opportunities]
    assert "golden cross" in opportunities[0].signal


def test_volatility_squeeze_trades_the_release() -> None:
    """Quiet closes with wide bars (a squeeze), then three strong rises, is a long."""
    closes = np.concatenate([quiet(280, noise=0.0005), 100.0 * np.cumprod([1.01, 1.01, 1.01])])
    ctx = context(bars_of("SQ", closes, wick=0.005))
    assert [("SQ", "long")] == found(strategy("volatility_squeeze"), ctx)


def test_volatility_squeeze_needs_a_squeeze_first() -> None:
    """The same rises out of a random walk are no squeeze release."""
    start = walk(280, sigma=0.005)
    closes = np.concatenate([start, start[-1] * np.cumprod([1.01, 1.01, 1.01])])
    assert [] == found(strategy("volatility_squeeze"), context(bars_of("NO", closes)))


def test_volume_spike_follows_a_heavy_up_bar() -> None:
    """Five times the usual volume on a 1% up bar is a long."""
    closes = quiet(300)
    closes[-1] = closes[-2] * 1.01
    volume = np.full(300, 1000.0)
    volume[-1] = 5000.0
    ctx = context(bars_of("VS", closes, volume=volume))
    assert [("VS", "long")] == found(strategy("volume_spike"), ctx)


def test_volume_spike_needs_a_price_move() -> None:
    """Heavy volume on a bar that goes nowhere says nothing."""
    closes = quiet(300)
    closes[-1] = closes[-2]
    volume = np.full(300, 1000.0)
    volume[-1] = 5000.0
    assert [] == found(strategy("volume_spike"), context(bars_of("VS", closes, volume=volume)))


def support_test() -> FloatArray:
    """A range at 100 with a V down to 95, then a slide back to 95 and a bounce."""
    closes = quiet(300, noise=0.001)
    closes[220:241] = 100.0 - 5.0 * (1.0 - np.abs(np.arange(-10, 11)) / 10.0)
    closes[-9:-1] = np.linspace(closes[-10], 95.2, 8)
    closes[-1] = 95.7
    return closes


def test_support_resistance_buys_a_bounce_off_support() -> None:
    """The bounce off the earlier low is a long with its stop below that low."""
    opportunities = strategy("support_resistance").run(context(bars_of("SR", support_test())))
    assert [("SR", "long")] == [(o.symbol, o.side) for o in opportunities]
    assert opportunities[0].stop_loss < 94.8


def test_support_resistance_sells_a_rejection_at_resistance() -> None:
    """The mirror image: rejected at the earlier high."""
    closes = 200.0 - support_test()
    assert [("RS", "short")] == found(
        strategy("support_resistance"), context(bars_of("RS", closes))
    )


def test_trend_following_joins_a_young_strong_trend() -> None:
    """Forty rising bars out of a range: ADX high and rising, +DI on top."""
    closes = np.concatenate([quiet(250, noise=0.001), rally(40, 0.004)])
    opportunities = strategy("trend_following").run(context(bars_of("TR", closes)))
    assert [("TR", "long")] == [(o.symbol, o.side) for o in opportunities]
    assert "+DI" in opportunities[0].signal.split("over")[0]
