"""Every shell command and Python snippet of README.md and the docs/ pages (in the site's nav
order, `doc_blocks.documents`) runs as written, in order, on tiny data: a documented command
that fails turns CI red.

Blocks run in one temporary folder, in document order, so later blocks use what earlier ones
made (a run folder, `artifacts/purchase_7d.pt`, `events.parquet`). The folder links `.venv`,
`conf`, `cpp`, `scripts`, `notebooks` and `engage_seq` to this checkout, and `.venv/bin` is
first on PATH, so both `.venv/bin/engage-…` and bare `engage-…` resolve; nothing is written
into the repository (its own `artifacts/` and `outputs/` stay untouched).

How a command is treated is written above its block in an HTML comment (grammar in
`tests/helpers/doc_blocks.py`), never guessed here. The rules the harness adds, so "tiny" is
transparent:

* a real `engage-train` gets ``data=synthetic_tiny`` unless it chooses ``data=`` itself, and
  ``trainer=smoke`` unless it chooses ``trainer=`` (group overrides: the command's own
  ``data.…``/``trainer.…`` values still apply on top), and `ENGAGE_SEQ_REPORT=false` so runs
  skip their report (`engage-evaluate` commands build reports explicitly);
* ``tiny: A -> B`` hints in a directive replace text (e.g. 25,000 synthetic users -> 400);
* ``<placeholder>`` paths become the newest (or, if the directive says so, oldest) existing
  path that matches them, with the placeholder read as a glob: what a reader picks as
  "their run";
* ``needs:`` fixtures write the user's own tables (below) that no documented command creates.

Which commands ran and which were composed (CI budget: every real `engage-train` costs ~6 s on
2 cores, mostly torch/Lightning/Hydra start-up) is in the directives, and printed with each
command's time. Ran fully: the plain run, a 2-job `-m` sweep, multi-label, next-event,
multi-task, a GBM baseline, the minimal own-data CSV, the drift walk-through's run, every
export (TorchScript and --pt2), the checksums, engage-score, the Python entry points, every
engage-evaluate, engage-drift, engage-backtest and engage-sweep-report (~105 s on 2 quiet
cores). Composed (Hydra compose of the exact overrides; for a sweep the jobs that cover every
swept value; then the checks train() makes before it reads data): the other engage-train lines
(a Transformer with 3 epochs, the Markov baseline, the smoke run, the mapped CRM export (its
attributes are trained and scored by tests/integration/test_own_data.py), both experiment
presets and
every sweep of docs/experiments.md, incl. Optuna, submitit and SLURM). Skipped,
with reasons printed: `make train`/`make test`, the C++ build, the pytest commands. A
composition failure fails the test like a failed command.
"""

from __future__ import annotations

import importlib
import os
import re
import resource
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from helpers import REPO
from helpers.doc_blocks import (
    PLACEHOLDER,
    Block,
    Command,
    DirectiveError,
    Placeholder,
    documents,
    parse_markdown,
    shell_commands,
)

REPO = REPO
LINKED = (".venv", "conf", "cpp", "scripts", "notebooks", "engage_seq")
COMMAND_TIMEOUT_S = 600
TINY_GROUPS = {"data": "synthetic_tiny", "trainer": "smoke"}


def venv_dir() -> Path:
    """The venv running pytest: `.venv` under `make test`, `.venv-latest` under
    `make test-latest` (not the repo's `.venv` then, or the docs would test the lock)."""
    return Path(sys.prefix)


# ---------------------------------------------------------------- fixtures (`needs:`)


def _tiny_events(days: int = 70) -> pl.DataFrame:
    from engage_seq.synthetic import SyntheticEventSource

    return SyntheticEventSource(n_users=400, days=days, seed=3).scan().collect()


def _crm_export(workdir: Path) -> None:
    """`exports/events/*.parquet` as the own-data example of docs/data.md maps it: CRM column names
    and a categorical device/campaign and a numeric order value (purchases only)."""
    events = _tiny_events()
    rng = np.random.default_rng(0)
    frame = events.select(
        pl.col("user_id").alias("customer_id"),
        pl.col("timestamp").alias("event_time"),
        pl.col("event_type").alias("action"),
        pl.col("channel").alias("touchpoint"),
        pl.Series("device", rng.choice(["ios", "android", "desktop"], events.height)),
        pl.Series("campaign", rng.choice(["spring", "summer", None], events.height)),
        pl.when(pl.col("event_type") == "purchase")
        .then(pl.Series(rng.gamma(2.0, 30.0, events.height)))
        .alias("order_value"),
    )
    (workdir / "exports" / "events").mkdir(parents=True, exist_ok=True)
    frame.write_parquet(workdir / "exports" / "events" / "part-0.parquet")


