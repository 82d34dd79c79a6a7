"""Properties of the artifact's raw entry point, ``ServingModule.predict_events``, scripted.

tests/unit/serving/test_scripted.py checks the raw entry against the training encoder on
tiny-data users.
These properties cover what a caller may vary freely and the artifact must not notice: how
users are split into calls (padding differs between a batch and a lone user), the order events
and users arrive in, events at or after the cutoff (leakage at serving), and which events
truncation keeps. An untrained, seeded model is enough: a changed input moves its output.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
import pytest
import torch
from helpers.frames import FrameSource
from helpers.untrained_serving import untrained_serving_module
from hypothesis import given, settings
from hypothesis import strategies as st

from engage_seq.data.cache import prepare_samples
from engage_seq.data.sampling import SamplingConfig
from engage_seq.data.schema import ColumnMapping
from engage_seq.data.sequences import TIME_FEATURES
from engage_seq.data.tasks import HorizonTask
from engage_seq.models.engagement import SEQUENCE_ENCODERS
from engage_seq.synthetic import CHANNELS, EVENT_TYPES

# Hypothesis scripts and runs real artifacts for every example (~1 min): the slow tier, still in CI.
pytestmark = pytest.mark.slow

MAX_LEN = 6  # small, so long histories are cheap to generate
MAPPING = ColumnMapping(categorical=("device",), numeric=("order_value",))
T0 = 1_767_225_600  # 2026-01-01 UTC
H = 3600

UNSEEN_KINDS = ("signup_v2", "")  # never in the training vocabulary: the unknown id
KINDS = (*EVENT_TYPES, *UNSEEN_KINDS)
CHANNEL_VALUES = (*CHANNELS, None, "sms")
DEVICES = ("desktop", "ios", "none", None, "smart-tv")
# order values; non-finite ones are missing
VALUES = st.one_of(st.floats(-1e4, 1e4), st.sampled_from([math.nan, math.inf, -math.inf]))
# seconds from the cutoff; the small fixed gaps make ties between events common
GAPS = st.one_of(st.sampled_from([0, 1, H, 6 * H, 86_400]), st.integers(0, 40 * 86_400))

Arguments = tuple[list[Any], list[Any], list[Any], list[Any], list[Any], torch.Tensor]


@dataclass(frozen=True)
class Event:
    kind: str
    ts: int
    channel: str | None
    device: str | None
    value: float


@dataclass(frozen=True)
class User:
    events: tuple[Event, ...]  # in the order the caller sends them
    cutoff: int

    @property
    def before(self) -> list[Event]:
        return [e for e in self.events if e.ts < self.cutoff]


@dataclass(frozen=True)
class Artifact:
    vocabulary: dict[str, list[str]]
    scaling: tuple[float, float]  # mean, std of the signed-log order value
    scripted: dict[str, torch.jit.ScriptModule]


@pytest.fixture(scope="module")
def artifact(tiny_events: pl.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    """Vocabulary and numeric scaling fitted on tiny synthetic data (a categorical device with
    missing values, a numeric order value), one untrained seeded model per encoder, scripted."""
    events = tiny_events.with_columns(
        pl.when(pl.col("channel") == "app")
        .then(pl.lit("ios"))
        .when(pl.col("channel") == "web")
        .then(pl.lit(None, dtype=pl.String))
        .otherwise(pl.lit("desktop"))
        .alias("device"),
        pl.when(pl.col("event_type") == "purchase")
        .then(pl.col("timestamp").dt.second().cast(pl.Float64) * 3.5 - 20.0)
        .alias("order_value"),
    )
    prepared = prepare_samples(
        FrameSource(events),
        HorizonTask(),
        SamplingConfig(max_len=MAX_LEN, n_train_cutoffs=2),
        tmp_path_factory.mktemp("artifact-cache"),
        mapping=MAPPING,
    )
    # the strategies draw known and unseen tokens of every column
    assert set(prepared.vocabulary["event_type"]) == set(EVENT_TYPES)
    assert set(prepared.vocabulary["channel"]) == set(CHANNELS)
    assert set(prepared.vocabulary["cat_device"]) == {"desktop", "ios", "none"}
    scaling = prepared.numeric_scaling["num_order_value"]
    scripted = {}
    for encoder in SEQUENCE_ENCODERS:
        module = untrained_serving_module(prepared, MAX_LEN, encoder)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated")
            scripted[encoder] = torch.jit.script(module)
    return Artifact(prepared.vocabulary, (scaling["mean"], scaling["std"]), scripted)


def arguments(users: Sequence[User]) -> Arguments:
    """Users -> the arguments of predict_events (one categorical, one numeric attribute)."""
    return (
        [[e.kind for e in u.events] for u in users],
        [torch.tensor([e.ts for e in u.events], dtype=torch.long) for u in users],
        [[e.channel for e in u.events] for u in users],
        [[[e.device for e in u.events]] for u in users],
        [torch.tensor([e.value for e in u.events], dtype=torch.float64).view(-1, 1) for u in users],
        torch.tensor([u.cutoff for u in users], dtype=torch.long),
    )


def predict(artifact: Artifact, encoder: str, users: Sequence[User]) -> torch.Tensor:
    return artifact.scripted[encoder].predict_events(*arguments(users))


def reorder(
    events: Sequence[Event], order: Sequence[int], key: Callable[[Event], Hashable]
) -> tuple[Event, ...]:
    """``events`` permuted by ``order``, except that events with equal ``key`` keep their
    relative order (each slot takes the next unused event of its key, in input order)."""
    groups: dict[Hashable, list[Event]] = defaultdict(list)
    for event in events:
        groups[key(event)].append(event)
    queues = {k: iter(group) for k, group in groups.items()}
    return tuple(next(queues[key(events[i])]) for i in order)


def event(ts: int) -> st.SearchStrategy[Event]:
    return st.builds(
        Event,
        st.sampled_from(KINDS),
        st.just(ts),
        st.sampled_from(CHANNEL_VALUES),
        st.sampled_from(DEVICES),
        VALUES,
    )


@st.composite
def users(
    draw: st.DrawFn, min_before: int = 1, max_before: int = MAX_LEN + 4, max_after: int = 2
) -> User:
    """A user with ``min_before..max_before`` events before its cutoff and up to ``max_after``
    at or after it, in arbitrary input order."""
    cutoff = T0 + draw(st.integers(0, 30 * 86_400))
    n_before = draw(st.integers(min_before, max_before))
    n_after = draw(st.integers(0, max_after))
    events = [draw(event(cutoff - 1 - draw(GAPS))) for _ in range(n_before)]
    events += [draw(event(cutoff + draw(GAPS))) for _ in range(n_after)]
    order = draw(st.permutations(range(len(events))))
    return User(tuple(events[i] for i in order), cutoff)


@st.composite
def mixed_batches(draw: st.DrawFn, max_others: int = 4) -> list[User]:
    """A batch that always holds a user longer than the window and a user with one event, so
    the padding of the batch differs from that of its users scored alone."""
    long = draw(users(min_before=MAX_LEN + 1, max_before=MAX_LEN + 5))
    single = draw(users(min_before=1, max_before=1))
    others = draw(st.lists(users(), max_size=max_others))
    return list(draw(st.permutations([long, single, *others])))


INPUTS = ("events", "channels", "attributes", "numeric", "times", "lengths", "aggregates")


def assert_same_inputs(found: tuple[torch.Tensor, ...], expected: tuple[torch.Tensor, ...]) -> None:
    for name, a, b in zip(INPUTS, found, expected, strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("encoder", SEQUENCE_ENCODERS)
@settings(max_examples=20, deadline=None, derandomize=True, database=None)
@given(batch=mixed_batches(), data=st.data())
def test_scores_do_not_depend_on_how_users_are_batched(
    artifact: Artifact, encoder: str, batch: list[User], data: st.DataObject
) -> None:
    together = predict(artifact, encoder, batch)
    sizes: list[int] = []
    while sum(sizes) < len(batch):
        sizes.append(data.draw(st.integers(1, len(batch) - sum(sizes)), label="chunk"))
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    chunked = [
        predict(artifact, encoder, batch[s : s + n]) for s, n in zip(starts, sizes, strict=True)
    ]
    alone = [predict(artifact, encoder, [user]) for user in batch]
    assert together.shape == (len(batch), 1)
    torch.testing.assert_close(torch.cat(chunked), together, atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.cat(alone), together, atol=1e-6, rtol=0)


@pytest.mark.parametrize("encoder", ["lstm", "transformer"])
@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(user=users(), other=users(), data=st.data())
def test_event_order_within_ties_is_all_that_matters(
    artifact: Artifact, encoder: str, user: User, other: User, data: st.DataObject
) -> None:
    order = data.draw(st.permutations(range(len(user.events))), label="order")
    shuffled = User(reorder(user.events, order, key=lambda e: e.ts), user.cutoff)
    module = artifact.scripted[encoder]
    assert_same_inputs(
        module.preprocess_events(*arguments([shuffled, other])),
        module.preprocess_events(*arguments([user, other])),
    )
    torch.testing.assert_close(
        predict(artifact, encoder, [shuffled, other]),
        predict(artifact, encoder, [user, other]),
        atol=1e-6,
        rtol=0,
    )


@pytest.mark.parametrize("encoder", ["lstm", "transformer"])
@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(batch=mixed_batches(), data=st.data())
def test_permuting_users_permutes_the_scores(
    artifact: Artifact, encoder: str, batch: list[User], data: st.DataObject
) -> None:
    perm = data.draw(st.permutations(range(len(batch))), label="perm")
    scores = predict(artifact, encoder, batch)
    permuted = predict(artifact, encoder, [batch[i] for i in perm])
    torch.testing.assert_close(permuted, scores[list(perm)], atol=1e-6, rtol=0)


@st.composite
def with_late_events(draw: st.DrawFn, user: User) -> User:
    """``user`` plus 1-4 arbitrary events at or after its cutoff, at arbitrary positions (the
    events before the cutoff keep their input order)."""
    extra = [draw(event(user.cutoff + draw(GAPS))) for _ in range(draw(st.integers(1, 4)))]
    events = (*user.events, *extra)
    order = draw(st.permutations(range(len(events))))
    return User(reorder(events, order, key=lambda e: e.ts < user.cutoff), user.cutoff)


@pytest.mark.parametrize("encoder", ["lstm", "transformer"])
@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(batch=mixed_batches(max_others=2), data=st.data())
def test_events_at_or_after_the_cutoff_never_matter(
    artifact: Artifact, encoder: str, batch: list[User], data: st.DataObject
) -> None:
    batch = [User(tuple(u.before), u.cutoff) for u in batch]
    late = [data.draw(with_late_events(u), label="with late events") for u in batch]
    for user, extended in zip(batch, late, strict=True):
        assert extended.before == list(user.events) and len(extended.events) > len(user.events)
    module = artifact.scripted[encoder]
    assert_same_inputs(
        module.preprocess_events(*arguments(late)), module.preprocess_events(*arguments(batch))
    )
    torch.testing.assert_close(
        predict(artifact, encoder, late), predict(artifact, encoder, batch), atol=1e-6, rtol=0
    )


def _id(vocabulary: dict[str, list[str]], column: str, token: str | None) -> int:
    """Ids from 2 in vocabulary order, 1 = unknown; None is looked up as ingest's "none"."""
    tokens = vocabulary[column]
    token = "none" if token is None else token
    return tokens.index(token) + 2 if token in tokens else 1


