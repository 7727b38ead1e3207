"""Choosing a market from its spec string."""

from __future__ import annotations

from pathlib import Path

import pytest

from oppscan.market import CsvMarket, SyntheticMarket, load_market


def test_synthetic_spec_gives_the_synthetic_market() -> None:
    """'synthetic' is the default seeded market."""
    market = load_market("synthetic")
    assert isinstance(market, SyntheticMarket)
    assert "synthetic" == market.name


def test_csv_spec_gives_a_csv_market_on_that_directory(tmp_path: Path) -> None:
    """'csv:DIR' reads that directory."""
    market = load_market(f"csv:{tmp_path}")
    assert isinstance(market, CsvMarket)
    assert f"csv:{tmp_path}" == market.name


@pytest.mark.parametrize("spec", ["", "yahoo", "csv:", "csv", "synthetic:3"])
def test_other_specs_are_refused(spec: str) -> None:
    """Anything else is a ValueError that says what is accepted."""
    with pytest.raises(ValueError, match="expected 'synthetic' or 'csv:DIRECTORY'"):
        load_market(spec)