def _minimal_csv(workdir: Path) -> None:
    """`events.csv` of the README's minimal table: `customer,ts,action`, ISO timestamps, no
    channel column, and the purchase event called `order`."""
    events = _tiny_events()
    events.select(
        pl.col("user_id").alias("customer"),
        pl.col("timestamp").dt.strftime("%Y-%m-%dT%H:%M:%SZ").alias("ts"),
        pl.col("event_type").replace({"purchase": "order"}).alias("action"),
    ).write_csv(workdir / "events.csv")


FIXTURES: dict[str, Callable[[Path], None]] = {
    "exports/events/": _crm_export,
    "events.csv": _minimal_csv,
}


# ---------------------------------------------------------------- running one command


@dataclass
class Outcome:
    block: Block
    command: Command
    status: str  # ran | composed | skipped | FAILED
    seconds: float = 0.0  # wall
    note: str = ""
    # CPU seconds of the command's processes (of composing, in-process): close to what it
    # costs on quiet cores, whatever else shares the machine while the test runs
    cpu: float = 0.0


def workspace(root: Path) -> dict[str, str]:
    """Link the checkout into ``root``; the environment every command runs with."""
    venv = venv_dir()
    for name in LINKED:
        target = venv if name == ".venv" else REPO / name
        if target.exists():
            (root / name).symlink_to(target, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGAGE_SEQ_")}
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
        ENGAGE_SEQ_CACHE_DIR=str(root / ".cache" / "engage_seq"),
        ENGAGE_SEQ_REPORT="false",
        CUDA_VISIBLE_DEVICES="",
        PYTHONUNBUFFERED="1",
        MPLBACKEND="Agg",
    )
    return env


def _natural(path: Path) -> list[object]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", str(path))]


def resolve_placeholders(text: str, rules: dict[str, Placeholder], root: Path) -> str:
    """Each word holding ``<x>`` becomes the newest (or oldest) existing path matching it,
    ``<x>`` read as ``*`` or as the directive's glob. Run folders are named by start time and
    sweep jobs by number, so natural name order is time order."""
    for word in dict.fromkeys(re.findall(r"\S*<[a-z][a-z_]*>\S*", text)):
        prefix, path = "", word
        head, _, rest = word.partition("<")
        if "=" in head:  # key=<path>: only the value is a path
            key, _, path_head = head.rpartition("=")
            prefix, path = f"{key}=", f"{path_head}<{rest}"
        names = PLACEHOLDER.findall(path)
        pattern = path
        for name in names:
            pattern = pattern.replace(name, rules[name].pattern if name in rules else "*")
        picks = {rules[n].pick for n in names if n in rules} or {"newest"}
        matches = sorted(root.glob(pattern), key=_natural)
        if not matches:
            raise FileNotFoundError(f"{word}: nothing matches {pattern} yet")
        chosen = matches[0] if picks == {"oldest"} else matches[-1]
        text = text.replace(word, prefix + str(chosen.relative_to(root)))
    return text


def prepared_text(command: Command, block: Block, root: Path) -> tuple[str, str]:
    """The command as it will run, and a note of what the harness changed."""
    text, notes = command.text, []
    for old, new in command.tiny:
        text = text.replace(old, new)
        notes.append(f"tiny: {old} -> {new}")
    if not block.is_python:  # `<unknown>` in a Python string is text, not a placeholder
        text = resolve_placeholders(text, command.placeholders, root)
    if command.program == "engage-train":
        words = shlex.split(text, comments=True)
        if any(w in ("|", "&&", ";", ">", "<", "||") for w in words):
            raise ValueError("engage-train lines must be plain commands to append tiny settings")
        added = [
            f"{group}={choice}"
            for group, choice in TINY_GROUPS.items()
            if not any(w.startswith(f"{group}=") for w in words)
        ]
        text = shlex.join(words + added)
        if added:
            notes.append("+ " + " ".join(added))
    return text, "; ".join(notes)


