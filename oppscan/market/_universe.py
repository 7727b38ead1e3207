"""Who is who in the synthetic universe: each symbol's role, price level and quirks.

The mix of roles is fixed (so every seed holds every kind of setup); the seed
only decides which symbol plays which role, and the per-symbol constants.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

import numpy as np

VENUES: tuple[str, ...] = ("alpha", "beta", "gamma")

_NAMED: tuple[tuple[str, float], ...] = (
    ("BTC", 90000.0), ("ETH", 3200.0), ("SOL", 190.0), ("BNB", 650.0), ("XRP", 2.2),
    ("ADA", 0.75), ("DOGE", 0.2), ("AVAX", 32.0), ("DOT", 6.5), ("LINK", 20.0),
    ("LTC", 95.0), ("TRX", 0.25), ("ATOM", 7.0), ("UNI", 11.0), ("XLM", 0.35),
    ("NEAR", 4.5), ("APT", 9.0), ("ARB", 0.7), ("OP", 1.8), ("FIL", 5.0),
    ("ICP", 10.0), ("AAVE", 280.0), ("ETC", 24.0), ("INJ", 22.0), ("SUI", 3.5),
    ("SEI", 0.4), ("TIA", 6.0), ("HBAR", 0.25), ("ALGO", 0.3), ("POL", 0.45),
)  # fmt: skip

# (role, direction, pair id): the setups first, so a small universe still has them.
_PLANTED: tuple[tuple[str, int, int], ...] = (
    ("breakout", 1, -1), ("breakout", -1, -1), ("stretched", -1, -1), ("stretched", 1, -1),
    ("rsi_extreme", -1, -1), ("rsi_extreme", 1, -1), ("squeeze", 1, -1), ("squeeze", -1, -1),
    ("turn", 1, -1), ("turn", -1, -1), ("pivot_test", 1, -1), ("pivot_test", -1, -1),
    ("volume_shock", -1, -1), ("residual", 1, -1),
    ("pair_a", 1, 0), ("pair_b", 0, 0), ("pair_a", -1, 1), ("pair_b", 0, 1),
    ("pair_a", 1, 2), ("pair_b", 0, 2),
    ("trend", 1, -1), ("trend", -1, -1), ("trend", 1, -1), ("trend", -1, -1),
    ("trend", 1, -1), ("trend", -1, -1), ("trend", 1, -1),
    ("range", 0, -1), ("range", 0, -1), ("range", 0, -1), ("range", 0, -1),
)  # fmt: skip
_FILLER: tuple[tuple[str, int, int], ...] = (
    ("random", 0, -1),
    ("range", 0, -1),
    ("trend", 1, -1),
    ("random", 0, -1),
    ("trend", -1, -1),
)
_FUNDING = ("rich", "rich", "cheap", "cheap")
_DISLOCATIONS: tuple[tuple[str, float], ...] = (("beta", 0.009), ("gamma", -0.007), ("beta", 0.012))


@dataclass(frozen=True)
class SymbolSpec:
    """The constants behind one symbol's series."""

    symbol: str
    role: str
    direction: int  # +1 / -1 for setups that have a side, else 0
    price: float  # price level at the first generated bar
    vol: float  # multiple of the timeframe's base volatility
    beta: float  # loading on the common market factor
    volume: float  # typical volume per bar
    partner: str | None = None  # pair_a: the pair_b leg it is cointegrated with
    hedge: float = 1.0  # pair_a: log-price loading on the partner
    funding: str = "normal"  # "normal" | "rich" (longs pay) | "cheap" (shorts pay)
    dislocation: tuple[str, float] | None = None  # (venue, relative gap on the last bars)


def stable_rng(*parts: object) -> np.random.Generator:
    """A generator seeded from a stable digest of `parts` (never Python's hash())."""
    key = "|".join(str(part) for part in parts).encode()
    return np.random.default_rng([zlib.crc32(key), len(key)])


def symbol_names(n_symbols: int) -> list[str]:
    named = [f"{base}-USD" for base, _ in _NAMED[:n_symbols]]
    width = max(2, len(str(n_symbols)))
    extra = [f"SYN{i:0{width}d}-USD" for i in range(1, n_symbols - len(named) + 1)]
    return named + extra


def _roles(n_symbols: int) -> list[tuple[str, int, int]]:
    roles = list(_PLANTED[:n_symbols])
    roles += [_FILLER[i % len(_FILLER)] for i in range(n_symbols - len(roles))]
    pair_ids = {pair for role, _, pair in roles if role == "pair_b"}
    # A leg whose partner fell off the end of a small universe trades alone.
    return [("random", 0, -1) if r[0] == "pair_a" and r[2] not in pair_ids else r for r in roles]


def _base_spec(seed: int, symbol: str, role: tuple[str, int, int]) -> SymbolSpec:
    rng = stable_rng(seed, symbol, "spec")
    named = dict(_NAMED).get(symbol.removesuffix("-USD"))
    price = named if named is not None else float(10 ** rng.uniform(-1.0, 3.0))
    return SymbolSpec(
        symbol=symbol,
        role=role[0],
        direction=role[1],
        price=price * float(rng.uniform(0.9, 1.1)),
        vol=float(rng.uniform(0.7, 1.5)),
        beta=float(rng.uniform(0.5, 1.3)),
        volume=float(10 ** rng.uniform(3.0, 6.0)) / price,
        hedge=float(rng.uniform(0.7, 1.3)),
    )


@functools.lru_cache(maxsize=32)
def universe(seed: int, n_symbols: int) -> Mapping[str, SymbolSpec]:
    """Every symbol's spec, by symbol."""
    names = symbol_names(n_symbols)
    roles = _roles(n_symbols)
    rng = stable_rng(seed, n_symbols, "universe")
    order = [names[i] for i in rng.permutation(n_symbols)]
    specs = {name: _base_spec(seed, name, role) for name, role in zip(order, roles, strict=True)}
    partners = {
        role[2]: name for name, role in zip(order, roles, strict=True) if role[0] == "pair_b"
    }
    for name, role in zip(order, roles, strict=True):
        if role[0] == "pair_a":
            specs[name] = replace(specs[name], partner=partners[role[2]])
    picks = [names[i] for i in rng.permutation(n_symbols)]
    for name, funding in zip(picks, _FUNDING, strict=False):
        specs[name] = replace(specs[name], funding=funding)
    for name, gap in zip(reversed(picks), _DISLOCATIONS, strict=False):
        specs[name] = replace(specs[name], dislocation=gap)
    return MappingProxyType(specs)
