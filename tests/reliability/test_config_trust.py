"""Issue 15: trust comes from outside the file being checked.

Every attack of the issue is a test that now does no harm: each would call
``pathlib.Path.touch`` on a file (``Path.touch(self=path)`` creates it), and each test asserts
the file is never created and the refusal names the config node. Run folders are written by
hand (a few lines of YAML), not trained.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import VENV_BIN
from hydra import compose, initialize_config_dir

from engage_seq.cli import evaluate, train
from engage_seq.common.config_dir import CONF_DIR
from engage_seq.common.safe_config import (
    ALLOWED_TARGETS_ENV,
    UnsafeConfigError,
    UnsafeTargetError,
    check_targets,
    iter_targets,
)
from engage_seq.common.trust import (
    ALLOWED_TARGETS_FILE_ENV,
    command_line_targets,
    frozen_trust,
    trust_command_line,
)
from engage_seq.common.untrusted_yaml import load_untrusted_config, read_untrusted_yaml
from engage_seq.evaluation.siblings import sibling_runs
from engage_seq.experiments.hydra_precheck import check_command_line
from engage_seq.experiments.sweep_runs import collect_runs
from engage_seq.serving.export import ExportError, export_artifact

TOUCH = "pathlib.Path.touch"


def _touch_node(target: Path, indent: str = "  ") -> str:
    """The YAML body of a node that creates ``target`` when instantiated."""
    return f"{indent}_target_: {TOUCH}\n{indent}_args_: ['{target}']\n"


def _evil_run(folder: Path, pwned: Path, node: str = "task") -> Path:
    """A run folder whose config allow-lists its own payload, as in the issue."""
    folder.mkdir(parents=True)
    (folder / "config_resolved.yaml").write_text(
        f"allowed_targets: [{TOUCH}]\nseed: 1\n{node}:\n{_touch_node(pwned)}"
    )
    (folder / "metrics.json").write_text('{"val/auroc": 0.9}\n')
    return folder


def _check_argv(*argv: str) -> None:
    check_command_line(list(argv), CONF_DIR, "train", train._hydra_main.__wrapped__)


def _refused_by_main(monkeypatch: pytest.MonkeyPatch, capsys, *argv: str) -> str:
    """engage-train's entry point on ``argv``: exits 2 before Hydra runs; returns stderr."""
    monkeypatch.setattr(sys, "argv", ["engage-train", *argv])
    with pytest.raises(SystemExit) as exit_info:
        train.main()
    assert exit_info.value.code == 2
    return capsys.readouterr().err


# ---- configs read back from run folders ----------------------------------------------------


def test_evaluate_of_an_evil_run_folder_is_refused_naming_the_node(tmp_path: Path, capsys) -> None:
    pwned = tmp_path / "pwned"
    run = _evil_run(tmp_path / "run", pwned)
    assert evaluate.main([str(run), "--out", str(tmp_path / "report")]) == 2
    err = capsys.readouterr().err
    assert "config key task._target_ = 'pathlib.Path.touch'" in err
    assert "own allowed_targets list is ignored" in err and ALLOWED_TARGETS_ENV in err
    assert not pwned.exists() and not (tmp_path / "report").exists()


def test_a_hostile_reference_baseline_config_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """engage-evaluate fits its reference baselines from ``conf/model/<name>.yaml``: one naming
    foreign code there is refused before anything is instantiated."""
    import engage_seq.common.config_dir as config_dir
    from engage_seq.evaluation.references import _baseline_config

    pwned = tmp_path / "pwned"
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "gbm.yaml").write_text(_touch_node(pwned, ""))
    monkeypatch.setattr(config_dir, "CONF_DIR", str(tmp_path))
    with pytest.raises(UnsafeTargetError, match=r"config key _target_ = 'pathlib\.Path\.touch'"):
        _baseline_config("gbm")
    assert not pwned.exists()


def test_hydra_nodes_of_a_run_folder_are_checked(tmp_path: Path) -> None:
    pwned = tmp_path / "pwned"
    node = _touch_node(pwned, "      ")
    (tmp_path / "c.yaml").write_text(f"hydra:\n  callbacks:\n    x:\n{node}")
    with pytest.raises(UnsafeTargetError, match=r"c\.yaml: config key hydra\.callbacks\.x\."):
        load_untrusted_config(tmp_path / "c.yaml")
    assert not pwned.exists()


