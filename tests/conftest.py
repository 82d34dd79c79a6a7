"""Shared fixtures: small, seeded data so every test is fast and deterministic."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest

from engage_seq.synthetic import SyntheticEventSource


@pytest.fixture(autouse=True)
def _no_run_reports_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Training runs in other tests skip the run report (3-9 s each on tiny data); the report
    tests (test_report.py) switch it back on for the runs they inspect."""
    monkeypatch.setenv("ENGAGE_SEQ_REPORT", "false")


@pytest.fixture(autouse=True)
def _no_personal_allowed_targets(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite never trusts the developer's own allow-list (environment or user file), so a
    refused target is refused on every machine."""
    monkeypatch.delenv("ENGAGE_SEQ_ALLOWED_TARGETS", raising=False)
    monkeypatch.setenv("ENGAGE_SEQ_ALLOWED_TARGETS_FILE", os.devnull)  # not a file: no names


@pytest.fixture(scope="session")
def tiny_source() -> SyntheticEventSource:
    return SyntheticEventSource(n_users=300, days=70, seed=1)


@pytest.fixture(scope="session")
def tiny_events(tiny_source: SyntheticEventSource) -> pl.DataFrame:
    return tiny_source.scan().collect()


@pytest.fixture()
def isolated_env(tmp_path: Path) -> dict[str, str]:
    """Environment for CLI subprocesses: private cache, no GPU, no progress-bar noise."""
    env = dict(os.environ)
    env["ENGAGE_SEQ_CACHE_DIR"] = str(tmp_path / "cache")
    env["CUDA_VISIBLE_DEVICES"] = ""
    env["PYTHONUNBUFFERED"] = "1"
    return env
