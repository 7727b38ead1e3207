"""What the master checks before it forks, and the data dir's lock."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from oppscan.startup import DataDirLock, StartError, check_market


def test_a_missing_csv_folder_is_a_start_error(tmp_path: Path) -> None:
    """`csv:DIR` must name a folder; the error says which setting and which folder."""
    with pytest.raises(StartError) as raised:
        check_market(f"csv:{tmp_path / 'nope'}")
    assert f"OPPSCAN_MARKET=csv:{tmp_path / 'nope'}: {tmp_path / 'nope'}: not a directory" in str(
        raised.value
    )


def test_a_csv_folder_without_files_is_a_start_error(tmp_path: Path) -> None:
    """A folder with no SYMBOL.csv could only ever answer empty scans."""
    with pytest.raises(StartError, match=r"no SYMBOL\.csv file"):
        check_market(f"csv:{tmp_path}")


def test_an_unknown_market_is_a_start_error() -> None:
    """Only 'synthetic' and 'csv:DIR' are markets."""
    with pytest.raises(StartError, match=r"expected .synthetic. or .csv:DIRECTORY."):
        check_market("ccxt:binance")


def test_a_second_lock_on_a_data_dir_names_the_holder(tmp_path: Path) -> None:
    """The lock holds the owner's pid; a second one fails saying so."""
    first = DataDirLock(tmp_path).acquire()
    try:
        with pytest.raises(StartError) as raised:
            DataDirLock(tmp_path).acquire()
        assert f"in use by process {os.getpid()}" in str(raised.value)
    finally:
        first.release()
    DataDirLock(tmp_path).acquire().release()  # free again once released
