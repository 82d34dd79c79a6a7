"""The direction of imports (DESIGN §4), checked in fresh interpreters."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO

FORBIDDEN = {
    # data code stays torch-free, so it runs in light environments and in Polars-only jobs
    **{
        f"engage_seq.synthetic{module}": {"torch", "lightning", "hydra"}
        for module in (
            "",
            ".settings",
            ".behaviour",
            ".clocks",
            ".population",
            ".sessions",
            ".events",
            ".drift",
            ".generator",
            ".history",
            ".grids",
            ".posterior",
            ".oracle",
            ".weekly_clock",
            ".customer_base_draw",
            ".customer_base",
            ".customer_base_oracle",
        )
    },
    "engage_seq.data.schema": {"torch", "lightning", "hydra"},
    "engage_seq.common.messages": {"torch", "lightning", "hydra"},
    # config checking runs before Hydra (engage-train) and without it (evaluate, export)
    "engage_seq.common.safe_config": {"torch", "lightning", "hydra"},
    "engage_seq.common.trust": {"torch", "lightning", "hydra", "omegaconf"},
    "engage_seq.common.untrusted_yaml": {"torch", "lightning", "hydra"},
    "engage_seq.data.listing": {"torch", "lightning", "hydra"},
    "engage_seq.data.sequences": {"torch", "lightning", "hydra"},
    "engage_seq.data.tasks": {"torch", "lightning", "hydra"},
    "engage_seq.data.sampling": {"torch", "lightning", "hydra"},
    "engage_seq.data.vocabulary": {"torch", "lightning", "hydra"},
    "engage_seq.data.cache": {"torch", "lightning", "hydra"},
    "engage_seq.data.ingest": {"torch", "lightning", "hydra"},
    "engage_seq.data.validation": {"torch", "lightning", "hydra"},
    "engage_seq.data.id_lists": {"torch", "lightning", "hydra"},
    "engage_seq.data.build": {"torch", "lightning", "hydra"},
    "engage_seq.data.splits": {"torch", "lightning", "hydra"},
    "engage_seq.data.shards": {"torch", "lightning", "hydra"},
    # baselines run where only Polars and numpy are installed (LightGBM is optional, lazy)
    "engage_seq.baselines": {"torch", "lightning", "hydra", "lightgbm"},
    "engage_seq.baselines.gbm": {"torch", "lightning", "hydra", "lightgbm"},
    "engage_seq.baselines.registry": {"torch", "lightning", "hydra", "lightgbm"},
    # metrics score models, baselines and oracles alike, without a Trainer
    "engage_seq.metrics.scores": {"lightning", "hydra", "polars"},
    # exported modules import torch only
    "engage_seq.models.config": {"torch", "lightning", "hydra", "polars"},
    "engage_seq.models.encoders": {"lightning", "hydra", "polars"},
    "engage_seq.models.engagement": {"lightning", "hydra", "polars"},
    # encoding serves training and batch scoring alike: numpy + Polars only
    "engage_seq.data.encoding": {"torch", "lightning", "hydra"},
    # the exported serving module: torch only (it must load without engage_seq)
    "engage_seq.serving.scripted": {"lightning", "hydra", "polars"},
    # export and its parity harness need neither Lightning nor Hydra (Polars runs the
    # training code as the reference for constructed inputs)
    "engage_seq.serving.export": {"lightning", "hydra"},
    "engage_seq.serving.parity": {"lightning", "hydra"},
    # batch scoring: no Lightning, no Hydra (and no model classes, checked below)
    "engage_seq.serving.scoring": {"lightning", "hydra"},
    "engage_seq.serving.scoring_artifact": {"lightning", "hydra"},
    # reading an event table for scoring, and ranking the scores: Polars, no torch (drift too)
    "engage_seq.serving.event_table": {"torch", "lightning", "hydra"},
    "engage_seq.serving.ranking": {"torch", "lightning", "hydra"},
    # the artifact contract and the archive check: the standard library only
    "engage_seq.serving.contract": {"torch", "lightning", "hydra", "polars", "numpy"},
    "engage_seq.serving.archive": {"torch", "lightning", "hydra", "polars", "numpy"},
    # its far-future rule is data code; its output writing needs only the standard library
    "engage_seq.serving.cutoff": {"torch", "lightning", "hydra"},
    "engage_seq.serving.outputs": {"torch", "lightning", "hydra", "polars", "numpy"},
    # monitoring runs next to serving: drift on event tables needs no torch at all (the
    # artifact's scores load it lazily), the backtest only the artifact
    "engage_seq.monitoring.drift": {"torch", "lightning", "hydra"},
    "engage_seq.monitoring.drift_inputs": {"torch", "lightning", "hydra"},
    "engage_seq.monitoring.drift_features": {"torch", "lightning", "hydra"},
    "engage_seq.monitoring.drift_verdicts": {"torch", "lightning", "hydra"},
    "engage_seq.monitoring.drift_report": {"torch", "lightning", "hydra"},
    "engage_seq.monitoring.histograms": {"torch", "lightning", "hydra"},
    "engage_seq.monitoring.distances": {"torch", "lightning", "hydra", "polars"},
    "engage_seq.cli.drift": {"torch", "lightning", "hydra"},
    "engage_seq.monitoring.backtest": {"lightning", "hydra"},
    "engage_seq.monitoring.backtest_schedule": {"torch", "lightning", "hydra"},
    "engage_seq.monitoring.backtest_result": {"torch", "lightning", "hydra"},
    "engage_seq.monitoring.backtest_report": {"torch", "lightning", "hydra"},
    "engage_seq.cli.backtest": {"lightning", "hydra"},
    # artifact keys and signatures: the standard library only (no new dependency to trust)
    "engage_seq.serving.signing": {"torch", "lightning", "hydra", "polars", "numpy"},
    # report sections work on a model and frames, without a Trainer; drawing is matplotlib only
    "engage_seq.evaluation.attribution": {"lightning", "hydra", "matplotlib"},
    "engage_seq.evaluation.explain": {"lightning", "hydra", "matplotlib"},
    "engage_seq.reporting.explain_section": {"lightning", "hydra", "matplotlib"},
    "engage_seq.evaluation.segments": {"torch", "lightning", "hydra"},
    "engage_seq.evaluation.fairness": {"lightning", "hydra"},
    "engage_seq.reporting.fairness_section": {"lightning", "hydra"},
    "engage_seq.reporting.section": {"torch", "lightning", "hydra"},
    # what a run folder holds, the report options, the evaluation's types and the report's
    # words and reproduce commands: no torch, so engage-evaluate checks its arguments (and
    # prints --help) without loading a model
    **{
        module: {"torch", "lightning", "hydra"}
        for module in (
            "engage_seq.evaluation.run_folder",
            "engage_seq.evaluation.options",
            "engage_seq.evaluation.results",
            "engage_seq.cli.evaluate",
            "engage_seq.reporting.wording",
            "engage_seq.reporting.reproduce",
        )
    },
    "engage_seq.reporting.figures": {"torch", "lightning", "hydra"},
    "engage_seq.reporting.explain_figures": {"torch", "lightning", "hydra"},
    "engage_seq.monitoring.figures": {"torch", "lightning", "hydra"},
    # training is Lightning plumbing from plain arguments; Hydra wires it from experiments/
    "engage_seq.training.callbacks": {"hydra"},
    "engage_seq.training.loop": {"hydra"},
    "engage_seq.training.golden": {"hydra"},
    "engage_seq.training.metadata": {"hydra"},
    # matplotlib is an optional extra: importing the plumbing must not load it
    "engage_seq.reporting.plotting": {"torch", "lightning", "hydra", "polars", "matplotlib"},
}


def _import_time_imports(path: Path) -> tuple[set[str], set[str]]:
    """What importing a file runs: (engage_seq modules, third-party top-level packages) named
    by its module-level import statements (``if TYPE_CHECKING:`` blocks excluded; imports
    inside functions run later and do not count)."""
    ours: set[str] = set()
    theirs: set[str] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.If | ast.Try):
                visit([*node.body, *node.orelse, *getattr(node, "finalbody", [])])
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    (ours if alias.name.startswith("engage_seq") else theirs).add(alias.name)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module.split(".")[0] != "engage_seq":
                    theirs.add(node.module)
                    continue
                ours.add(node.module)
                ours.update(f"{node.module}.{alias.name}" for alias in node.names)

    visit(ast.parse(path.read_text()).body)
    return ours, {name.split(".")[0] for name in theirs}


def _loaded_on_import(module: str) -> set[str]:
    """Third-party packages importing ``module`` loads, following engage_seq's own module-level
    imports transitively (parent packages' ``__init__`` included), read from the source: the
    same answer as a fresh interpreter's ``sys.modules``, in milliseconds instead of one
    interpreter per module."""
    files = {_module_name(p): p for p in PACKAGE_DIR.rglob("*.py")}
    seen: set[str] = set()
    loaded: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a, a.b, then a.b.c
            prefix = ".".join(parts[:i])
            if prefix in files and prefix not in seen:
                seen.add(prefix)
                ours, theirs = _import_time_imports(files[prefix])
                loaded |= theirs
                todo.extend(m for m in ours if m in files)
    return loaded


@pytest.mark.parametrize("module", sorted(FORBIDDEN))
def test_module_imports_stay_inside_their_layer(module: str) -> None:
    loaded = _loaded_on_import(module)
    assert not (loaded & FORBIDDEN[module]), f"{module} pulls in {loaded & FORBIDDEN[module]}"


# The static reading above, checked against fresh interpreters on the promises that matter
# most (a light module per layer), so the two cannot drift apart unnoticed.
@pytest.mark.parametrize(
    "module",
    [
        "engage_seq.data.build",
        "engage_seq.serving.signing",
        "engage_seq.monitoring.drift",
        "engage_seq.reporting.section",
    ],
)
def test_the_static_reading_matches_a_fresh_interpreter(module: str) -> None:
    code = (
        f"import importlib, json, sys; importlib.import_module({module!r}); "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout))
    static = _loaded_on_import(module)
    assert static <= loaded  # everything the source imports at module level is loaded
    assert not (loaded & FORBIDDEN[module]) and not (static & FORBIDDEN[module])


def test_scoring_needs_no_model_classes() -> None:
    code = (
        "import json, sys, engage_seq.serving.scoring; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('engage_seq'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout))
    assert not loaded & {
        "engage_seq.models.engagement",
        "engage_seq.models.encoders",
        "engage_seq.training.lit_module",
    }, loaded


# --- the layers (docs/architecture.md): who may import whom, read from the source ----------

PACKAGE_DIR = REPO / "engage_seq"
MAX_MODULE_LINES = 420  # "~400": a docstring or two of slack, not a god file
MAX_FUNCTION_LINES = 62  # "~60", docstring included
# Lowest first. A subpackage may import itself, `common`, and the subpackages before it in
# this list that `MAY_IMPORT` names; nothing imports `cli`.
LAYERS = (
    "common",
    "data",
    "synthetic",
    "metrics",
    "models",
    "baselines",
    "training",
    "serving",
    "evaluation",
    "reporting",
    "monitoring",
    "experiments",
    "cli",
)
MAY_IMPORT: dict[str, set[str]] = {
    "common": set(),
    "data": {"common"},
    "synthetic": {"common"},
    "metrics": {"common"},
    "models": {"common"},
    "baselines": {"common", "data"},
    "training": {"common", "data", "metrics", "models"},
    "serving": {"common", "data", "models"},
    "evaluation": {
        "common",
        "data",
        "synthetic",
        "metrics",
        "models",
        "baselines",
        "training",
        "serving",
    },
    "reporting": {
        "common",
        "data",
        "synthetic",
        "metrics",
        "models",
        "baselines",
        "training",
        "serving",
        "evaluation",
    },
    "monitoring": {"common", "data", "metrics", "serving", "reporting"},
    "experiments": {
        "common",
        "data",
        "synthetic",
        "metrics",
        "models",
        "baselines",
        "training",
        "serving",
        "evaluation",
        "reporting",
    },
    "cli": set(LAYERS) - {"cli"},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """engage_seq modules a file imports anywhere (top level or inside a function)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("engage_seq.")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("engage_seq."):
                found.add(node.module)
            elif node.module == "engage_seq":
                found |= {f"engage_seq.{a.name}" for a in node.names}
    return found


def _module_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE_DIR.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        # "from engage_seq.data import tasks" names a module; "... import HorizonTask" its package
        graph[name] = {m for m in _imports(path) if m in files and m != name}
    return graph


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_every_subpackage_has_a_layer_and_a_docstring() -> None:
    subpackages = {p.parent.name for p in PACKAGE_DIR.glob("*/__init__.py")}
    assert subpackages == set(LAYERS), subpackages ^ set(LAYERS)
    for name in LAYERS:
        doc = ast.get_docstring(ast.parse((PACKAGE_DIR / name / "__init__.py").read_text()))
        assert doc and len(doc.split()) >= 15, f"engage_seq/{name}/__init__.py needs its paragraph"


def test_imports_point_down_the_layers() -> None:
    wrong = []
    for module, targets in _module_graph().items():
        here = _layer(module)
        for target in targets:
            there = _layer(target)
            if here and there and there != here and there not in MAY_IMPORT[here]:
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports against the layers:\n" + "\n".join(sorted(wrong))


def test_the_module_graph_is_acyclic() -> None:
    """Function-level imports count: a cycle held together by a late import is still one."""
    graph = _module_graph()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    cycles: list[str] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_modules_and_functions_stay_small() -> None:
    """DESIGN §4: no module over ~400 lines, no function over ~60 unless a ``# long:`` comment
    above it says why."""
    too_long = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        lines = path.read_text().splitlines()
        if len(lines) > MAX_MODULE_LINES:
            too_long.append(f"{path.name}: {len(lines)} lines")
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                first = min([d.lineno for d in node.decorator_list] + [node.lineno])
                if length > MAX_FUNCTION_LINES and "# long:" not in lines[first - 2]:
                    too_long.append(f"{_module_name(path)}.{node.name}: {length} lines")
    assert not too_long, "\n".join(too_long)


def test_the_architecture_page_shows_these_rules() -> None:
    """docs/architecture.md's layer table is the rule this file checks, row for row."""
    page = (PACKAGE_DIR.parent / "docs" / "architecture.md").read_text()
    table = page.split("<!-- layer-table: start -->")[1].split("<!-- layer-table: end -->")[0]
    shown: dict[str, set[str]] = {}
    for row in table.strip().splitlines()[2:]:
        layer, allowed = (cell.strip() for cell in row.strip("|").split("|"))
        names = set(re.findall(r"`(\w+)", allowed))
        shown[layer.strip("`/")] = set(LAYERS) - {"cli"} if "every layer" in allowed else names
    assert list(shown) == list(LAYERS)
    assert shown == {layer: MAY_IMPORT[layer] - {"cli"} for layer in LAYERS}
