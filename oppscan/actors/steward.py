"""The Steward: a worker's housekeeping thread.

It renews every lease this worker holds in one round trip at a third of the
lease TTL, claims scans whose lease lapsed (their owner died) or that wait
queued, and while the store is down probes it so connections re-open without
any request having to fail first.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime

from oppscan.actors.proxies import RegistryProxy
from oppscan.actors.views import Finished, Owned, RegistryView
from oppscan.logs import get_logger
from oppscan.metrics import LEASES, OLDEST_SCAN_SECONDS, REDIS_RECONNECTS
from oppscan.model import new_epoch_tag, parse_iso
from oppscan.settings import Settings
from oppscan.storage import Restored, Store, StoreUnavailable, Written

log = get_logger("oppscan.steward")

TICK = 0.25
RESTART_CLAIM_PAUSE = 2.0  # seconds without claiming lapsed scans after Redis restarted


class Steward:
    def __init__(
        self,
        store: Store,
        registry: RegistryProxy,
        view: RegistryView,
        worker: str,
        settings: Settings,
    ) -> None:
        self._store = store
        self._registry = registry
        self._view = view
        self._worker = worker
        self._lease_ms = settings.lease_ms
        self._renew_every = settings.lease_ttl / 3
        self._max_scans = settings.max_scans_per_worker
        self._timeout = settings.ask_timeout
        self._next_renew = 0.0
        self._unanswered: dict[str, str] = {}  # claims whose answer was lost: scan id -> tag
        self._to_write_back: dict[str, Finished] = {}  # finished here, Redis restarted since
        self._claims_paused_until = 0.0
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name="steward", daemon=True)

    def start(self) -> Steward:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._halt.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._halt.wait(TICK * random.uniform(0.8, 1.2)):  # noqa: S311 - jitter only
            try:
                self.tick()
            except StoreUnavailable:
                pass  # The breaker is open now; the next tick probes.
            except Exception as exc:
                log.exception("steward_error", failure_reason=repr(exc))

    def tick(self) -> None:
        OLDEST_SCAN_SECONDS.set(oldest_age(self._view.owned().values(), time.time()))
        if not self._registry.actor_ref.is_alive():
            # The registry failed: its scans must lapse to other workers, not be renewed
            # by a worker that can no longer run them (it is being replaced).
            return
        if self._store.breaker.is_open and not self._reconnect():
            return
        if self._store.server_restarted():
            # It may hold less than before (empty, or without its last writes). Owners
            # write back first: a lapsed lease is not claimed until they had the time.
            log.warning("store_restarted")
            self._registry.store_recovered.defer()
            self._to_write_back = {f.job.scan_id: f for f in self._view.recently_finished()}
            self._claims_paused_until = time.monotonic() + RESTART_CLAIM_PAUSE
            self._next_renew = 0.0
        if self._to_write_back:
            self._write_back_finished()
        if time.monotonic() >= self._next_renew:
            self._renew()
        if time.monotonic() >= self._claims_paused_until:
            self._claim()

    def _write_back_finished(self) -> None:
        """Scans finished here lately may have lost their final write with the rest:
        write them back as they finished, under the epoch that finished them (an
        owner that took one over since keeps it: the write is fenced off), for what
        is left of their retention. One the store could not take is tried again on
        the next tick; one whose retention ended is let go."""
        for scan_id, finished in list(self._to_write_back.items()):
            left = finished.seconds_left(datetime.now(UTC))
            if left > 0 and not self._written_back(finished, math.ceil(left)):
                continue  # Redis forgot the claim between restore and finish: again
            del self._to_write_back[scan_id]

    def _written_back(self, finished: Finished, ttl: int) -> bool:
        job = finished.job
        restored = self._store.restore(
            job,
            self._worker,
            finished.results,
            finished.final.updated_at,
            self._lease_ms,
            recreate=True,
        )
        if restored is not Restored.WRITTEN:
            return True  # still finished, or another owner's now
        outcome = self._store.finish(finished.final, job.epoch, finished.digest, ttl)
        if outcome is None:
            log.warning("scan_finish_restored", scan_id=job.scan_id, epoch=str(job.epoch))
        return outcome is not Written.FORGOTTEN

    def _reconnect(self) -> bool:
        if not self._store.probe():
            return False
        REDIS_RECONNECTS.inc()  # the breaker logged `store_reconnected` as it closed
        self._registry.store_recovered.defer()
        self._next_renew = 0.0
        return True

    def _renew(self) -> None:
        leases = self._view.leases()
        sent = time.monotonic()
        states = self._store.renew(leases, self._lease_ms)
        self._next_renew = time.monotonic() + self._renew_every
        for state in states:
            if state.forgotten:
                log.warning("lease_forgotten", scan_id=state.scan_id, failure_reason="record_lost")
            elif not state.held:
                log.warning("lease_lost", scan_id=state.scan_id, failure_reason="epoch_superseded")
                LEASES.labels("lost").inc()
        self._registry.leases_checked.defer(states, sent)

    def _claim(self) -> None:
        room = self._max_scans - len(self._view.owned())
        if room <= 0:
            return
        candidates = {sid: tag for sid, tag in self._unanswered.items()}
        for scan_id in self._store.claimable(room):
            candidates.setdefault(scan_id, new_epoch_tag())
        for scan_id, tag in candidates.items():
            if self._claim_one(scan_id, tag):
                room -= 1
                if room <= 0:
                    return

    def _claim_one(self, scan_id: str, tag: str) -> bool:
        """Claim and start a scan. A claim whose answer is lost may have been applied:
        it is sent again with the same tag, which answers the claim it made."""
        sent = time.monotonic()
        self._unanswered[scan_id] = tag
        job = self._store.claim(scan_id, self._worker, self._lease_ms, tag)
        del self._unanswered[scan_id]
        if job is None:
            return False
        log.info(
            "scan_claimed",
            scan_id=scan_id,
            epoch=str(job.epoch),
            resumed=len(job.done),
            failure_reason="lease_lapsed" if job.epoch.number > 1 else "queued",
        )
        LEASES.labels("taken_over" if job.epoch.number > 1 else "claimed").inc()
        self._registry.spawn(job, sent).get(timeout=self._timeout)
        return True


def oldest_age(owned: Iterable[Owned], now: float) -> float:
    """Seconds since the oldest of these scans was created (0 for none)."""
    created = [parse_iso(o.created_at).timestamp() for o in owned if o.created_at]
    return max(0.0, now - min(created)) if created else 0.0