def run_command(command: Command, block: Block, root: Path, env: dict[str, str]) -> Outcome:
    started, cpu_before = time.perf_counter(), _children_cpu()
    try:
        text, note = prepared_text(command, block, root)
    except (FileNotFoundError, ValueError) as error:
        return Outcome(block, command, "FAILED", 0.0, str(error))
    if block.is_python:
        argv = [str(venv_dir() / "bin" / "python"), "-c", text]
    else:
        argv = ["bash", "-o", "pipefail", "-c", text]
    try:
        done = subprocess.run(
            argv,
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Outcome(block, command, "FAILED", COMMAND_TIMEOUT_S, "timed out")
    seconds, cpu = time.perf_counter() - started, _children_cpu() - cpu_before
    if done.returncode != command.exit_code:
        tail = (done.stdout[-1500:] + "\n" + done.stderr[-2500:]).strip()
        note = f"exit {done.returncode} (expected {command.exit_code}); {note}\n{tail}"
        return Outcome(block, command, "FAILED", seconds, note, cpu)
    return Outcome(block, command, "ran", seconds, note, cpu)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# ---------------------------------------------------------------- composing engage-train


def _sweep_jobs(
    overrides: list[str], compose_one: Callable[[list[str]], object]
) -> list[list[str]]:
    """The jobs a basic-sweeper multirun would launch: the command line's sweeps crossed with
    a `sweep=` preset's ``hydra.sweeper.params`` (the command line wins, as in Hydra). An
    optimiser sweep (Optuna) samples its jobs at run time: its first job stands for them."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()

    def expand(items: list[str]) -> list[list[str]]:
        batches = BasicSweeper.split_arguments(parser.parse_overrides(items), None)
        return [job for batch in batches for job in batch]

    first = expand(overrides)[0]
    cfg = compose_one(first)
    sweeper = cfg.hydra.sweeper  # type: ignore[attr-defined]
    if not str(sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return [first]
    params = [f"{key}={value}" for key, value in (sweeper.get("params") or {}).items()]
    return expand(params + overrides)


def covering_jobs(jobs: list[list[str]]) -> list[list[str]]:
    """The jobs, in order, that each bring an override no earlier kept job had: every value
    of every swept key is composed at least once (12 jobs of a 2 x 2 x 3 grid -> 5), which is
    what can fail to compose; the remaining combinations only recombine checked values."""
    seen: set[str] = set()
    kept = []
    for job in jobs:
        if not seen.issuperset(job):
            kept.append(job)
            seen.update(job)
    return kept


def compose_train(command: Command) -> tuple[int, int]:
    """Compose an engage-train command's exact overrides (the covering jobs of a multirun)
    and run the checks train() makes before it reads data; returns (composed, jobs)."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from omegaconf import OmegaConf, open_dict

    from engage_seq.common.config_dir import CONF_DIR
    from engage_seq.common.safe_config import check_targets
    from engage_seq.experiments.config_checks import (
        _check_report_segments,
        _check_selected_metrics,
        _report_options,
        _selected,
        sweep_direction_problem,
    )

    args = shlex.split(command.text, comments=True)[1:]
    multirun = any(a in ("-m", "--multirun") for a in args)
    overrides = [a for a in args if a not in ("-m", "--multirun")]
    flags = [a for a in overrides if a.startswith("-")]
    if flags:
        raise ValueError(f"cannot compose flags {flags}")

    def compose_one(job: list[str]):
        return compose("train", overrides=job, return_hydra_config=True)

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3", job_name="doctest"):
        jobs = _sweep_jobs(overrides, compose_one) if multirun else [overrides]
        composed = covering_jobs(jobs)
        for job in composed:
            full = compose_one(job)
            cfg = OmegaConf.create(OmegaConf.to_container(full, resolve=False))
            with open_dict(cfg):
                hydra_cfg = cfg.pop("hydra")
            check_targets(cfg)
            task = instantiate(cfg.task)
            _check_selected_metrics(cfg, task)
            _check_report_segments(cfg, _report_options(cfg))
            for part in ("columns", "sampling", "ingest", "source"):
                instantiate(cfg.data[part])
            direction = hydra_cfg.sweeper.get("direction")
            if multirun and direction is not None:
                problem = sweep_direction_problem(
                    direction, _selected(cfg, "optimized_metric", task)
                )
                if problem:
                    raise ValueError(problem)
                for key in hydra_cfg.sweeper.get("params") or {}:
                    if OmegaConf.select(cfg, key, default=KeyError) is KeyError:
                        raise KeyError(f"hydra.sweeper.params: {key} is not a config key")
    return len(composed), len(jobs)


def compose_command(command: Command, block: Block) -> Outcome:
    started, cpu_before = time.perf_counter(), time.process_time()
    try:
        composed, jobs = compose_train(command)
    except Exception as error:  # any composition or pre-flight error is the finding
        note = f"{type(error).__name__}: {error}"
        return Outcome(block, command, "FAILED", time.perf_counter() - started, note)
    note = f"{composed} of {jobs} jobs (every swept value once)" if jobs > 1 else ""
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_before
    return Outcome(block, command, "composed", seconds, note, cpu)


# ---------------------------------------------------------------- the tests


def _summary(outcomes: list[Outcome]) -> str:
    lines = ["", "doc test: every README/docs command, in order"]
    for o in outcomes:
        first = o.command.text.splitlines()[0]
        text = first if len(first) <= 90 else first[:87] + "..."
        number = f"[{o.command.number}]"
        times = f"{o.seconds:5.1f} s (cpu {o.cpu:5.1f} s)"
        lines.append(f"{o.block.where:<15} {number:<4} {o.status:<8} {times}  {text}")
        if o.note and o.status != "FAILED":
            lines.append(f"{'':<53}{o.note}")
    skipped = [o for o in outcomes if o.status == "skipped"]
    lines += ["", f"skipped ({len(skipped)}):"]
    lines += [f"  {o.block.where} [{o.command.number}] {o.command.reason}" for o in skipped]
    wall, cpu = sum(o.seconds for o in outcomes), sum(o.cpu for o in outcomes)
    lines.append(f"total {wall:.0f} s wall, {cpu:.0f} s CPU")
    return "\n".join(lines)


@pytest.mark.slow
def test_every_documented_command_runs_in_order(tmp_path: Path) -> None:
    blocks = [block for doc in documents(REPO) for block in parse_markdown(doc)]
    env = workspace(tmp_path)
    outcomes: list[Outcome] = []
    for block in blocks:
        for name in block.needs:
            FIXTURES[name](tmp_path)
        for command in block.commands:
            if command.mode == "skip":
                outcomes.append(Outcome(block, command, "skipped"))
            elif command.mode == "compose":
                outcomes.append(compose_command(command, block))
            else:
                outcomes.append(run_command(command, block, tmp_path, env))
    summary = _summary(outcomes)
    print(summary)
    failed = [o for o in outcomes if o.status == "FAILED"]
    details = "\n\n".join(
        f"{o.block.where} [{o.command.number}] {o.command.text.splitlines()[0]}\n{o.note}"
        for o in failed
    )
    assert not failed, f"{len(failed)} documented command(s) failed:\n\n{details}\n{summary}"


def test_every_block_has_a_directive_and_known_fixtures() -> None:
    """Fast: a new README block without a directive fails here in milliseconds."""
    blocks = [block for doc in documents(REPO) for block in parse_markdown(doc)]
    assert blocks
    for block in blocks:
        unknown = [name for name in block.needs if name not in FIXTURES]
        assert not unknown, f"{block.where}: no fixture for {unknown}; add it to FIXTURES"


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces -> hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def test_readme_links_point_at_existing_headings_and_files() -> None:
    for doc in documents(REPO):
        text = doc.read_text()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+://", target):
                continue
            file, _, anchor = target.partition("#")
            linked = doc.parent / file if file else doc
            assert linked.exists(), f"{doc.name}: link to missing file {file}"
            if anchor and linked.suffix == ".md":
                prose = re.sub(r"^```.*?^```", "", linked.read_text(), flags=re.M | re.S)
                headings = re.findall(r"^#+\s+(.*)$", prose, flags=re.M)
                anchors = {_anchor(h) for h in headings}
                assert anchor in anchors, f"{doc.name}: link to missing heading #{anchor}"


_RUNS_IN = re.compile(r"^runs in (docs/\S+\.md)$")


def _words(command: Command) -> tuple[str, ...]:
    """A command as words, comments dropped and the program by its name, so the README's
    ``.venv/bin/engage-train`` and a page's bare ``engage-train`` compare equal."""
    words = shlex.split(command.text, comments=True)
    return (Path(words[0]).name, *words[1:]) if words else ()


def test_readme_examples_are_commands_the_docs_run() -> None:
    """The README's short examples are skipped with `runs in docs/<page>.md`: each of their
    commands must be one that page runs or composes, so the README cannot drift from what is
    tested (and costs the doc test nothing)."""
    examples = [
        (block, _RUNS_IN.match(block.commands[0].reason))
        for block in parse_markdown(REPO / "README.md")
        if block.commands and block.commands[0].mode == "skip"
    ]
    examples = [(block, match) for block, match in examples if match]
    assert examples, "the README has no example blocks marked 'skip: runs in docs/<page>.md'"
    for block, match in examples:
        page = REPO / match.group(1)
        tested = {
            _words(command)
            for page_block in parse_markdown(page)
            for command in page_block.commands
            if command.mode != "skip"
        }
        for command in block.commands:
            assert _words(command) in tested, (
                f"{block.where} [{command.number}] is not a command {match.group(1)} runs or "
                f"composes (copy it from there, word for word): {command.text}"
            )


_DOTTED = re.compile(r"\bengage_seq(?:\.[A-Za-z_]\w*)+")
_FROM_IMPORT = re.compile(r"\bfrom\s+(engage_seq(?:\.\w+)*)\s+import\s+([\w ,]+)")


def _code_text(markdown: str) -> str:
    """What a reader copies: fenced blocks, inline code spans and mkdocstrings ``:::`` lines."""
    fences = re.compile(r"^ {0,3}(`{3,}|~{3,}).*?^ {0,3}\1", flags=re.M | re.S)
    blocks = [m.group(0) for m in fences.finditer(markdown)]
    prose = fences.sub("", markdown)
    spans = re.findall(r"(`+)(.+?)\1", prose, flags=re.S)
    directives = re.findall(r"^:::\s*(\S+)", prose, flags=re.M)
    return "\n".join([*blocks, *(span for _, span in spans), *directives])


def _resolves(name: str) -> bool:
    """Whether ``engage_seq.a.b[.Name…]`` is an importable module or an attribute of one."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name and module_name.startswith(error.name):
                continue  # this prefix is not a module: try a shorter one
            raise  # the module exists but a dependency of it is missing: a real failure
        for attribute in parts[cut:]:
            if not hasattr(obj, attribute):
                return False
            obj = getattr(obj, attribute)
        return True
    return False


def test_every_dotted_name_in_the_docs_resolves() -> None:
    """Module paths move (issue 16): a stale `engage_seq.x.y` in the README or a docs page
    fails here, not in a reader's terminal."""
    stale = []
    for doc in documents(REPO):
        code = _code_text(doc.read_text())
        names = set(_DOTTED.findall(code))
        for module, imported in _FROM_IMPORT.findall(code):  # from engage_seq.x import A as B, C
            names |= {f"{module}.{item.split()[0]}" for item in imported.split(",") if item.strip()}
        names = sorted(names)
        stale += [f"{doc.relative_to(REPO)}: {name}" for name in names if not _resolves(name)]
    assert not stale, "names that neither import nor exist:\n" + "\n".join(stale)


# ---------------------------------------------------------------- the parser itself


def _parse(text: str) -> list[Block]:
    return parse_markdown(Path("DOC.md"), text)


def test_a_block_without_a_directive_is_an_error() -> None:
    with pytest.raises(DirectiveError, match=r"DOC.md:3: ```bash block has no doctest"):
        _parse("# t\n\n```bash\nengage-train\n```\n")
    assert _parse("```\nplain output, not run\n```\n") == []


def test_directives_set_modes_hints_placeholders_and_exit_codes() -> None:
    text = (
        "<!-- doctest: run\n  needs: events.csv\n  2: compose\n  3: skip: needs SLURM\n"
        "  1: tiny: seed=1,2,3 -> seed=1\n  <run> = oldest *_lstm\n"
        "  4: exit: 1\n-->\n"
        "```bash\n# a comment\nengage-train -m model=lstm seed=1,2,3\nengage-train \\\n"
        "    model=gbm\nengage-train hydra/launcher=slurm\nengage-drift x=outputs/runs/<run>\n```\n"
    )
    (block,) = _parse(text)
    assert [c.mode for c in block.commands] == ["run", "compose", "skip", "run"]
    assert block.commands[1].text == "engage-train model=gbm"
    assert block.commands[2].reason == "needs SLURM"
    assert block.commands[0].tiny == [("seed=1,2,3", "seed=1")]
    assert block.commands[3].exit_code == 1 and block.needs == ["events.csv"]
    assert block.commands[3].placeholders["<run>"] == Placeholder("*_lstm", "oldest")


@pytest.mark.parametrize(
    ("directive", "message"),
    [
        ("<!-- doctest: skip -->", "needs a reason"),
        ("<!-- doctest: launch -->", "unknown doctest mode"),
        ("<!-- doctest: run\n  3: compose\n-->", "command 3 does not exist"),
        ("<!-- doctest: compose -->", "only engage-train commands"),
        ("<!-- doctest: run\n  1: tiny: n_users=9 -> n_users=1\n-->", "is not in command 1"),
        ("<!-- doctest: run\n  1: needs: events.csv\n-->", "whole block"),
    ],
)
def test_bad_directives_are_named(directive: str, message: str) -> None:
    with pytest.raises(DirectiveError, match=message):
        _parse(f"{directive}\n```bash\necho hi\n```\n")


def test_a_directive_must_sit_right_above_a_run_block() -> None:
    with pytest.raises(DirectiveError, match="not followed by a code block"):
        _parse("<!-- doctest: run -->\ntext\n```bash\necho\n```\n")
    with pytest.raises(DirectiveError, match="not run; remove it"):
        _parse("<!-- doctest: run -->\n```text\necho\n```\n")
    with pytest.raises(DirectiveError, match="without a block"):
        _parse("<!-- doctest: run -->\n")


def test_shell_commands_are_logical_lines() -> None:
    source = "# c\na \\\n  b  # why\n\nc\n"
    assert shell_commands(source) == ["a b  # why", "c"]


def test_placeholders_pick_the_newest_or_the_oldest_match(tmp_path: Path) -> None:
    for name in ("2026-01-01_10-00-00_lstm", "2026-01-01_10-00-09_gbm", "2026-01-01_10-00-10_lstm"):
        (tmp_path / "outputs" / "runs" / name).mkdir(parents=True)
    text = "engage-export outputs/runs/<run> --out a.pt"
    newest = resolve_placeholders(text, {}, tmp_path)
    assert newest == "engage-export outputs/runs/2026-01-01_10-00-10_lstm --out a.pt"
    oldest = resolve_placeholders(text, {"<run>": Placeholder("*_lstm", "oldest")}, tmp_path)
    assert oldest == "engage-export outputs/runs/2026-01-01_10-00-00_lstm --out a.pt"
    with pytest.raises(FileNotFoundError, match="nothing matches"):
        resolve_placeholders("x outputs/multirun/<time>", {}, tmp_path)


def test_covering_jobs_compose_every_swept_value_once() -> None:
    grid = [[f"model={m}", f"seed={s}"] for m in ("lstm", "gru") for s in (1, 2, 3)]
    assert covering_jobs(grid) == [
        ["model=lstm", "seed=1"],
        ["model=lstm", "seed=2"],
        ["model=lstm", "seed=3"],
        ["model=gru", "seed=1"],
    ]


def test_inline_code_with_backticks_is_not_a_fence() -> None:
    text = "runs every ```` ```bash ```` and\n```` ```python ```` block\n<!-- doctest: run -->\n"
    text += "```bash\necho 1\n```\n"
    (block,) = _parse(text)
    assert block.line == 4


@pytest.mark.parametrize(
    ("command", "error"),
    [
        ("engage-train model=lstmx", "lstmx"),
        ("engage-train -m model=lstm,transformer seed=1,2 monitor=val/accuracy", "does not report"),
        ("engage-train -m sweep=optuna optimized_metric=val/logloss", "direction=minimize"),
        ("engage-train 'data.source._target_=os.system'", "not a class of engage_seq"),
    ],
)
def test_composing_catches_what_engage_train_refuses_before_reading_data(
    command: str, error: str
) -> None:
    with pytest.raises(Exception, match=re.escape(error)):
        compose_train(Command(1, command))


def test_composing_counts_the_jobs_of_a_sweep_preset() -> None:
    assert compose_train(Command(1, "engage-train -m sweep=models_sizes_seeds")) == (5, 12)
    assert compose_train(Command(1, "engage-train task=next_event model=markov")) == (1, 1)
