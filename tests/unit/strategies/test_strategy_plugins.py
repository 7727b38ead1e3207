"""Plugins from the `oppscan.strategies` entry-point group."""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest

from oppscan.strategies import ENTRY_POINT_GROUP, Opportunity, StrategyContext, available_strategies


@dataclass(frozen=True)
class Plugin:
    name: str = "plugin"
    description: str = "a strategy from a plugin"

    def run(self, ctx: StrategyContext) -> Sequence[Opportunity]:
        return []


@dataclass(frozen=True)
class FakeEntryPoint:
    """What `entry_points()` yields: a name and a `load()`."""

    name: str
    target: object

    def load(self) -> object:
        if isinstance(self.target, BaseException):
            raise self.target
        return self.target


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    """The registry is cached per process: rebuild it around each test."""
    available_strategies.cache_clear()
    yield
    available_strategies.cache_clear()


def install(monkeypatch: pytest.MonkeyPatch, *plugins: FakeEntryPoint) -> None:
    """Make `importlib.metadata.entry_points` offer `plugins` in our group only."""

    def entry_points(group: str) -> tuple[FakeEntryPoint, ...]:
        return plugins if group == ENTRY_POINT_GROUP else ()

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)


def test_a_plugin_instance_is_added(monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry point that loads a strategy instance adds it by its name."""
    plugin = Plugin()
    install(monkeypatch, FakeEntryPoint("mine", plugin))
    assert plugin is available_strategies()["plugin"]


def test_a_plugin_class_or_factory_is_called(monkeypatch: pytest.MonkeyPatch) -> None:
    """A class, or a zero-argument factory, is called for the instance."""
    install(
        monkeypatch,
        FakeEntryPoint("cls", Plugin),
        FakeEntryPoint("factory", lambda: Plugin(name="made")),
    )
    assert {"plugin", "made"} <= set(available_strategies())


def test_a_plugin_never_replaces_a_builtin(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A plugin named like a built-in is logged and ignored."""
    install(monkeypatch, FakeEntryPoint("impostor", Plugin(name="momentum")))
    with caplog.at_level(logging.ERROR, logger="oppscan.strategies"):
        strategies = available_strategies()
    assert "Momentum" == type(strategies["momentum"]).__name__
    assert "clashes" in caplog.text


def test_a_broken_plugin_is_logged_and_ignored(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A plugin that fails to import, or is not a strategy, is skipped; the rest load."""
    install(
        monkeypatch,
        FakeEntryPoint("broken", ImportError("no module named 'gone'")),
        FakeEntryPoint("junk", 42),
        FakeEntryPoint("good", Plugin()),
    )
    with caplog.at_level(logging.ERROR, logger="oppscan.strategies"):
        strategies = available_strategies()
    assert 15 == len(strategies)
    assert "plugin" in strategies
    assert "'broken' failed to load" in caplog.text
    assert "'junk'" in caplog.text


def test_the_registry_is_computed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Later calls return the cached mapping, without reading entry points again."""
    first = available_strategies()
    install(monkeypatch, FakeEntryPoint("late", Plugin(name="late")))
    assert first is available_strategies()
