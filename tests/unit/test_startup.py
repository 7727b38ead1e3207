"""What the master checks before it forks, and the data dir's lock."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from oppscan.auth import TokenVerifier
from oppscan.settings import Settings
from oppscan.startup import DataDirLock, StartError, check_market, check_redis_url, ready_text
from oppscan.storage import redis_address
from oppscan.storage.client import ClusterTarget, SentinelTarget


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
    """Only 'synthetic', 'csv:DIR' and 'ccxt:EXCHANGES' are markets."""
    with pytest.raises(StartError, match=r"expected .synthetic., .csv:DIRECTORY. or .ccxt:"):
        check_market("yahoo")


def test_an_unknown_exchange_is_a_start_error() -> None:
    """An exchange id ccxt does not know stops the start, naming it."""
    with pytest.raises(StartError, match=r"OPPSCAN_MARKET=ccxt:nosuch: .*nosuch"):
        check_market("ccxt:nosuch")


def test_an_exchange_is_not_asked_at_start() -> None:
    """A known exchange passes the check without any request (none can be made here)."""
    check_market("ccxt:binance")


@pytest.mark.parametrize(
    "url",
    [
        "redis://:hunter2@127.0.0.1:notaport/0",
        "redis://:hunter2@127.0.0.1:99999/0",
        "http://:hunter2@127.0.0.1/0",
        "redis://:hunter2@127.0.0.1/0?no_such_option=1",
        "redis+sentinel://:hunter2@10.0.0.1:26379,10.0.0.2/mymaster/0",
        "redis+sentinel://:hunter2@10.0.0.1:26379/",
        "redis+sentinel://:hunter2@10.0.0.1:26379/mymaster/zero",
        "redis+sentinel://:hunter2@/mymaster",
        "redis+sentinel://:hunter2@10.0.0.1:26379/mymaster?no_such_option=1",
        "redis+cluster://:hunter2@",
        "redis+cluster://:hunter2@10.0.0.1:7000,10.0.0.2",
        "redis+cluster://:hunter2@10.0.0.1:7000/1",
        "redis+cluster://:hunter2@10.0.0.1:7000?no_such_option=1",
    ],
)
def test_an_unusable_redis_url_is_a_start_error_without_its_password(url: str) -> None:
    """Bad port, scheme or option: one line naming the setting, never the password."""
    with pytest.raises(StartError) as raised:
        check_redis_url(url)
    assert "OPPSCAN_REDIS_URL is not a Redis URL" in str(raised.value)
    assert "hunter2" not in str(raised.value)


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("redis://:hunter2@10.0.0.5:6380/1", "10.0.0.5:6380"),
        ("rediss://user:hunter2@cache.example/0", "cache.example:6379"),
        ("unix:///run/redis.sock?db=2", "/run/redis.sock"),
        (
            "redis+sentinel://app:hunter2@10.0.0.1:26379,10.0.0.2:26380/mymaster/3",
            "sentinel 10.0.0.1:26379,10.0.0.2:26380 master mymaster",
        ),
        (
            "redis+cluster://app:hunter2@10.0.0.1:7000,10.0.0.2:7001",
            "cluster 10.0.0.1:7000,10.0.0.2:7001",
        ),
    ],
)
def test_redis_address_is_host_and_port_only(url: str, address: str) -> None:
    """What logs say about a Redis URL: where it points, not who logs in."""
    assert address == redis_address(url)


def test_a_sentinel_url_names_sentinels_master_database_and_credentials() -> None:
    """Every part of a `redis+sentinel://` URL lands where redis-py's Sentinel takes it."""
    target = SentinelTarget.parse(
        "redis+sentinel://app:p%40ss@10.0.0.1:26379,[::1]:26380/my%20master/3"
        "?sentinel_password=s3cret"
    )
    assert target == SentinelTarget(
        sentinels=(("10.0.0.1", 26379), ("::1", 26380)),
        master="my master",
        db=3,
        username="app",
        password="p@ss",
        sentinel_password="s3cret",
    )
    bare = SentinelTarget.parse("redis+sentinel://10.0.0.1:26379/mymaster")
    assert (0, None, None) == (bare.db, bare.username, bare.password)


def test_a_cluster_url_names_its_nodes_and_credentials() -> None:
    """Every part of a `redis+cluster://` URL lands where redis-py's RedisCluster takes it."""
    target = ClusterTarget.parse("redis+cluster://app:p%40ss@10.0.0.1:7000,[::1]:7001")
    assert ClusterTarget((("10.0.0.1", 7000), ("::1", 7001)), "app", "p@ss") == target
    bare = ClusterTarget.parse("redis+cluster://10.0.0.1:7000/")
    assert ((("10.0.0.1", 7000),), None, None) == (bare.nodes, bare.username, bare.password)


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


def test_ready_text_names_the_data_dir_and_secret_and_gives_an_accepted_token(
    tmp_path: Path,
) -> None:
    """Once it listens, serve says where it listens, where its data and generated
    secret live, and a token for `demo` that its workers accept."""
    settings = Settings.from_env({"OPPSCAN_DATA_DIR": str(tmp_path), "OPPSCAN_BIND": "[::1]:9"})
    lines = ready_text(settings).splitlines()
    assert [
        "oppscan ready at http://[::1]:9",
        f"data:   {tmp_path}",
        f"secret: {tmp_path / 'secret'}",
    ] == lines[:3]
    token = lines[3].removeprefix("demo bearer token: ")
    assert "demo" == TokenVerifier.from_settings(settings).user_of(token)


def test_ready_text_with_a_configured_secret_names_the_variable_not_the_secret(
    tmp_path: Path,
) -> None:
    """With OPPSCAN_SECRET the secret is named by its variable, never shown, and no
    secret file is created."""
    secret = "ready-secret-0123456789abcdef0123456789"
    env = {"OPPSCAN_SECRET": secret, "OPPSCAN_DATA_DIR": str(tmp_path / "data")}
    text = ready_text(Settings.from_env(env))
    assert "secret: OPPSCAN_SECRET (the environment)" == text.splitlines()[2]
    assert secret not in text
    assert not (tmp_path / "data").exists()


def test_ready_text_offers_no_demo_token_when_only_public_keys_verify(tmp_path: Path) -> None:
    """With RS256 only, an HS256 demo token would be refused: none is printed."""
    env = {"OPPSCAN_JWT_ALGORITHMS": "RS256", "OPPSCAN_DATA_DIR": str(tmp_path)}
    last = ready_text(Settings.from_env(env)).splitlines()[-1]
    assert "tokens: RS256, from the identity provider (no demo token)" == last
