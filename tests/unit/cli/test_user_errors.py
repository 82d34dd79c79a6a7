"""engage-train says a user's mistake in one line (issue 20): what, where, what to do; the
stack only on request (-v, HYDRA_FULL_ERROR=1). A bug keeps its traceback."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest
from helpers import VENV_BIN
from hydra.errors import InstantiationException
from omegaconf import OmegaConf

from engage_seq.cli.user_errors import VERBOSE_ENV, user_error_message
from engage_seq.data.schema import EventSchemaError


def test_user_errors_are_one_line_and_bugs_are_not_user_errors() -> None:
    wrapped = InstantiationException("Error in call to target 'x'")
    wrapped.__cause__ = FileNotFoundError("no event files at 'nope.parquet'")
    assert user_error_message(wrapped).startswith("no event files at 'nope.parquet' (run with -v")
    message = user_error_message(EventSchemaError("a\n  b"))
    assert message is not None and "\n" not in message and message.startswith("a b")
    with pytest.raises(Exception) as typo:
        OmegaConf.create({"data": {}}, flags={"struct": True}).dtaa  # noqa: B018
    assert user_error_message(typo.value) is not None
    assert user_error_message(ZeroDivisionError("bug")) is None
    assert user_error_message(TypeError("bug")) is None


@pytest.mark.slow
def test_engage_train_says_user_errors_in_one_line(tmp_path: Path, isolated_env) -> None:
    """The complaints docs/data.md answers: a table without a channel column, and a 30-day
    experiment on data too short for it, both printed multi-frame Hydra tracebacks."""
    table = tmp_path / "t.csv"
    table.write_text("customer,ts,action\nu1,2026-01-01T00:00:00,view\n")
    command = [str(VENV_BIN / "engage-train"), "data=files", f"data.source.path={table}",
               "data.columns.user_id=customer", "data.columns.timestamp=ts",
               "data.columns.event_type=action", "trainer=smoke",
               f"hydra.run.dir={tmp_path / 'r'}"]  # fmt: skip
    result = subprocess.run(command, env=isolated_env, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("engage-train: error: ") and "data.columns.channel=null" in last
    assert "u1" not in result.stderr  # never an id

    verbose = subprocess.run([*command, "-v"], env=isolated_env, capture_output=True, text=True,
                             cwd=tmp_path)  # fmt: skip
    assert verbose.returncode != 0 and "Traceback" in verbose.stderr

    short = subprocess.run(
        [str(VENV_BIN / "engage-train"), "data=synthetic_tiny", "trainer=smoke",
         "experiment=unsubscribe_30d", f"hydra.run.dir={tmp_path / 'u'}"],
        env=isolated_env, capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert short.returncode == 2 and "Traceback" not in short.stderr
    assert "too short for a 720 h label window" in short.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("mode", ["RUN", "MULTIRUN"])
def test_a_user_error_exits_only_a_single_run_and_its_stack_goes_to_the_log_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, mode: str
) -> None:
    """In a multirun, sys.exit in one job ended the whole sweep (Optuna would have marked the
    trial failed and gone on) and skipped the sweep report: there the error is re-raised for
    Hydra to report per job. Either way the stack lands in the run's log file only."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from engage_seq.cli import train

    with initialize_config_dir(config_dir=train.CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[f"hydra.mode={mode}"], return_hydra_config=True)

    def fails(_cfg) -> float:
        raise EventSchemaError("table events.csv has no column 'channel'")

    monkeypatch.setattr(train, "_job", fails)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.delenv(VERBOSE_ENV, raising=False)
    log_file = logging.FileHandler(tmp_path / "train.log")
    logging.getLogger().addHandler(log_file)
    HydraConfig.instance().set_config(cfg)
    try:
        if mode == "RUN":
            with pytest.raises(SystemExit) as exit_info:
                train._run_job(cfg)
            assert exit_info.value.code == 2
        else:
            with pytest.raises(EventSchemaError):
                train._run_job(cfg)
    finally:
        HydraConfig.instance().cfg = None
        logging.getLogger().removeHandler(log_file)
        log_file.close()
    written = (tmp_path / "train.log").read_text()
    assert "Traceback" in written and "has no column 'channel'" in written
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert ("engage-train: error: " in err) == (mode == "RUN")
