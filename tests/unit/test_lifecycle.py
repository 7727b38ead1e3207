"""ScanLifecycle without threads or I/O: every short sequence of events, then the
behaviours each transition exists for."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace

import pytest

from oppscan.actors.lifecycle import (
    TRANSITIONS,
    IllegalTransition,
    Phase,
    ScanLifecycle,
    Step,
)
from oppscan.model import (
    ScanJob,
    ScanParams,
    ScanStatus,
    StrategyResult,
    StrategyStates,
    now_iso,
)
from oppscan.storage import NewScan

NAMES = ("a", "b")


def job(done: tuple[StrategyResult, ...] = ()) -> ScanJob:
    scan = NewScan("scan_" + "f" * 32, "alice", ScanParams(NAMES, ("X",), "1h"), now_iso(), "w:1")
    return replace(scan.job(), done=done)


def ok(name: str) -> StrategyResult:
    return StrategyResult(name, "ok", (), 1)


def started(done: tuple[StrategyResult, ...] = (), cancel: bool = False) -> ScanLifecycle:
    life = ScanLifecycle(job(done))
    for name in life.to_run():
        life.submitted(name)
    life.begin(cancel)
    return life


def take_step(life: ScanLifecycle, answer: str) -> None:
    """What the actor does with the next step, the store answering `answer`."""
    step = life.next_step()
    if step is Step.WAIT:
        return
    if step is Step.STOP:
        life.stop_taken()
    elif answer == "down":
        life.write_failed()
    elif answer == "fenced":
        life.fenced()
    elif step is Step.WRITE_RESULT:
        life.result_written(cancel_requested=answer == "cancel_flag")
    elif step is Step.WRITE_FINAL:
        life.final_written()
    elif step is Step.RELEASE_LEASE:
        life.lease_released()
    elif step is Step.RESTORE:
        life.restored()
    elif step is Step.WRITE_STATES:
        life.states_written()


EVENTS: dict[str, Callable[[ScanLifecycle], object]] = {
    "start a": lambda life: life.started("a"),
    "flush": lambda life: life.flush(),
    "report a": lambda life: life.reported(ok("a")),
    "report b": lambda life: life.reported(ok("b")),
    "fail a": lambda life: life.failed("a", "bad data"),
    "process of b died": lambda life: life.process_died("b", "killed"),
    "cancel": lambda life: life.cancel(),
    "release": lambda life: life.release(()),
    "release now": lambda life: life.release_now(),
    "lease lost": lambda life: life.fenced(),
    "record forgotten": lambda life: life.record_forgotten(),
    "store back": lambda life: life.store_back(),
    "crashed": lambda life: life.crashed(),
    "step": lambda life: take_step(life, "ok"),
    "step, cancel flag": lambda life: take_step(life, "cancel_flag"),
    "step, store down": lambda life: take_step(life, "down"),
    "step, fenced": lambda life: take_step(life, "fenced"),
}


RANK = {"pending": 0, "running": 1, "ok": 2, "error": 2, "skipped": 2, "cancelled": 2}


def check(
    life: ScanLifecycle, before: Phase, outcome: object, durable: int, states: StrategyStates
) -> None:
    assert life.phase is before or life.phase in TRANSITIONS[before]
    assert all(RANK[a] <= RANK[b] for (_, a), (_, b) in zip(states, life.states(), strict=True))
    assert durable <= len(life.durable) <= life.total
    assert outcome is None or outcome == life.outcome
    if life.phase not in (Phase.RUNNING, Phase.RELEASING):
        assert [] == life.unsaved
    step = life.next_step()
    if life.phase.over:
        assert step is (Step.WAIT if life.stopped else Step.STOP)
    else:
        assert step is not Step.STOP
    if life.phase is Phase.FINISHED and life.outcome is not None:
        assert life.outcome[0] is not ScanStatus.COMPLETE or len(life.durable) == life.total


def test_every_sequence_of_four_events_keeps_to_the_diagram() -> None:
    """From a fresh scan, every sequence of four events moves only along the drawn
    arrows, never loses durable progress or changes a decided outcome, and asks for
    STOP exactly once after the end."""
    for events in itertools.product(EVENTS, repeat=4):
        life = started()
        for event in events:
            before, outcome, durable = life.phase, life.outcome, len(life.durable)
            states = life.states()
            EVENTS[event](life)
            check(life, before, outcome, durable, states)


def test_every_phase_is_reached() -> None:
    """The exhaustive walk above is worth something only if it visits every phase."""
    seen = set()
    for events in itertools.product(EVENTS, repeat=4):
        life = started()
        for event in events:
            EVENTS[event](life)
            seen.add(life.phase)
    assert set(Phase) == seen


def test_results_are_written_in_order_then_the_scan_completes() -> None:
    """Each result is written, then the final write, then STOP, then nothing."""
    life = started()
    life.reported(ok("b"))
    life.reported(ok("a"))
    steps = []
    while (step := life.next_step()) is not Step.WAIT:
        steps.append((step, life.unsaved[0].name if life.unsaved else None))
        take_step(life, "ok")
    assert [
        (Step.WRITE_RESULT, "b"),
        (Step.WRITE_RESULT, "a"),
        (Step.WRITE_FINAL, None),
        (Step.STOP, None),
    ] == steps
    assert (Phase.FINISHED, (ScanStatus.COMPLETE, None)) == (life.phase, life.outcome)


def test_a_resumed_scan_with_every_result_durable_closes_at_once() -> None:
    """A successor that finds every strategy recorded writes the final state, nothing else."""
    life = started(done=(ok("a"), ok("b")))
    assert ([], Step.WRITE_FINAL) == (life.to_run(), life.next_step())


def test_a_cancel_found_in_the_record_closes_at_the_next_boundary() -> None:
    """The cancel flag seen on a write closes the scan as cancelled, with what is durable."""
    life = started()
    life.reported(ok("a"))
    take_step(life, "cancel_flag")
    assert (Phase.CLOSING, ScanStatus.CANCELLED, 1) == (
        life.phase,
        life.outcome[0] if life.outcome else None,
        len(life.durable),
    )


def test_a_hand_off_writes_running_results_then_releases_the_lease() -> None:
    """Release waits for the strategies running, writes them, then hands the lease back."""
    life = started()
    life.release(dropped=("b",))
    assert (Phase.RELEASING, Step.WAIT) == (life.phase, life.next_step())
    life.reported(ok("a"))
    take_step(life, "ok")
    assert Step.RELEASE_LEASE == life.next_step()
    take_step(life, "ok")
    assert (Phase.RELEASED, Step.STOP) == (life.phase, life.next_step())


def test_the_last_result_landing_during_a_hand_off_finishes_the_scan() -> None:
    """Nothing is left to hand off: the scan is finished instead."""
    life = started(done=(ok("a"),))
    life.release(())
    life.reported(ok("b"))
    take_step(life, "ok")
    assert (Phase.CLOSING, Step.WRITE_FINAL) == (life.phase, life.next_step())


def test_a_hand_off_with_the_store_down_gives_up_at_once() -> None:
    """A stopping worker whose writes fail does not wait out the hand-off timeout: the
    lease lapses to another worker, which resumes from what Redis holds."""
    life = started()
    life.cancel()
    take_step(life, "down")  # the final write fails
    life.release(())
    assert (Phase.RELEASED, Step.STOP) == (life.phase, life.next_step())


def test_a_write_failing_during_a_hand_off_gives_up_too() -> None:
    """Handing off, a failed write ends the hand-off rather than waiting for a retry."""
    life = started()
    life.release(())
    life.reported(ok("a"))
    life.reported(ok("b"))
    take_step(life, "down")
    assert Phase.RELEASED == life.phase


def test_a_forgotten_record_is_restored_before_anything_else() -> None:
    """After Redis lost the record, the next step restores it, then writing goes on."""
    life = started()
    life.reported(ok("a"))
    life.record_forgotten()
    assert Step.RESTORE == life.next_step()
    take_step(life, "ok")
    assert Step.WRITE_RESULT == life.next_step()


def test_a_process_death_is_retried_once_then_recorded_as_an_error() -> None:
    """The first death of a strategy's process resubmits it; the second records an error."""
    life = started()
    assert True is life.process_died("a", "killed")
    assert False is life.process_died("a", "killed again")
    assert [("a", "error", "killed again")] == [(r.name, r.status, r.error) for r in life.unsaved]


