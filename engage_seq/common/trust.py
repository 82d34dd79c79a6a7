"""Where the trust to name code outside engage_seq comes from: the person, never the file.

A run folder's ``config_resolved.yaml`` or a ``--config-dir`` YAML that lists
``allowed_targets: [torch.load]`` would otherwise vouch for itself, so the names
`safe_config.check_targets` accepts beyond its defaults come only from (`trusted_targets`):

- ``ENGAGE_SEQ_ALLOWED_TARGETS`` (comma-separated exact names),
- a user-level file, ``$XDG_CONFIG_HOME/engage_seq/allowed_targets.txt`` (default
  ``~/.config/...``; ``ENGAGE_SEQ_ALLOWED_TARGETS_FILE`` points elsewhere), one name a line,
- ``allowed_targets=[...]`` typed on the engage-train command line (`trust_command_line` puts
  it into the environment variable, so sweep jobs and the end-of-run report see it too).

The ``allowed_targets`` key a config holds is ignored.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

ALLOWED_TARGETS_ENV = "ENGAGE_SEQ_ALLOWED_TARGETS"
ALLOWED_TARGETS_FILE_ENV = "ENGAGE_SEQ_ALLOWED_TARGETS_FILE"
_NAME = re.compile(r"(ext://)?[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def user_targets_file() -> Path | None:
    """The user-level allow-list file (it need not exist); None without a home folder."""
    explicit = os.environ.get(ALLOWED_TARGETS_FILE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    try:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    except RuntimeError:  # no HOME: no user file
        return None
    return base / "engage_seq" / "allowed_targets.txt"


def _names(items: Iterable[str], source: str) -> set[str]:
    """Validated exact names, so a typo ("torch load") fails loudly instead of trusting nothing."""
    names = {item.strip() for item in items if item.strip()}
    bad = sorted(n for n in names if not _NAME.fullmatch(n))
    if bad:
        raise ValueError(
            f"{source}: {bad[0][:80]!r} is not a dotted Python name (e.g. "
            "mycompany.sources.KafkaSource); fix or remove it"
        )
    return names


_FROZEN: frozenset[str] | None = None  # set by `frozen_trust` for the length of a command


def trusted_targets() -> frozenset[str]:
    """The names the person running the command trusts: environment variable + user file, or
    the snapshot `frozen_trust` took when the command started."""
    if _FROZEN is not None:
        return _FROZEN
    names = _names(os.environ.get(ALLOWED_TARGETS_ENV, "").split(","), ALLOWED_TARGETS_ENV)
    path = user_targets_file()
    if path is not None and path.is_file():
        lines = (line.partition("#")[0] for line in path.read_text().splitlines())
        names |= _names(lines, str(path))
    return frozenset(names)


@contextmanager
def frozen_trust() -> Iterator[frozenset[str]]:
    """Take `trusted_targets` once, now, and use that snapshot until the block ends.

    engage-train enters it in ``main()`` before Hydra runs: Hydra runs every job inside
    ``env_override(hydra.job.env_set)``, so a list re-read from ``os.environ`` inside a job
    would see what a YAML put there. In-process jobs (the basic launcher, Optuna) use this
    snapshot. A submitit job process starts from the environment ``main()`` set up (command-line
    trust included, `trust_command_line`) and re-reads it, which is why the checker also
    refuses env_set/env_copy of ``ENGAGE_SEQ_*`` and friends (`PROTECTED_ENV`), before
    anything else in the job is checked."""
    global _FROZEN
    previous = _FROZEN
    _FROZEN = trusted_targets()
    try:
        yield _FROZEN
    finally:
        _FROZEN = previous


def command_line_targets(overrides: Sequence[str]) -> list[str]:
    """The names of ``allowed_targets=[...]`` (``+``/``++`` too) among command-line overrides."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    names: list[str] = []
    for text in overrides:
        if "allowed_targets" not in text:
            continue
        try:
            override = parser.parse_override(text)
        except Exception:  # Hydra reports a malformed override itself
            continue
        if override.key_or_group != "allowed_targets" or override.is_delete():
            continue
        if override.is_sweep_override():
            raise ValueError(
                f"{text}: allowed_targets cannot be swept; list every name once, as "
                "'allowed_targets=[a.B,c.D]'"
            )
        value = override.value()
        items = value if isinstance(value, list) else [value]
        names += sorted(_names((str(v) for v in items), "allowed_targets on the command line"))
    return names


def trust_command_line(overrides: Sequence[str]) -> None:
    """Add the command line's ``allowed_targets`` to ``ENGAGE_SEQ_ALLOWED_TARGETS`` of this
    process, so its checks, its sweep jobs (local or submitit processes inherit it) and the
    run report all trust exactly what the person typed, and nothing a YAML adds."""
    names = command_line_targets(overrides)
    if names:
        current = [n for n in os.environ.get(ALLOWED_TARGETS_ENV, "").split(",") if n.strip()]
        os.environ[ALLOWED_TARGETS_ENV] = ",".join(dict.fromkeys([*current, *names]))
