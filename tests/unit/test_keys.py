"""The key schema: one function per key, one test per key, and the shard layout."""

import pytest
from redis.crc import key_slot

from oppscan.model import is_scan_id
from oppscan.storage.keys import MAX_SHARDS, Keys, shard_of_scan, shard_tag

SCAN_ID = "scan_0123456789abcdef0123456789abcd03"  # in shard 3
S3 = f"{{{shard_tag(3)}}}"


def slot(key: str) -> int:
    return int(key_slot(key.encode()))


def test_scan_key_is_in_the_shard_its_id_names() -> None:
    """A scan's id ends with its shard's number: its key needs nothing else."""
    assert f"oppscan:{S3}:scan:{SCAN_ID}" == Keys().scan(SCAN_ID)


def test_a_new_scan_id_is_an_id_in_the_users_shard() -> None:
    """Ids keep their public form, and land in their user's shard."""
    keys = Keys()
    for user in ("alice", "bob", "carol", "dave", "eve"):
        scan_id = keys.new_scan_id(user)
        assert is_scan_id(scan_id)
        assert keys.shard_of_user(user) == shard_of_scan(scan_id)


def test_every_key_a_users_steps_touch_shares_one_slot() -> None:
    """Register, finish and write-back touch the user's keys, the user's scans and the
    shard's indexes in one script: one slot, as a cluster demands."""
    keys = Keys()
    for user in ("alice", "bob", "a:b:c", "{braces}"):
        shard = keys.shard_of_user(user)
        scan_id = keys.new_scan_id(user)
        together = [
            keys.scan(scan_id),
            keys.dedup(user, "abc123"),
            keys.user_scans(user),
            keys.user_active(user),
            keys.discover_rate(user, 7),
            keys.running(shard),
            keys.pending(shard),
        ]
        assert 1 == len({slot(key) for key in together}), user


def test_a_script_builds_the_same_scan_key() -> None:
    """REGISTER and FINISH build the keys of the user's other scans from the text
    around an id; it is the scan key, whatever the id."""
    keys = Keys()
    assert keys.scan(SCAN_ID) == keys.scan_prefix(shard_of_scan(SCAN_ID)) + SCAN_ID


def test_users_spread_over_the_shards() -> None:
    """A stable hash: 1,600 users fill each of 16 shards near the mean of 100."""
    keys = Keys()
    counts = [0] * keys.shards
    for n in range(1600):
        counts[keys.shard_of_user(f"user{n}")] += 1
    assert min(counts) > 60, counts
    assert max(counts) < 140, counts


@pytest.mark.parametrize(("shards", "masters"), [(16, 3), (16, 4), (64, 3), (64, 5), (8, 2)])
def test_shards_spread_evenly_over_a_clusters_masters(shards: int, masters: int) -> None:
    """Slots split into equal ranges, as `redis-cli --cluster create` assigns them,
    hold the shards within one of each other."""
    bounds = [16384 * (m + 1) // masters for m in range(masters)]
    per_master = [0] * masters
    for shard in range(shards):
        key_slot_now = slot(Keys(shards=shards).running(shard))
        per_master[next(m for m, bound in enumerate(bounds) if key_slot_now < bound)] += 1
    assert max(per_master) - min(per_master) <= 1, per_master


def test_a_text_that_is_no_id_maps_to_shard_zero() -> None:
    """Any path text builds a key (one that does not exist), never an error."""
    assert 0 == shard_of_scan("nope")
    assert 0 == shard_of_scan("x-1")
    assert 0 == shard_of_scan("")
    assert Keys().scan("nope").startswith(f"oppscan:{{{shard_tag(0)}}}:")


def test_shard_count_is_bounded_by_what_an_id_can_name() -> None:
    with pytest.raises(ValueError, match="shards"):
        Keys(shards=MAX_SHARDS + 1)
    with pytest.raises(ValueError, match="shards"):
        Keys(shards=0)


def test_dedup_key_names_user_and_digest() -> None:
    """The dedup pointer is per user and parameter digest, in the user's shard."""
    tag = f"{{{shard_tag(Keys().shard_of_user('alice'))}}}"
    assert f"oppscan:{tag}:dedup:alice:abc123" == Keys().dedup("alice", "abc123")


def test_user_scans_key() -> None:
    """Each user has one index of their scans."""
    tag = f"{{{shard_tag(Keys().shard_of_user('alice'))}}}"
    assert f"oppscan:{tag}:user:alice:scans" == Keys().user_scans("alice")


def test_running_and_pending_indexes_are_one_per_shard() -> None:
    """Owned scans are indexed by lease deadline, queued ones by age, per shard."""
    assert f"oppscan:{S3}:running" == Keys().running(3)
    assert f"oppscan:{S3}:pending" == Keys().pending(3)
    assert 16 == len({Keys().running(s) for s in range(16)})


def test_prefix_is_configurable_and_has_no_double_colon() -> None:
    """A custom prefix is used as given, with no doubled separator."""
    keys = Keys("tenant7:")
    assert keys.scan(SCAN_ID).startswith("tenant7:{")
    assert "::" not in keys.dedup("u", "d") + keys.user_scans("u") + keys.running(0)


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
