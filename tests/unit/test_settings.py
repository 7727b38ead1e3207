"""Settings are read once from the environment, with clear errors."""

import sys
from pathlib import Path

import pytest

from oppscan.settings import Settings, SettingsError


def test_defaults_when_nothing_is_set() -> None:
    """With an empty environment oppscan runs embedded on 127.0.0.1:8000 with 2 workers."""
    settings = Settings.from_env({})
    assert (None, "127.0.0.1:8000", 2, 4) == (
        settings.redis_url,
        settings.bind,
        settings.workers,
        settings.threads,
    )
    assert settings.embedded
    assert 3600 == settings.result_ttl
    assert 10.0 == settings.lease_ttl


def test_prefixed_variables_are_read() -> None:
    """Every OPPSCAN_ variable lands in its field."""
    settings = Settings.from_env(
        {
            "OPPSCAN_REDIS_URL": "redis://h:1/0",
            "OPPSCAN_BIND": "0.0.0.0:9000",
            "OPPSCAN_WORKERS": "4",
            "OPPSCAN_THREADS": "8",
            "OPPSCAN_RESULT_TTL": "60",
            "OPPSCAN_LEASE_TTL": "2.5",
            "OPPSCAN_MAX_SCANS_PER_WORKER": "3",
            "OPPSCAN_DATA_DIR": "/tmp/x",
            "OPPSCAN_MARKET": "csv:/data",
            "OPPSCAN_SYNTHETIC_LATENCY_MS": "20",
            "OPPSCAN_REDIS_SHARDS": "64",
        }
    )
    assert 64 == settings.redis_shards
    assert "redis://h:1/0" == settings.redis_url
    assert ("0.0.0.0:9000", 4, 8) == (settings.bind, settings.workers, settings.threads)
    assert (60, 2.5, 3) == (settings.result_ttl, settings.lease_ttl, settings.max_scans_per_worker)
    assert (Path("/tmp/x"), "csv:/data", 20.0) == (
        settings.data_dir,
        settings.market,
        settings.synthetic_latency_ms,
    )


def test_ecosystem_names_are_fallbacks() -> None:
    """REDIS_URL and WEB_CONCURRENCY apply when the OPPSCAN_ names are absent."""
    settings = Settings.from_env({"REDIS_URL": "redis://r/1", "WEB_CONCURRENCY": "6"})
    assert ("redis://r/1", 6) == (settings.redis_url, settings.workers)
    preferred = Settings.from_env({"REDIS_URL": "redis://r/1", "OPPSCAN_REDIS_URL": "redis://o/2"})
    assert "redis://o/2" == preferred.redis_url


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OPPSCAN_WORKERS", "many"),
        ("OPPSCAN_WORKERS", "0"),
        ("OPPSCAN_LEASE_TTL", "-1"),
        ("OPPSCAN_REDIS_SHARDS", "0"),
        ("OPPSCAN_REDIS_SHARDS", "257"),
    ],
)
def test_bad_values_are_rejected_by_name(name: str, value: str) -> None:
    """A value oppscan cannot use is an error that names the variable."""
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_secret_is_generated_once_and_kept(tmp_path: Path) -> None:
    """Without OPPSCAN_SECRET a random secret is created in the data dir and reused."""
    settings = Settings.from_env({"OPPSCAN_DATA_DIR": str(tmp_path)})
    first = settings.resolved_secret()
    assert first == Settings.from_env({"OPPSCAN_DATA_DIR": str(tmp_path)}).resolved_secret()
    assert len(first) >= 32
    assert 0o600 == (tmp_path / "secret").stat().st_mode & 0o777


@pytest.mark.skipif(sys.platform != "linux", reason="the XDG layout is the Linux one")
def test_data_dir_defaults_to_the_users_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without OPPSCAN_DATA_DIR the data dir is the user's (platformdirs): under
    XDG_DATA_HOME when set, else ~/.local/share; never the working directory."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert tmp_path / "home" / ".local" / "share" / "oppscan" == Settings.from_env({}).data_dir
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert (tmp_path / "xdg" / "oppscan", tmp_path / "xdg" / "oppscan") == (
        Settings.from_env({}).data_dir,
        Settings().data_dir,
    )


def test_available_secret_never_creates_one(tmp_path: Path) -> None:
    """`available_secret` is the configured secret, else the data dir's if it exists,
    else None, and leaves the data dir as it found it."""
    empty = Settings.from_env({"OPPSCAN_DATA_DIR": str(tmp_path / "data")})
    assert None is empty.available_secret()
    assert not (tmp_path / "data").exists()
    kept = empty.resolved_secret()
    assert (kept, empty.data_dir / "secret") == (empty.available_secret(), empty.secret_file)
    configured = Settings.from_env({"OPPSCAN_SECRET": "a,b", "OPPSCAN_DATA_DIR": str(tmp_path)})
    assert "a" == configured.available_secret()


def test_configured_secret_wins_and_first_of_several_signs() -> None:
    """OPPSCAN_SECRET may list several secrets; the first one signs."""
    assert "new" == Settings.from_env({"OPPSCAN_SECRET": "new, old"}).resolved_secret()


def test_strategy_timeout_defaults_to_two_minutes() -> None:
    """OPPSCAN_STRATEGY_TIMEOUT is seconds, 120 when unset; zero is refused."""
    assert (120.0, 2.5) == (
        Settings.from_env({}).strategy_timeout,
        Settings.from_env({"OPPSCAN_STRATEGY_TIMEOUT": "2.5"}).strategy_timeout,
    )
    with pytest.raises(SettingsError, match="OPPSCAN_STRATEGY_TIMEOUT"):
        Settings.from_env({"OPPSCAN_STRATEGY_TIMEOUT": "0"})


