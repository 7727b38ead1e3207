"""How log events name a user (`OPPSCAN_LOG_USER`), and the settings that choose it."""

from __future__ import annotations

import pytest

from oppscan.logs import UserField
from oppscan.settings import Settings, SettingsError


def test_a_hashed_user_is_the_same_in_every_event_and_differs_by_secret() -> None:
    """`hash`: one digest per user, stable (so one user's events can be followed),
    keyed by the secret (so a list of names does not reverse it), never the name."""
    one, same, other_key = UserField("hash", "k1"), UserField("hash", "k1"), UserField("hash", "k2")
    assert one("ana") == same("ana")
    assert one("ana") != one("ben")
    assert one("ana") != other_key("ana")
    assert one("ana").startswith("u-")
    assert "ana" not in one("ana")


def test_plain_names_the_user_and_off_leaves_it_out() -> None:
    assert ("ana", None) == (UserField("plain")("ana"), UserField("off")("ana"))


def test_the_log_settings_take_only_their_values() -> None:
    """LOG_USER is hash, plain or off (hash by default); ACCESS_LOG is 1 or 0 (1)."""
    defaults = Settings.from_env({})
    assert ("hash", True) == (defaults.log_user, defaults.access_log)
    chosen = Settings.from_env({"OPPSCAN_LOG_USER": "plain", "OPPSCAN_ACCESS_LOG": "0"})
    assert ("plain", False) == (chosen.log_user, chosen.access_log)
    for bad in ({"OPPSCAN_LOG_USER": "name"}, {"OPPSCAN_ACCESS_LOG": "yes"}):
        with pytest.raises(SettingsError):
            Settings.from_env(bad)
