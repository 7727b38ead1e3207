"""RegistryActor: the one writer of which scans this worker runs.

It starts scan actors, hears when they finish or give their scan up, and
applies lease renewals; after each change it publishes the owned scans to its
`RegistryView`, which request threads read without asking. It never touches
Redis, so a slow store cannot delay answers for scans owned here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from types import TracebackType

import pykka

from oppscan.actors.scan import Registrar, ScanActor, ScanDeps, first_snapshot
from oppscan.actors.views import Owned, RegistryView, SnapshotCell
from oppscan.logs import get_logger
from oppscan.metrics import SCANS_RUNNING
from oppscan.model import ScanJob, ScanSnapshot
from oppscan.storage import LeaseState

log = get_logger("oppscan.registry")


class Told:
    """The Registrar scan actors get: tells, so a failed handler reaches `on_failure`."""

    def __init__(self, proxy: pykka.ActorProxy[RegistryActor]) -> None:
        self._proxy = proxy

    def scan_finished(self, snapshot: ScanSnapshot) -> None:
        with contextlib.suppress(pykka.ActorDeadError):  # the worker is stopping
            self._proxy.scan_finished.defer(snapshot)

    def scan_released(self, scan_id: str) -> None:
        with contextlib.suppress(pykka.ActorDeadError):
            self._proxy.scan_released.defer(scan_id)


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

    # -- asked -----------------------------------------------------------

    def spawn(self, job: ScanJob, leased_at: float) -> None:
        """Start the scan's actor here, so its `scan_finished` always finds it adopted.

        `leased_at` is when (monotonic) the request that took the lease was
        sent: the lease surely holds until `leased_at + lease_ttl`.
        """
        if self._deps is None:
            self._deps = self._deps_for(Told(self.actor_ref.proxy()))
        cell = SnapshotCell(first_snapshot(job))
        ref = ScanActor.start(job, self._deps, cell)
        try:
            proxy = ref.proxy()
        except pykka.ActorDeadError:
            return  # Finished already: its `scan_finished` is queued behind this message.
        self._owned[job.scan_id] = Owned(proxy, cell, job.epoch, leased_at + self._lease_ttl)
        self._publish()

    # -- told ------------------------------------------------------------

    def scan_finished(self, snapshot: ScanSnapshot) -> None:
        self._view.remember(snapshot)
        self._forget(snapshot.scan_id)

    def scan_released(self, scan_id: str) -> None:
        self._forget(scan_id)

    def leases_checked(self, states: Sequence[LeaseState], renewed_at: float) -> None:
        """Extend the leases that held; tell owners that lost theirs, or whose scan
        someone asked to cancel."""
        for state in states:
            owned = self._owned.get(state.scan_id)
            if owned is None or owned.epoch != state.epoch:
                continue  # gone, or spawned again under a newer epoch meanwhile
            if not owned.proxy.actor_ref.is_alive():
                self._owned.pop(state.scan_id)  # stopped without telling: Redis takes over
                continue
            if not state.held:
                owned.proxy.lost.defer()
                continue
            until = renewed_at + self._lease_ttl
            self._owned[state.scan_id] = Owned(owned.proxy, owned.cell, owned.epoch, until)
            if state.cancel_requested:
                owned.proxy.cancel.defer()
        self._publish()

    def store_recovered(self) -> None:
        """Redis answers again: every owner flushes the writes it kept."""
        for owned in self._owned.values():
            owned.proxy.retry_writes.defer()

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """A bug stopped the registry: scans can no longer start or renew here, so the
        worker asks to be replaced (its leases lapse to the other workers meanwhile)."""
        log.error("registry_failed", failure_reason=repr(exception_value))
        if self._failed is not None:
            self._failed()

    def _forget(self, scan_id: str) -> None:
        if self._owned.pop(scan_id, None) is not None:
            self._publish()

    def _publish(self) -> None:
        self._view.publish(self._owned)
        SCANS_RUNNING.set(len(self._owned))
