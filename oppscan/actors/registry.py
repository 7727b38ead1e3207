"""RegistryActor: the one writer of which scans this worker runs.

It starts scan actors, hears when they finish or give their scan up, and
applies lease renewals; after each change it publishes the owned scans to its
`RegistryView`, which request threads read without asking. It never touches
Redis, so a slow store cannot delay answers for scans owned here.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from types import TracebackType

import pykka

from oppscan.actors.proxies import RegistryProxy, registry_proxy, scan_proxy
from oppscan.actors.scan import Registrar, ScanActor, ScanDeps, first_snapshot
from oppscan.actors.views import Finished, Owned, RegistryView, SnapshotCell
from oppscan.logs import get_logger
from oppscan.metrics import SCANS_RUNNING
from oppscan.model import Epoch, ScanJob
from oppscan.storage import LeaseState

log = get_logger("oppscan.registry")

# How long a scan finished here is kept to be written back after a Redis restart: its
# final write may be among the last writes a crashed Redis lost, and a restart may
# be noticed only once an outage ends.
FINISHED_KEPT = 120.0
FINISHED_KEPT_MAX = 256  # and no more than these, newest kept


class Told:
    """The Registrar scan actors get: tells, so a failed handler reaches `on_failure`."""

    def __init__(self, proxy: RegistryProxy) -> None:
        self._proxy = proxy

    def scan_finished(self, finished: Finished) -> None:
        with contextlib.suppress(pykka.ActorDeadError):  # the worker is stopping
            self._proxy.scan_finished.defer(finished)

    def scan_released(self, scan_id: str, epoch: Epoch) -> None:
        with contextlib.suppress(pykka.ActorDeadError):
            self._proxy.scan_released.defer(scan_id, epoch)


class RegistryActor(pykka.ThreadingActor):
    def __init__(
        self,
        view: RegistryView,
        deps_for: Callable[[Registrar], ScanDeps],
        lease_ttl: float = 10.0,
        on_failure: Callable[[], object] | None = None,
    ) -> None:
        super().__init__()
        self._view = view
        self._failed = on_failure
        self._lease_ttl = lease_ttl
        self._deps_for = deps_for
        self._deps: ScanDeps | None = None
        self._owned: dict[str, Owned] = {}
        self._started: list[pykka.ActorRef[ScanActor]] = []  # every actor, to stop them all

    # -- asked -----------------------------------------------------------

    def spawn(self, job: ScanJob, leased_at: float) -> None:
        """Start the scan's actor here, so its `scan_finished` always finds it adopted.

        `leased_at` is when (monotonic) the request that took the lease was
        sent: the lease surely holds until `leased_at + lease_ttl`. An actor of
        an older epoch of the same scan (this worker's lease lapsed, and it
        claimed the scan again) is fenced first: one scan, one actor.
        """
        if self._deps is None:
            self._deps = self._deps_for(Told(registry_proxy(self.actor_ref)))
        old = self._owned.get(job.scan_id)
        if old is not None and old.epoch == job.epoch:
            return  # the same claim, answered twice
        if old is not None:
            # It may have stopped already, fenced by the new epoch, its news
            # still queued behind this message: then there is nothing to fence.
            with contextlib.suppress(pykka.ActorDeadError):
                old.proxy.lost.defer()
        cell = SnapshotCell(first_snapshot(job))
        ref = ScanActor.start(job, self._deps, cell)
        self._started = [r for r in self._started if r.is_alive()] + [ref]
        try:
            proxy = scan_proxy(ref)
        except pykka.ActorDeadError:
            self._owned.pop(job.scan_id, None)
            return  # Finished already: its `scan_finished` is queued behind this message.
        lease_until = leased_at + self._lease_ttl
        self._owned[job.scan_id] = Owned(proxy, cell, job.epoch, lease_until, job.created_at)
        self._publish()

    # -- told ------------------------------------------------------------

    def scan_finished(self, finished: Finished) -> None:
        self._view.remember(finished.final)
        now = time.monotonic()
        kept = [f for f in self._view.recently_finished() if now - f.at < FINISHED_KEPT]
        self._view.publish_finished([*kept, finished][-FINISHED_KEPT_MAX:])
        self._forget(finished.final.scan_id, finished.job.epoch)

    def scan_released(self, scan_id: str, epoch: Epoch) -> None:
        self._forget(scan_id, epoch)

    def leases_checked(self, states: Sequence[LeaseState], renewed_at: float) -> None:
        """Extend the leases that held; tell owners that lost theirs, whose record
        Redis forgot, or whose scan someone asked to cancel."""
        for state in states:
            owned = self._owned.get(state.scan_id)
            if owned is None or owned.epoch != state.epoch:
                continue  # gone, or spawned again under a newer epoch meanwhile
            if not owned.proxy.actor_ref.is_alive():
                self._owned.pop(state.scan_id)  # stopped without telling: Redis takes over
                continue
            if state.forgotten and renewed_at < owned.lease_until:
                owned.proxy.restore.defer()  # ours until Redis lost it: write it back
            elif not state.held:
                owned.proxy.lost.defer()
                continue
            else:
                until = renewed_at + self._lease_ttl
                self._owned[state.scan_id] = replace(owned, lease_until=until)
            if state.cancel_requested:
                owned.proxy.cancel.defer()
        self._publish()

    def store_recovered(self) -> None:
        """Redis answers again, and may have lost its last writes (a crash, a failover):
        every owner writes its record back, then flushes the writes it kept."""
        for owned in self._owned.values():
            owned.proxy.restore.defer()

    def on_stop(self) -> None:
        """No scan actor outlives its registry (pykka threads would keep the worker alive)."""
        for ref in self._started:
            if ref.is_alive():
                ref.stop(block=False)

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """A bug stopped the registry: scans can no longer start or renew here, so the
        worker asks to be replaced (its leases lapse to the other workers meanwhile)."""
        log.error("registry_failed", failure_reason=repr(exception_value))
        self.on_stop()
        if self._failed is not None:
            self._failed()

    def _forget(self, scan_id: str, epoch: Epoch) -> None:
        """Only the owner of this epoch leaves: an older actor's news leaves its successor."""
        owned = self._owned.get(scan_id)
        if owned is not None and owned.epoch == epoch:
            del self._owned[scan_id]
            self._publish()

    def _publish(self) -> None:
        self._view.publish(self._owned)
        SCANS_RUNNING.set(len(self._owned))