def test_a_hostile_sibling_is_skipped_with_a_warning_and_never_instantiated(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A legitimate run's report lists the other runs of its multirun: an evil sibling (no
    checkpoint, so its task would be instantiated to fingerprint its samples) is skipped."""
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    legit = sweep / "0_seed=1"
    legit.mkdir()
    pwned = tmp_path / "pwned"
    _evil_run(sweep / "1_seed=2", pwned)
    with caplog.at_level(logging.INFO, logger="engage_seq.evaluation.siblings"):
        assert sibling_runs(legit, "samples-any") == []
    (record,) = [r for r in caplog.records if "1_seed=2" in r.getMessage()]
    assert record.levelno == logging.WARNING and "task._target_" in record.getMessage()
    assert not pwned.exists()


def test_a_hostile_run_in_a_sweep_is_listed_unreadable(tmp_path: Path) -> None:
    run = _evil_run(tmp_path / "sweep" / "0_seed=1", tmp_path / "pwned")
    (run / ".hydra").mkdir()
    (run / ".hydra" / "overrides.yaml").write_text("- seed=1\n")
    runs, _, unreadable = collect_runs(tmp_path / "sweep")
    assert runs == [] and "UnsafeTargetError" in unreadable[0] and "task._target_" in unreadable[0]


def _alias_bomb() -> str:
    """~600 bytes that expand to 9**10 strings once anything walks the aliases."""
    lines = ["a0: &a0 [" + ", ".join(["lol"] * 9) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    return "\n".join(lines) + "\n"


def _interpolation_bomb() -> str:
    lines = ["s0: lol"] + [f"s{i}: '{'${s' + str(i - 1) + '}' * 9}'" for i in range(1, 12)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (_alias_bomb(), "anchors/aliases are refused"),
        (_interpolation_bomb(), r"key s\d+ holds an interpolation"),
        ("a: " + "[" * 100 + "]" * 100 + "\n", "levels deep"),
        ("x: [" + "1," * 30_000 + "1]\n", "values"),
        ("pad: '" + "x" * 1_100_000 + "'\n", "is over 1,000,000 bytes"),
    ],
    ids=["alias_bomb", "interpolation_bomb", "deep", "many_nodes", "big"],
)
def test_yaml_bombs_in_a_run_folder_are_refused_fast(tmp_path: Path, text: str, message) -> None:
    """engage-export embeds the run's config in the artifact: the issue's 2.7 KB alias bomb
    ran past 60 s and 6 GB there. Now refused before parsing, in well under a second."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "best.ckpt").write_bytes(b"never read")
    (run / "config_resolved.yaml").write_text(text)
    started = time.perf_counter()
    with pytest.raises(ExportError, match=message):
        export_artifact(run, tmp_path / "model.pt")
    with pytest.raises(UnsafeConfigError, match=message):
        load_untrusted_config(run / "config_resolved.yaml")
    assert time.perf_counter() - started < 2.0
    assert not (tmp_path / "model.pt").exists()


def test_untrusted_yaml_reads_plain_files(tmp_path: Path) -> None:
    (tmp_path / "o.yaml").write_text("- seed=1\n- model=lstm\n")
    assert read_untrusted_yaml(tmp_path / "o.yaml") == ["seed=1", "model=lstm"]
    (tmp_path / "bad.yaml").write_text("a: [1\n")
    with pytest.raises(ValueError, match=r"bad\.yaml is not valid YAML"):
        read_untrusted_yaml(tmp_path / "bad.yaml")


# ---- engage-train: the command line and --config-dir --------------------------------------


