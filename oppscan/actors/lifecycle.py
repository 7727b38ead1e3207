"""ScanLifecycle: what an owner of a scan does next, decided without threads or I/O.

The ScanActor feeds it events (a strategy reported, a write landed or failed,
a cancel, a hand-off) and performs the step it asks for; tests drive it alone.

The phases and the only transitions between them::

    RUNNING ──► CLOSING ──► FINISHED        the terminal write landed
       │  ▲        │
       │  │        ├──────► RELEASED        handing off while the store is down
       │  │        │
       ▼  │        └──────► FENCED          another epoch owns the scan
    RELEASING ─────► RELEASED               lease handed back, or left to lapse
       (and RUNNING, RELEASING ─► FENCED; RUNNING ─► RELEASED when the store is down)

- RUNNING: strategies run; each result is written through, in order, and so
  is each strategy's start (the starts that arrive together, in one write).
- RELEASING: the worker stops. Strategies not started are dropped, running ones
  finish and are written, then the lease is handed back. A scan whose last
  result lands meanwhile is closed instead (RELEASING ─► CLOSING).
- CLOSING: the outcome (complete, failed, cancelled) is decided; results that
  were not yet durable are dropped; the final write is due.
- FINISHED, RELEASED, FENCED: the actor stops, and its registry hears why.

Orthogonal to the phase: a write failed (the store is down: wait for the
retry), its answer was lost so Redis may hold it (it is written again before
the final write, so that the final document counts it), and Redis forgot the
owner's claim (write the record back first).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum, StrEnum

from oppscan.model import (
    ScanJob,
    ScanStatus,
    StrategyResult,
    StrategyState,
    StrategyStates,
    initial_states,
)


class Phase(StrEnum):
    RUNNING = "running"
    RELEASING = "releasing"
    CLOSING = "closing"
    FINISHED = "finished"
    RELEASED = "released"
    FENCED = "fenced"

    @property
    def over(self) -> bool:
        return self in (Phase.FINISHED, Phase.RELEASED, Phase.FENCED)


TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.RUNNING: frozenset({Phase.RELEASING, Phase.CLOSING, Phase.RELEASED, Phase.FENCED}),
    Phase.RELEASING: frozenset({Phase.CLOSING, Phase.RELEASED, Phase.FENCED}),
    Phase.CLOSING: frozenset({Phase.FINISHED, Phase.RELEASED, Phase.FENCED}),
    Phase.FINISHED: frozenset(),
    Phase.RELEASED: frozenset(),
    Phase.FENCED: frozenset(),
}


class Step(Enum):
    WAIT = "wait"  # nothing to do until the next event
    RESTORE = "restore"  # write back the record Redis forgot
    WRITE_RESULT = "write_result"  # write `unsaved[0]` (and the states)
    WRITE_STATES = "write_states"  # write which strategies run now
    WRITE_FINAL = "write_final"  # write the terminal status and results
    RELEASE_LEASE = "release_lease"  # hand the lease back
    STOP = "stop"  # tell the registry why, and stop the actor


class IllegalTransition(Exception):
    """A bug: the lifecycle was asked to move where its diagram has no arrow."""


CANCELLED_BY_REQUEST = "cancelled by request"


class ScanLifecycle:
    """The decisions of one owner of one scan (one epoch)."""

    def __init__(self, job: ScanJob) -> None:
        self.phase = Phase.RUNNING
        self.names = job.params.strategies
        self.total = len(self.names)
        self.durable: dict[str, StrategyResult] = {r.name: r for r in job.done}
        self.unsaved: list[StrategyResult] = []
        self.outstanding: set[str] = set()  # submitted, not yet reported
        # Started and not yet durable: by this owner, or by one before it (a state
        # never goes back, and this owner runs them again).
        self.running: set[str] = {
            name for name, state in job.states if state == "running" and name not in self.durable
        }
        self.starts_unwritten = False  # a start Redis does not show yet
        self.states_due = False  # ...and it is time to write it
        self.outcome: tuple[ScanStatus, str | None] | None = None
        self.store_down = False  # a write failed; the next retry tries again
        self.in_doubt = False  # unsaved[0]'s write timed out: Redis may hold it
        self.forgotten = False  # Redis lost this owner's record
        self.handing_off = False  # the worker is stopping
        self.stopped = False  # STOP was taken
        self._resubmitted: set[str] = set()

    # -- what to do next ---------------------------------------------------------

    def next_step(self) -> Step:
        if self.phase.over:
            return Step.WAIT if self.stopped else Step.STOP
        if self.store_down:
            return Step.WAIT
        if self.forgotten:
            return Step.RESTORE
        if self.unsaved:
            return Step.WRITE_RESULT
        if self.states_due and self.phase in (Phase.RUNNING, Phase.RELEASING):
            return Step.WRITE_STATES
        if self.phase is Phase.CLOSING:
            return Step.WRITE_FINAL
        if self.phase is Phase.RELEASING and not self.outstanding:
            return Step.RELEASE_LEASE
        return Step.WAIT

    def to_run(self) -> list[str]:
        """Strategies to submit at the start: those not durable yet."""
        return [name for name in self.names if name not in self.durable]

    def states(self, writing: StrategyResult | None = None) -> StrategyStates:
        """Each strategy's state as the next write records it (with `writing`'s outcome)."""
        done = [*self.durable.values(), *([writing] if writing else [])]
        return tuple(
            (name, "running" if state == "pending" and name in self.running else state)
            for name, state in initial_states(self.names, done)
        )

    def final_states(self) -> StrategyStates:
        """The states a terminal scan keeps: what never ended is `cancelled`."""
        ended: StrategyState = "cancelled"
        return tuple(
            (name, ended if state in ("pending", "running") else state)
            for name, state in initial_states(self.names, tuple(self.durable.values()))
        )

    # -- events: the scan's own ------------------------------------------------

    def begin(self, cancel_requested: bool) -> None:
        """The strategies are submitted: a scan cancelled meanwhile, or resumed with
        every result durable, closes at once."""
        if cancel_requested:
            self.cancel()
        else:
            self._complete_if_done()

    def submitted(self, name: str) -> None:
        self.outstanding.add(name)

    def started(self, name: str) -> None:
        """A strategy began to run: written with the next write, or by `flush`."""
        if self.phase is Phase.RUNNING and name not in self.durable and name not in self.running:
            self.running.add(name)
            self.starts_unwritten = True

    def flush(self) -> None:
        """Write the starts heard so far (the actor asks once the starts that arrived
        together are all in)."""
        self.states_due = self.starts_unwritten

    def reported(self, result: StrategyResult) -> None:
        """A strategy ended (ok, skipped or error): write it, unless nobody needs it."""
        self.outstanding.discard(result.name)
        if self.phase in (Phase.RUNNING, Phase.RELEASING):
            self.unsaved.append(result)

    def failed(self, name: str, error: str) -> None:
        """The data failed in a way that fails the scan. While handing off the
        successor runs the strategy again and fails the scan itself."""
        self.outstanding.discard(name)
        if self.phase is Phase.RUNNING:
            self._close(ScanStatus.FAILED, error)

    def process_died(self, name: str, error: str) -> bool:
        """The process running `name` died; True: submit it once more."""
        if self.phase is Phase.RUNNING and name not in self._resubmitted:
            self._resubmitted.add(name)
            return True
        if self.phase is Phase.RUNNING:
            self.reported(StrategyResult(name, "error", (), 0, error))
        else:
            self.outstanding.discard(name)
        return False

    def cancel(self) -> None:
        if self.phase in (Phase.RUNNING, Phase.RELEASING):
            self._close(ScanStatus.CANCELLED, CANCELLED_BY_REQUEST)

    def crashed(self) -> None:
        """A bug stopped the actor: record the scan as failed while it is still ours."""
        if self.phase in (Phase.RUNNING, Phase.RELEASING):
            self._close(ScanStatus.FAILED, "internal error")

    def give_up(self) -> None:
        """Not even the failure can be recorded: the lease lapses to another worker."""
        if not self.phase.over:
            self._move(Phase.RELEASED)

    # -- events: the worker's ----------------------------------------------------

    def release(self, dropped: Iterable[str]) -> None:
        """The worker stops; `dropped` strategies never started. With the store
        down nothing more can be written: leave the lease to lapse."""
        self.handing_off = True
        self.outstanding.difference_update(dropped)
        if self.phase is Phase.RUNNING:
            self._move(Phase.RELEASING)
        if self.store_down and self.phase in (Phase.RELEASING, Phase.CLOSING):
            self._move(Phase.RELEASED)

    def release_now(self) -> None:
        """The hand-off ran out of time: stop waiting for strategies."""
        self.outstanding.clear()
        self.release(())
        if self.phase is Phase.CLOSING:
            self._move(Phase.RELEASED)

    def fenced(self) -> None:
        """Another epoch owns the scan now: write nothing more."""
        if not self.phase.over:
            self._move(Phase.FENCED)

    def record_forgotten(self) -> None:
        self.forgotten = True

    # -- events: what the store answered ------------------------------------------

    def result_written(self, cancel_requested: bool) -> None:
        result = self.unsaved.pop(0)
        self.durable[result.name] = result
        self.in_doubt = False
        self.states_written()  # the write carried them
        if self.phase is Phase.CLOSING:
            return  # a write in doubt, made sure of before the final one
        if cancel_requested and len(self.durable) < self.total:
            self.cancel()
        else:
            self._complete_if_done()

    def final_written(self) -> None:
        self._move(Phase.FINISHED)

    def lease_released(self) -> None:
        self._move(Phase.RELEASED)

    def states_written(self) -> None:
        self.starts_unwritten = self.states_due = False

    def restored(self) -> None:
        self.forgotten = False
        self.states_written()

    def write_failed(self, maybe_applied: bool = False) -> None:
        """`maybe_applied`: the answer timed out, so Redis may hold the write."""
        self.store_down = True
        self.in_doubt = self.in_doubt or (maybe_applied and bool(self.unsaved))
        if self.handing_off and self.phase in (Phase.RELEASING, Phase.CLOSING):
            self._move(Phase.RELEASED)

    def store_back(self) -> None:
        self.store_down = False

    def stop_taken(self) -> None:
        self.stopped = True

    # -- the one way to change phase ------------------------------------------------

    def _complete_if_done(self) -> None:
        if self.phase in (Phase.RUNNING, Phase.RELEASING) and len(self.durable) == self.total:
            self._close(ScanStatus.COMPLETE, None)

    def _close(self, status: ScanStatus, error: str | None) -> None:
        self._move(Phase.CLOSING)
        self.outcome = (status, error)
        # Results not yet durable are dropped, but one Redis may hold already is
        # written again: the final document must count what Redis counts.
        del self.unsaved[1 if self.in_doubt else 0 :]

    def _move(self, to: Phase) -> None:
        if to not in TRANSITIONS[self.phase]:
            raise IllegalTransition(f"{self.phase.value} -> {to.value}")
        self.phase = to
        if to.over:
            self.unsaved.clear()  # nobody writes them any more
            self.in_doubt = False
