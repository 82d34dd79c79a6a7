"""Shared pieces of the argparse commands (engage-drift, engage-backtest): the ``key=value``
form next to ``--key value``, and instants given as epoch seconds or ISO text.

Standard library only at import time (the monitors import it before deciding whether torch is
needed), so it stays as light as the lightest command that uses it.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Collection, Sequence
from typing import Any

from engage_seq.common.times import parse_instant_arg  # noqa: F401  (re-exported)

_KEY = re.compile(r"^([A-Za-z_][\w\-]*)(\.[^=]+)?=(.*)$", re.DOTALL)


class KeywordArgumentParser(argparse.ArgumentParser):
    """An `argparse.ArgumentParser` that also accepts ``key=value`` for any of its options
    (the form engage-train's Hydra overrides use, so one habit works for every command).

    It records the option names as they are added, rather than reading argparse's private
    action list; options added through argument groups are not recorded (none are used).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.option_names: set[str] = set()  # before super(): it adds --help through us
        super().__init__(*args, **kwargs)

    def add_argument(self, *name_or_flags: str, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*name_or_flags, **kwargs)
        self.option_names.update(_key(o) for o in action.option_strings)
        return action

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        argv = list(sys.argv[1:] if args is None else args)
        return super().parse_args(keyword_argv(argv, self.option_names), namespace)


def _key(option: str) -> str:
    return option.lstrip("-").replace("-", "_")


def keyword_argv(argv: Sequence[str], options: Collection[str]) -> list[str]:
    """Turn ``key=value`` tokens whose key names one of ``options`` (underscored names, e.g.
    ``reference_start``) into ``--key=value``, and ``threshold.F=X`` into ``--feature-threshold
    F=X`` when ``feature_threshold`` is an option. Anything else (``--key value``, a path with
    '=' in it such as ``events/date=2026-01-01``) is left alone."""
    out: list[str] = []
    for token in argv:
        match = _KEY.match(token) if not token.startswith("-") else None
        key = match.group(1).replace("-", "_") if match else None
        if match and match.group(2) and key == "threshold" and "feature_threshold" in options:
            out += ["--feature-threshold", f"{match.group(2)[1:]}={match.group(3)}"]
        elif match and not match.group(2) and key in options:
            assert key is not None
            out.append(f"--{key.replace('_', '-')}={match.group(3)}")
        else:
            out.append(token)
    return out