@pytest.mark.slow
def test_hydra_callbacks_on_the_command_line_do_no_harm(tmp_path: Path, isolated_env) -> None:
    """Hydra instantiates hydra.callbacks before the task function runs: the console script
    refuses them before Hydra starts (one real subprocess; it fails before training)."""
    pwned = tmp_path / "pwned"
    result = subprocess.run(
        [
            str(VENV_BIN / "engage-train"),
            "data=synthetic_tiny",
            "trainer=smoke",
            f"hydra.run.dir={tmp_path / 'run'}",
            f"+hydra.callbacks.x._target_={TOUCH}",
            f"+hydra.callbacks.x._args_=['{pwned}']",
        ],
        cwd=tmp_path,
        env=isolated_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert "config key hydra.callbacks.x._target_ = 'pathlib.Path.touch'" in result.stderr
    assert not pwned.exists() and not (tmp_path / "run").exists()


def _config_dir(tmp_path: Path, body: str) -> Path:
    """A shared experiment YAML, as passed with ``--config-dir``."""
    folder = tmp_path / "shared_conf"
    (folder / "experiment").mkdir(parents=True)
    (folder / "experiment" / "evil.yaml").write_text(f"# @package _global_\n{body}")
    return folder


@pytest.mark.parametrize(
    ("node", "body"),
    [
        ("data.source._target_", "data:\n  source:\n{touch}"),
        ("hydra.callbacks.x._target_", "hydra:\n  callbacks:\n    x:\n{touch6}"),
        (
            "hydra.job_logging.handlers.evil.class",
            "hydra:\n  job_logging:\n    handlers:\n      evil:\n"
            "        class: pathlib.Path.touch\n        self: '{pwned}'\n",
        ),
    ],
    ids=["data_source", "hydra_callbacks", "logging_handler"],
)
def test_a_config_dir_yaml_cannot_allow_list_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, node: str, body: str
) -> None:
    pwned = tmp_path / "pwned"
    text = body.format(
        touch=_touch_node(pwned, "    "), touch6=_touch_node(pwned, "      "), pwned=pwned
    )
    conf = _config_dir(tmp_path, f"allowed_targets: [{TOUCH}]\n{text}")
    monkeypatch.chdir(tmp_path)
    err = _refused_by_main(monkeypatch, capsys, "--config-dir", str(conf), "experiment=evil")
    assert f"config key {node} = 'pathlib.Path.touch'" in err
    assert not pwned.exists() and not (tmp_path / "outputs").exists()


def test_sweeper_custom_search_space_is_checked() -> None:
    with pytest.raises(UnsafeTargetError, match=r"hydra\.sweeper\.custom_search_space = 'os"):
        _check_argv("-m", "sweep=optuna", "hydra.sweeper.custom_search_space=os.system")


def test_checked_in_hydra_nodes_are_checked_and_pass() -> None:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["sweep=optuna"], return_hydra_config=True)
    paths = {path for path, _ in iter_targets(cfg)}
    assert {"hydra.callbacks.sweep_report._target_", "hydra.sweeper.sampler._target_"} <= paths
    assert "hydra.job_logging.handlers.console.class" in paths
    check_targets(cfg)
    _check_argv("-m", "sweep=optuna", "hydra/launcher=slurm", "model=lstm,gru")


# ---- package look-alikes: "engage_seq" is a prefix of other names -----------------------------


def test_a_package_name_look_alike_is_refused_and_never_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``engage_seq_evil`` and ``engage_seqevil`` start with ``engage_seq`` but are not the
    package: their names are refused without being imported (importing runs their code), even
    when what they export is a class of engage_seq."""
    pwned = tmp_path / "pwned"
    body = "from pathlib import Path\nfrom engage_seq.cli.evaluate import EvaluationError\n"
    for name in ("engage_seq_evil", "engage_seqevil"):
        (tmp_path / f"{name}.py").write_text(f"{body}Path({str(pwned / name)!r}).touch()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    pwned.mkdir()
    try:
        for name in ("engage_seq_evil", "engage_seqevil"):
            with pytest.raises(UnsafeTargetError, match=rf"task\._target_ = '{name}\.Evaluation"):
                check_targets({"task": {"_target_": f"{name}.EvaluationError"}}, extra=())
    finally:
        imported = [m for m in ("engage_seq_evil", "engage_seqevil") if sys.modules.pop(m, None)]
    assert imported == [] and list(pwned.iterdir()) == []


def test_a_foreign_class_reached_through_a_package_module_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A class that one of our modules imports from a look-alike package (its ``__module__``
    starts with ``engage_seq`` but not ``engage_seq.``) is not a class of engage_seq."""
    import engage_seq.cli.evaluate as module

    foreign = type("Smuggled", (), {"__module__": "engage_seq_plugins.evil"})
    monkeypatch.setattr(module, "Smuggled", foreign, raising=False)
    target = "engage_seq.cli.evaluate.Smuggled"
    with pytest.raises(UnsafeTargetError, match=r"task\._target_ = 'engage_seq\.cli\.evaluate"):
        check_targets({"task": {"_target_": target}}, extra=())
    check_targets({"task": {"_target_": target}}, extra=(target,))  # listed: trusted


# ---- the person running the command still extends the allow-list ---------------------------


def test_command_line_extends_the_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["data.source._target_=json.loads", "allowed_targets=[json.loads]"]
    with pytest.raises(UnsafeTargetError, match=r"data\.source\._target_ = 'json\.loads'"):
        _check_argv(*argv)  # the value alone is not trusted, wherever it is set
    monkeypatch.setenv(ALLOWED_TARGETS_ENV, "a.B")
    trust_command_line(argv)  # what engage-train's main() does first
    _check_argv(*argv)
    assert os.environ[ALLOWED_TARGETS_ENV] == "a.B,json.loads"  # jobs and the report inherit it


