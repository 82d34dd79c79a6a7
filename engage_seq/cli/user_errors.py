"""Which failures are the user's to fix, and how to say them in one line.

A wrong column name, a target event that never occurs or a data window too short for the
horizon is a problem with the input, not with engage_seq: a multi-frame Hydra traceback hides
the one sentence that says what to do. `engage-train` prints that sentence
(``engage-train: error: …``) and exits 2; ``-v`` / ``--verbose`` or Hydra's own
``HYDRA_FULL_ERROR=1`` re-raise with the whole stack. Anything else (a bug) keeps its traceback.

Standard library only, so the entry point can use it before torch or Hydra are imported.
"""

from __future__ import annotations

import os

VERBOSE_FLAGS = ("-v", "--verbose")
VERBOSE_ENV = "ENGAGE_SEQ_VERBOSE"
# Errors whose message already says what is wrong and what to do: the package's own error
# classes all derive from ValueError (schema, scoring, safe config, ...) or OSError (a full
# disk, a missing or unreadable file); KeyError/AttributeError come from typo'd config keys.
_USER_ERROR_NAMES = {
    "ConfigAttributeError",  # omegaconf: cfg.dtaa (a key that does not exist)
    "ConfigKeyError",
    "MissingMandatoryValue",  # omegaconf: a ??? value nobody set
    "InterpolationResolutionError",
    "ValidationError",
}


def wants_traceback() -> bool:
    """-v / --verbose (recorded in the environment by the entry point) or HYDRA_FULL_ERROR=1."""
    return os.environ.get(VERBOSE_ENV) == "1" or os.environ.get("HYDRA_FULL_ERROR") == "1"


def user_error_message(error: BaseException) -> str | None:
    """The one-line message for an error the user can fix, or None for anything else.

    Hydra wraps a failing ``_target_`` in ``InstantiationException``; the cause (e.g. a
    missing file behind ``data.source.path``) is what the user needs to read."""
    cause = error
    while type(cause).__name__ == "InstantiationException" and cause.__cause__ is not None:
        cause = cause.__cause__
    is_user_error = isinstance(cause, ValueError | OSError) or (
        type(cause).__name__ in _USER_ERROR_NAMES
    )
    if not is_user_error:
        return None
    message = " ".join(str(cause).split()) or type(cause).__name__
    return f"{message} (run with -v or HYDRA_FULL_ERROR=1 for the stack trace)"
