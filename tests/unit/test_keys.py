"""The key schema: one function per key, one test per key."""

from oppscan.storage.keys import Keys

SCAN_ID = "scan_0123456789abcdef0123456789abcdef"


def test_scan_key_carries_the_hash_tag() -> None:
    """A scan's hash is tagged with its id so its atomic steps share a slot."""
    assert f"oppscan:scan:{{{SCAN_ID}}}" == Keys().scan(SCAN_ID)


def test_dedup_key_names_user_and_digest() -> None:
    """The dedup pointer is per user and parameter digest."""
    assert "oppscan:dedup:alice:abc123" == Keys().dedup("alice", "abc123")


def test_user_scans_key() -> None:
    """Each user has one index of their scans."""
    assert "oppscan:user:alice:scans" == Keys().user_scans("alice")


def test_running_index_key() -> None:
    """Owned scans are indexed by lease deadline under one key."""
    assert "oppscan:running" == Keys().running()


def test_pending_index_key() -> None:
    """Unclaimed scans are indexed under one key."""
    assert "oppscan:pending" == Keys().pending()


def test_prefix_is_configurable_and_has_no_double_colon() -> None:
    """A custom prefix is used as given, with no doubled separator."""
    keys = Keys("tenant7:")
    assert "tenant7:scan:{x}" == keys.scan("x")
    assert "::" not in keys.dedup("u", "d") + keys.user_scans("u") + keys.running()


def test_series_key_and_its_fetch_lock_share_a_slot() -> None:
    """A series and the lock of its fetch carry the same hash tag: one script writes both."""
    keys = Keys("oppscan:")
    assert "oppscan:series:{synthetic|bars|alpha|BTC-USD|1h|42}" == keys.series(
        "synthetic|bars|alpha|BTC-USD|1h|42"
    )
    assert "oppscan:series:{s}:fetching" == keys.series_fetch("s")


def test_throttle_key_names_the_venue() -> None:
    """One token bucket per exchange."""
    assert "oppscan:throttle:{binance}" == Keys("oppscan:").throttle("binance")