def test_command_line_targets_parse_only_allowed_targets() -> None:
    assert command_line_targets(["seed=1", "+allowed_targets=a.B", "~allowed_targets"]) == ["a.B"]
    assert command_line_targets(["allowed_targets=[c.D,a.B]"]) == ["a.B", "c.D"]
    with pytest.raises(ValueError, match="cannot be swept"):
        command_line_targets(["allowed_targets=a.B,c.D"])
    with pytest.raises(ValueError, match="not a dotted Python name"):
        command_line_targets(["allowed_targets=['torch load']"])


def test_environment_and_user_file_extend_the_allow_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["data.source._target_=json.loads"]
    monkeypatch.setenv(ALLOWED_TARGETS_ENV, "json.loads, other.Name")
    _check_argv(*argv)
    monkeypatch.delenv(ALLOWED_TARGETS_ENV)
    listed = tmp_path / "allowed_targets.txt"
    listed.write_text("# my team's sources\njson.loads  # the test's stand-in\n")
    monkeypatch.setenv(ALLOWED_TARGETS_FILE_ENV, str(listed))
    _check_argv(*argv)
    listed.write_text("json loads\n")
    with pytest.raises(ValueError, match=r"allowed_targets\.txt: 'json loads' is not a dotted"):
        _check_argv(*argv)


def test_a_trusted_run_folder_target_is_read_back(tmp_path: Path, monkeypatch) -> None:
    """The person's allow-list (not the file's) lets engage-evaluate read their own runs."""
    path = tmp_path / "config_resolved.yaml"
    path.write_text("data:\n  source:\n    _target_: json.loads\n")
    with pytest.raises(UnsafeTargetError):
        load_untrusted_config(path)
    monkeypatch.setenv(ALLOWED_TARGETS_ENV, "json.loads")
    assert load_untrusted_config(path)["data"]["source"]["_target_"] == "json.loads"


# ---- review follow-ups: env_set, sweeper params, the snapshot, logging handlers -------------


def _compose(*argv: str):
    """The config engage-train's pre-check composes for ``argv`` (``hydra`` node included)."""
    from engage_seq.experiments.hydra_precheck import compose_command_line

    cfg = compose_command_line(list(argv), CONF_DIR, "train", train._hydra_main.__wrapped__)
    assert cfg is not None
    return cfg


@pytest.mark.parametrize(
    ("node", "body"),
    [
        (f"env_set.{ALLOWED_TARGETS_ENV}", f"    env_set:\n      {ALLOWED_TARGETS_ENV}: {TOUCH}\n"),
        (
            f"env_set.{ALLOWED_TARGETS_FILE_ENV}",
            f"    env_set:\n      {ALLOWED_TARGETS_FILE_ENV}: x\n",
        ),
        ("env_set.XDG_CONFIG_HOME", "    env_set:\n      XDG_CONFIG_HOME: /shared/conf\n"),
        ("env_copy[0]", "    env_copy: [PYTHONPATH]\n"),
    ],
    ids=["allowed_targets", "allowed_targets_file", "xdg_config_home", "env_copy_pythonpath"],
)
def test_a_config_dir_yaml_cannot_set_trust_for_its_jobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, node: str, body: str
) -> None:
    """Hydra runs each job inside env_override(hydra.job.env_set): a YAML setting
    ENGAGE_SEQ_ALLOWED_TARGETS there extended the list the job's own check read. Refused in
    the pre-check and in the per-job check (which runs inside that environment)."""
    # Hydra's own loader copies env_copy names from the environment (KeyError if unset)
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", str(tmp_path)))
    conf = _config_dir(tmp_path, f"hydra:\n  job:\n{body}")
    argv = ("--config-dir", str(conf), "experiment=evil")
    with pytest.raises(UnsafeConfigError, match=rf"hydra\.job\.{re.escape(node)} .*own shell"):
        _check_argv(*argv)
    hydra_node = _compose(*argv).hydra
    monkeypatch.setenv(ALLOWED_TARGETS_ENV, TOUCH)  # as env_override leaves it inside the job
    with pytest.raises(UnsafeConfigError, match=rf"hydra\.job\.{re.escape(node)} "):
        check_targets(hydra_node, prefix="hydra")