def test_a_failure_while_handing_off_is_left_to_the_successor() -> None:
    """Bad data during a hand-off does not fail the scan here: the successor runs it again."""
    life = started()
    life.release(())
    life.failed("a", "bad data")
    assert (Phase.RELEASING, None) == (life.phase, life.outcome)


def test_an_arrow_not_in_the_diagram_is_refused() -> None:
    """A bug that asks for an undrawn transition raises instead of corrupting the scan."""
    life = started()
    life.fenced()
    with pytest.raises(IllegalTransition):
        life.final_written()


def test_starts_are_written_when_flushed_or_with_the_next_result() -> None:
    """Starts wait for the flush (so that those arriving together make one write),
    and a result's write carries them too."""
    life = started()
    life.started("a")
    life.started("b")
    assert Step.WAIT == life.next_step()
    assert (("a", "running"), ("b", "running")) == life.states()
    life.flush()
    assert Step.WRITE_STATES == life.next_step()
    life.states_written()
    assert Step.WAIT == life.next_step()
    life.reported(ok("a"))
    life.flush()  # nothing started since: no write of its own
    assert Step.WRITE_RESULT == life.next_step()
    assert (("a", "ok"), ("b", "running")) == life.states(writing=life.unsaved[0])


def test_a_result_write_carries_the_starts_not_yet_written() -> None:
    """A start heard before a result is written with it: no separate write follows."""
    life = started()
    life.started("b")
    life.reported(ok("a"))
    life.flush()
    assert Step.WRITE_RESULT == life.next_step()
    assert (("a", "ok"), ("b", "running")) == life.states(writing=life.unsaved[0])
    take_step(life, "ok")
    assert Step.WAIT == life.next_step()


def test_a_successor_keeps_what_its_predecessor_started_running() -> None:
    """A strategy the previous owner had started stays `running` (a state never goes
    back), while the successor runs it again."""
    life = ScanLifecycle(replace(job(), states=(("a", "running"), ("b", "pending"))))
    assert (("a", "running"), ("b", "pending")) == life.states()


def test_a_start_after_the_scan_closed_or_its_result_is_ignored() -> None:
    """No write for a start the scan no longer needs."""
    life = started(done=(ok("a"),))
    life.started("a")
    assert (False, (("a", "ok"), ("b", "pending"))) == (life.starts_unwritten, life.states())
    life.cancel()
    life.started("b")
    life.flush()
    assert Step.WRITE_FINAL == life.next_step()


def test_what_a_scan_never_finished_ends_cancelled() -> None:
    """The final states: outcomes kept, pending and running become `cancelled`."""
    life = started()
    life.started("b")
    life.reported(StrategyResult("a", "skipped", (), 1, "no data"))
    take_step(life, "ok")
    life.cancel()
    assert (("a", "skipped"), ("b", "cancelled")) == life.final_states()