def test_market_data_settings_are_read() -> None:
    """Symbols in ccxt's unified form, the universe size, fetch limits and ccxt options."""
    settings = Settings.from_env(
        {
            "OPPSCAN_MARKET": "ccxt:binance,kraken",
            "OPPSCAN_SYMBOLS": "BTC/USDT, ETH/USDT",
            "OPPSCAN_UNIVERSE_SIZE": "25",
            "OPPSCAN_FETCH_CONCURRENCY": "8",
            "OPPSCAN_FETCH_TIMEOUT": "20",
            "OPPSCAN_CCXT_CONFIG": '{"binance": {"options": {"defaultType": "spot"}}}',
        }
    )
    assert ("BTC/USDT", "ETH/USDT") == settings.symbols
    assert (25, 8, 20.0) == (
        settings.universe_size,
        settings.fetch_concurrency,
        settings.fetch_timeout,
    )
    assert {"binance": {"options": {"defaultType": "spot"}}} == settings.ccxt_config


def test_api_keys_are_read_for_the_configured_exchanges_only_and_never_shown() -> None:
    """OPPSCAN_<EXCHANGE>_API_KEY/_SECRET/_PASSWORD of the market's exchanges; the
    token secret (OPPSCAN_SECRET) is not mistaken for one; repr shows none."""
    settings = Settings.from_env(
        {
            "OPPSCAN_MARKET": "ccxt:binance,kraken",
            "OPPSCAN_BINANCE_API_KEY": "k-123",
            "OPPSCAN_BINANCE_SECRET": "s-456",
            "OPPSCAN_KRAKEN_PASSWORD": "p-789",
            "OPPSCAN_OKX_API_KEY": "not-configured",
            "OPPSCAN_SECRET": "token-secret-0123456789",
        }
    )
    assert {
        "binance": {"apiKey": "k-123", "secret": "s-456"},
        "kraken": {"password": "p-789"},
    } == settings.ccxt_credentials
    assert not any(value in repr(settings) for value in ("k-123", "s-456", "p-789"))


@pytest.mark.parametrize("value", ["not json", "[1, 2]", '{"binance": 3}'])
def test_bad_ccxt_config_is_rejected_by_name(value: str) -> None:
    """OPPSCAN_CCXT_CONFIG must be a JSON object of objects, by exchange id."""
    with pytest.raises(SettingsError, match="OPPSCAN_CCXT_CONFIG"):
        Settings.from_env({"OPPSCAN_CCXT_CONFIG": value})


def test_cors_origins_are_read_as_given_and_none_by_default() -> None:
    """OPPSCAN_CORS_ORIGINS is a comma-separated list of origins, kept as written; unset, none."""
    settings = Settings.from_env(
        {"OPPSCAN_CORS_ORIGINS": "https://app.example.com, http://localhost:5173"}
    )
    assert ("https://app.example.com", "http://localhost:5173") == settings.cors_origins
    assert () == Settings.from_env({}).cors_origins


@pytest.mark.parametrize(
    "value", ["https://app.example.com/", "app.example.com", "*", "https://a.example.com/ui"]
)
def test_a_cors_origin_that_no_browser_sends_is_rejected(value: str) -> None:
    """An origin with a path, a trailing slash, no scheme or a wildcard would never match."""
    with pytest.raises(SettingsError, match="OPPSCAN_CORS_ORIGINS"):
        Settings.from_env({"OPPSCAN_CORS_ORIGINS": value})


def test_the_client_commands_read_their_url_and_token() -> None:
    """OPPSCAN_URL and OPPSCAN_TOKEN are the service and token of `oppscan scan` and its
    kin; the token never shows in the settings' repr."""
    settings = Settings.from_env({"OPPSCAN_URL": "http://h:9000", "OPPSCAN_TOKEN": "t0k3n"})
    assert ("http://h:9000", "t0k3n") == (settings.url, settings.token)
    assert "t0k3n" not in repr(settings)
    assert (None, None) == (Settings.from_env({}).url, Settings.from_env({}).token)


def test_the_options_digest_tells_endpoints_apart_and_ignores_key_order() -> None:
    """Two configs differing in an endpoint differ; the same config in another key
    order does not."""
    from oppscan.runtime import options_digest

    main = {"binance": {"urls": {"api": {"public": "https://api.binance.com"}}, "x": 1}}
    same = {"binance": {"x": 1, "urls": {"api": {"public": "https://api.binance.com"}}}}
    test = {"binance": {"urls": {"api": {"public": "https://testnet.binance.vision"}}, "x": 1}}
    assert options_digest(main) == options_digest(same)
    assert options_digest(main) != options_digest(test)


def test_a_platform_s_port_is_listened_on_every_interface_unless_bind_is_set() -> None:
    """`PORT` (set by hosting platforms) binds 0.0.0.0 on it; `OPPSCAN_BIND` wins."""
    assert "0.0.0.0:5000" == Settings.from_env({"PORT": "5000"}).bind
    assert "127.0.0.1:9" == Settings.from_env({"PORT": "5000", "OPPSCAN_BIND": "127.0.0.1:9"}).bind
    assert Settings.bind == Settings.from_env({}).bind
    with pytest.raises(SettingsError, match="PORT must be a port number"):
        Settings.from_env({"PORT": "http"})