@pytest.mark.parametrize(
    "swept",
    ["json.loads,pathlib.Path.touch", "choice(json.loads, pathlib.Path.touch)", "[a.B]"],
    ids=["basic", "optuna_choice", "list"],
)
def test_sweeper_params_naming_code_are_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, swept: str
) -> None:
    """``hydra.mode: MULTIRUN`` and ``hydra.sweeper.params`` in a YAML: each swept value of a
    key ending in ``_target_`` is a target name (json.loads is trusted here, touch is not)."""
    monkeypatch.setenv(ALLOWED_TARGETS_ENV, "json.loads")
    conf = _config_dir(
        tmp_path,
        "hydra:\n  mode: MULTIRUN\n  sweeper:\n    params:\n"
        f"      +data.source._target_: '{swept}'\n",
    )
    refused = "a.B" if swept == "[a.B]" else TOUCH
    with pytest.raises(
        UnsafeTargetError,
        match=rf"hydra\.sweeper\.params\.\+data\.source\._target_ = '{re.escape(refused)}'",
    ):
        _check_argv("--config-dir", str(conf), "experiment=evil")
    paths = dict(
        iter_targets({"hydra": {"sweeper": {"params": {"seed": "1,2", "x._target_": "a.B"}}}})
    )
    assert paths == {"hydra.sweeper.params.x._target_": "a.B"}


def test_the_env_set_and_sweeper_attack_does_no_harm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """The review's attack in full: a multirun from the YAML, the target only in the sweeper's
    params, and env_set trusting it inside the job. Refused before Hydra starts."""
    pwned = tmp_path / "pwned"
    conf = _config_dir(
        tmp_path,
        "hydra:\n  mode: MULTIRUN\n  sweeper:\n    params:\n"
        f"      +data.source._target_: {TOUCH}\n      +data.source._args_: \"['{pwned}']\"\n"
        f"  job:\n    env_set:\n      {ALLOWED_TARGETS_ENV}: {TOUCH}\n",
    )
    monkeypatch.chdir(tmp_path)
    err = _refused_by_main(monkeypatch, capsys, "--config-dir", str(conf), "experiment=evil")
    assert f"hydra.job.env_set.{ALLOWED_TARGETS_ENV} sets" in err
    assert not pwned.exists() and not (tmp_path / "multirun").exists()


def test_trust_is_a_snapshot_while_engage_train_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a job's env_set puts into os.environ later does not reach the in-process check."""
    node = {"data": {"source": {"_target_": "json.loads"}}}
    monkeypatch.delenv(ALLOWED_TARGETS_ENV, raising=False)
    monkeypatch.setenv(ALLOWED_TARGETS_FILE_ENV, "/nonexistent/allowed_targets.txt")
    with frozen_trust():
        monkeypatch.setenv(ALLOWED_TARGETS_ENV, "json.loads")
        with pytest.raises(UnsafeTargetError, match=r"data\.source\._target_"):
            check_targets(node)
    check_targets(node)  # outside the command, the environment is read again


@pytest.mark.parametrize(
    ("handler", "allowed"),
    [
        ("logging.handlers.HTTPHandler", False),
        ("logging.handlers.SocketHandler", False),
        ("logging.handlers.SMTPHandler", False),
        ("logging.handlers.RotatingFileHandler", False),
        ("logging.StreamHandler", True),
        ("logging.FileHandler", True),
    ],
)
def test_only_local_logging_handlers_pass_without_trust(handler: str, allowed: bool) -> None:
    """HTTPHandler, SocketHandler, SMTPHandler send the log off the machine."""
    cfg = {"hydra": {"job_logging": {"handlers": {"h": {"class": handler}}}}}
    if allowed:
        check_targets(cfg)
        return
    with pytest.raises(UnsafeTargetError, match=r"hydra\.job_logging\.handlers\.h\.class"):
        check_targets(cfg)
    check_targets(cfg, extra=[handler])  # the person may still trust it


def test_an_unexpected_error_in_the_pre_check_is_raised_not_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fail closed: if Hydra's internals change (a TypeError while composing), engage-train
    stops with the bug instead of running Hydra unchecked."""
    from hydra._internal.hydra import Hydra

    def changed(*args, **kwargs):
        raise TypeError("compose_config() got an unexpected keyword argument")

    def hydra_ran() -> None:
        raise AssertionError("Hydra ran without the pre-check")

    monkeypatch.setattr(Hydra, "compose_config", changed)
    monkeypatch.setattr(train, "_hydra_main", hydra_ran)
    monkeypatch.setattr(sys, "argv", ["engage-train", "seed=1"])
    with pytest.raises(TypeError, match="unexpected keyword"):
        train.main()
    monkeypatch.undo()
    _check_argv("model=does_not_exist")  # a user's mistake still leaves it to Hydra
