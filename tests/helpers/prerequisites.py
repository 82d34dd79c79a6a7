"""The one way a test may skip: a missing prerequisite skips on a developer's machine and
fails under CI (``CI=true``, set by ``.ci/run``), so CI never passes by silently not running
a test. ``tests/test_prerequisites.py`` keeps every other skip out of tests/.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require_or_skip(condition: object, reason: str, *, ci_may_skip: str = "") -> None:
    """Return if ``condition`` holds; else skip, or fail when CI=true.

    ``ci_may_skip``, when given, names why CI may lack this prerequisite and what still
    covers it: the test then skips under CI too, with that said in the skip reason (shown in
    pytest's short summary, ``-ra``)."""
    if condition:
        return
    if in_ci() and not ci_may_skip:
        pytest.fail(f"CI=true and a prerequisite is missing: {reason}", pytrace=False)
    pytest.skip(f"{reason}; allowed under CI: {ci_may_skip}" if ci_may_skip else reason)


def require_module(name: str) -> ModuleType:
    """Import ``name`` (an optional dependency CI installs), or skip / fail like
    :func:`require_or_skip`."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        require_or_skip(False, f"cannot import {name} ({error}); `make setup` installs it")
        raise  # unreachable: require_or_skip raised
