"""The C++ example (cpp/score_artifact.cpp) loads an artifact with libtorch and scores raw
events exactly as Python's predict_events does."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from helpers import REPO
from helpers.prerequisites import require_or_skip

from engage_seq.models.engagement import EngagementModel, ProbabilityModel
from engage_seq.serving.scripted import SERVED_TIME_FEATURES, ServingModule

pytestmark = pytest.mark.slow
REPO = REPO
COMPILER = shutil.which("g++") or shutil.which("clang++")

# user, timestamp, event_type, channel, device and campaign (categorical, in the artifact's
# categorical_attributes order, not alphabetical: issue 20), order_value (numeric); "" = missing
EVENTS = [
    ("a", 1_700_000_000, "view", "web", "ios", "spring", ""),
    ("c_only_later", 1_700_100_000, "view", "web", "ios", "", "1"),  # none before the cutoff
    ("b", 1_700_003_600, "cart", "", "desktop", "news", "12.5"),
    ("a", 1_700_007_200, "purchase", "app", "", "news", "80"),
    ("a", 1_699_990_000, "never-seen", "web", "tv", "spring", "-3"),
    ("b", 1_700_100_000, "view", "email", "ios", "", ""),  # at/after the cutoff: ignored
    ("c_only_later", 1_700_200_000, "cart", "app", "", "spring", ""),
]
CUTOFF = 1_700_100_000


def _artifact(path: Path) -> torch.jit.ScriptModule:
    torch.manual_seed(3)
    vocabulary = {
        "event_type": ["cart", "purchase", "view"],
        "channel": ["app", "email", "web"],
        "cat_campaign": ["news", "none", "spring"],  # key-sorted, as metadata.json stores it
        "cat_device": ["desktop", "ios", "none"],
    }
    model = EngagementModel(
        n_event_ids=5,
        n_channel_ids=5,
        n_time_features=len(SERVED_TIME_FEATURES),
        n_outputs=2,
        max_len=8,
        attribute_sizes=[5, 5],
        n_numeric=1,
        encoder="transformer",
    ).eval()
    module = ServingModule(
        ProbabilityModel(model, ["purchase", "click"]),
        vocabulary,
        ["cat_device", "cat_campaign"],
        [(1.5, 2.0)],
        8,
        list(SERVED_TIME_FEATURES),
    ).eval()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated")
        scripted = torch.jit.script(module)
        torch.jit.save(scripted, str(path))
    return scripted


def test_cpp_program_scores_like_python(tmp_path: Path) -> None:
    require_or_skip(COMPILER, "no C++ compiler (g++ or clang++) on PATH; `.ci/run` installs g++")
    env = {"CXX": COMPILER or "g++", "PATH": "/usr/bin:/bin"}
    subprocess.run(["bash", str(REPO / "cpp" / "build.sh"), sys.executable], check=True,
                   capture_output=True, env=env, timeout=600)  # fmt: skip
    binary = REPO / "cpp" / "build" / "score_artifact"
    scripted = _artifact(tmp_path / "artifact.pt")
    tsv = tmp_path / "events.tsv"
    tsv.write_text("".join("\t".join(map(str, row)) + "\n" for row in EVENTS))
    result = subprocess.run(
        [str(binary), str(tmp_path / "artifact.pt"), str(tsv), str(CUTOFF)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # issue 20: skipped like engage-score skips such users (it aborted), counted, never named
    assert "skipped 1 user with no event before the cutoff 1700100000" in result.stderr
    assert "c_only_later" not in result.stderr
    header, *lines = result.stdout.strip().splitlines()
    assert header.split("\t") == ["user", "purchase", "click"]
    assert [line.split("\t")[0] for line in lines] == ["a", "b"]
    from_cpp = {line.split("\t")[0]: [float(x) for x in line.split("\t")[1:]] for line in lines}

    users = ["a", "b"]  # first-appearance order, as the C++ program reads them
    rows = {u: [r for r in EVENTS if r[0] == u] for u in users}
    with torch.inference_mode():
        expected = scripted.predict_events(
            [[r[2] for r in rows[u]] for u in users],
            [torch.tensor([r[1] for r in rows[u]]) for u in users],
            [[r[3] or None for r in rows[u]] for u in users],
            [[[r[4] or None for r in rows[u]], [r[5] or None for r in rows[u]]] for u in users],
            [
                torch.tensor(
                    [[float(r[6]) if r[6] else math.nan] for r in rows[u]], dtype=torch.float64
                )
                for u in users
            ],
            torch.tensor([CUTOFF, CUTOFF]),
        )
    for i, user in enumerate(users):
        assert from_cpp[user] == pytest.approx(expected[i].tolist(), abs=1e-6)

    early = subprocess.run(  # a cutoff before every event: nothing to score, nothing printed
        [str(binary), str(tmp_path / "artifact.pt"), str(tsv), "1600000000"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert early.returncode == 2 and early.stdout == ""
    assert "no user has an event before the cutoff 1600000000 (2020-09-13 12:26:40 UTC)" in (
        early.stderr
    )
    assert "latest event is at 1700200000 (2023-11-17 05:46:40 UTC): pass a later" in early.stderr

    bad = tmp_path / "bad.tsv"
    bad.write_text("a\t1\tview\n")
    failed = subprocess.run([str(binary), str(tmp_path / "artifact.pt"), str(bad), "5"],
                            capture_output=True, text=True)  # fmt: skip
    assert failed.returncode == 1 and "3 fields, expected 7" in failed.stderr
    bad.write_text("a\tyesterday\tview\tweb\tios\tnews\t1\n")
    failed = subprocess.run([str(binary), str(tmp_path / "artifact.pt"), str(bad), "5"],
                            capture_output=True, text=True)  # fmt: skip
    assert failed.returncode == 1 and "bad.tsv:1: timestamp" in failed.stderr
