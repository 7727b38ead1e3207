"""Typed proxies of the actors: what may be asked or told, with its types.

A pykka proxy builds its methods at run time; these protocols give them the
actor's signatures, so callers are checked like any other code. Calling a
method asks (a future of the reply); `.defer(...)` tells (no reply).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, ParamSpec, Protocol, TypeVar, cast

import pykka

from oppscan.actors.strategy_run import ScanFailure
from oppscan.actors.views import Finished
from oppscan.model import Epoch, ScanJob, StrategyResult
from oppscan.storage import LeaseState

P = ParamSpec("P")
R = TypeVar("R")


class Message(Protocol[P, R]):
    """One method of an actor proxy."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> pykka.Future[R]: ...

    def defer(self, *args: P.args, **kwargs: P.kwargs) -> None: ...


class ScanActorProxy(Protocol):
    @property
    def actor_ref(self) -> pykka.ActorRef[Any]: ...

    cancel: Message[[], None]
    release: Message[[], threading.Event]
    release_now: Message[[], None]
    lost: Message[[], None]
    restore: Message[[], None]
    retry_writes: Message[[], None]
    strategy_started: Message[[str], None]
    flush_starts: Message[[], None]
    strategy_done: Message[[StrategyResult | ScanFailure], None]
    strategy_lost: Message[[str, str], None]


class RegistryProxy(Protocol):
    @property
    def actor_ref(self) -> pykka.ActorRef[Any]: ...

    spawn: Message[[ScanJob, float], None]
    scan_finished: Message[[Finished], None]
    scan_released: Message[[str, Epoch], None]
    leases_checked: Message[[Sequence[LeaseState], float], None]
    store_recovered: Message[[], None]


def scan_proxy(ref: pykka.ActorRef[Any]) -> ScanActorProxy:
    return cast(ScanActorProxy, ref.proxy())


def registry_proxy(ref: pykka.ActorRef[Any]) -> RegistryProxy:
    return cast(RegistryProxy, ref.proxy())