def _scaled(value: float, mean: float, std: float) -> float:
    """clip((signed_log1p(x) - mean) / std, ±5), non-finite (missing) -> 0."""
    if not math.isfinite(value):
        return 0.0
    return min(5.0, max(-5.0, (math.copysign(math.log1p(abs(value)), value) - mean) / std))


def reference_window(
    user: User, artifact: Artifact
) -> list[tuple[int, int, int, float, list[float]]]:
    """Per kept event (oldest first): event, channel and device ids, scaled order value and
    time features; the window is the last MAX_LEN events before the cutoff in time order, ties
    in input order; gaps look back over the whole history."""
    history = sorted(user.before, key=lambda e: e.ts)  # stable: ties keep input order
    rows = []
    last_seen: dict[str, int] = {}
    for i, e in enumerate(history):
        hour = (e.ts % 86_400) / H
        dow = (e.ts // 86_400 + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
        features = {
            "log_gap_h": math.log1p((e.ts - history[i - 1].ts) / H if i else 0.0),
            "log_age_h": math.log1p((user.cutoff - e.ts) / H),
            "log_type_gap_h": math.log1p((e.ts - last_seen[e.kind]) / H)
            if e.kind in last_seen
            else -1.0,
            "hour_sin": math.sin(2 * math.pi * hour / 24),
            "hour_cos": math.cos(2 * math.pi * hour / 24),
            "dow_sin": math.sin(2 * math.pi * dow / 7),
            "dow_cos": math.cos(2 * math.pi * dow / 7),
        }
        last_seen[e.kind] = e.ts
        rows.append(
            (
                _id(artifact.vocabulary, "event_type", e.kind),
                _id(artifact.vocabulary, "channel", e.channel),
                _id(artifact.vocabulary, "cat_device", e.device),
                _scaled(e.value, *artifact.scaling),
                [features[name] for name in TIME_FEATURES],
            )
        )
    return rows[-MAX_LEN:]


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(batch=mixed_batches(max_others=3))
def test_the_window_is_the_most_recent_events_before_the_cutoff(
    artifact: Artifact, batch: list[User]
) -> None:
    found = artifact.scripted["lstm"].preprocess_events(*arguments(batch))
    windows = [reference_window(user, artifact) for user in batch]
    lengths = [len(window) for window in windows]
    assert lengths == [min(len(user.before), MAX_LEN) for user in batch]
    width = max(lengths)
    # right-padded with zeros (id 0 = padding), oldest event first
    expected = (
        torch.zeros(len(batch), width, dtype=torch.long),
        torch.zeros(len(batch), width, dtype=torch.long),
        torch.zeros(len(batch), width, 1, dtype=torch.long),
        torch.zeros(len(batch), width, 1),
        torch.zeros(len(batch), width, len(TIME_FEATURES)),
        torch.tensor(lengths),
        torch.zeros(len(batch), 0),  # the lstm artifact reads no aggregates
    )
    for row, window in enumerate(windows):
        for step, (event_id, channel_id, device_id, value, times) in enumerate(window):
            expected[0][row, step] = event_id
            expected[1][row, step] = channel_id
            expected[2][row, step, 0] = device_id
            expected[3][row, step, 0] = value
            expected[4][row, step] = torch.tensor(times)
    for name, got, want in zip(INPUTS, found, expected, strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape, name
        torch.testing.assert_close(
            got, want, atol=1e-5, rtol=1e-6, msg=lambda m, n=name: f"{n}: {m}"
        )


@settings(max_examples=15, deadline=None, derandomize=True, database=None)
@given(
    others=st.lists(users(), max_size=3),
    empty=users(min_before=0, max_before=0, max_after=3),
    data=st.data(),
)
def test_a_user_with_no_event_before_the_cutoff_is_refused(
    artifact: Artifact, others: list[User], empty: User, data: st.DataObject
) -> None:
    # the documented contract (forward's lengths are 1..max_len; the error says so): no empty
    # history is ever scored, whichever position the user has in the batch
    position = data.draw(st.integers(0, len(others)), label="position")
    batch = [*others[:position], empty, *others[position:]]
    # a ValueError inside TorchScript surfaces as torch.jit.Error (a RuntimeError)
    with pytest.raises(torch.jit.Error, match=f"user {position} has no event before its cutoff"):
        predict(artifact, "lstm", batch)
