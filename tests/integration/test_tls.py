"""`rediss://` URLs: the store speaks TLS and verifies the server's certificate."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from oppscan.model import ScanParams, now_iso
from oppscan.storage import EmbeddedRedis, Keys, NewScan, StoreUnavailable, open_store
from tests.support.tls import TlsFront, make_certificates

PARAMS = ScanParams(("momentum",), ("BTC-USD",), "1h")


@pytest.fixture
def tls_redis(redis_server: EmbeddedRedis, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    ca, cert, key = make_certificates(tmp_path)
    assert redis_server.port is not None
    front = TlsFront(redis_server.port, cert, key).start()
    yield front.port, ca
    front.stop()


def test_store_works_over_tls(tls_redis: tuple[int, Path], redis_url: str) -> None:
    """With the CA in the URL, a scan is written and read back over TLS."""
    port, ca = tls_redis
    store = open_store(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}", "oppscan:", 2.0)
    scan = NewScan(Keys().new_scan_id("alice"), "alice", PARAMS, now_iso(), "w:1")
    assert "created" == store.register(scan, 60_000).kind
    stored = store.read(scan.scan_id)
    assert stored is not None
    assert "alice" == stored.user
    store.close()


def test_an_untrusted_certificate_is_refused(tls_redis: tuple[int, Path]) -> None:
    """Without our CA the server's certificate does not verify: the store is unavailable."""
    port, _ = tls_redis
    store = open_store(f"rediss://127.0.0.1:{port}/0", "oppscan:", 2.0)
    with pytest.raises(StoreUnavailable):
        store.ping()
    store.close()
