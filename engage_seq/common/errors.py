"""`EngageSeqError`: the base of every error the package raises on purpose.

A caller who wants "anything engage_seq refused" catches one class; each subclass still
derives from the built-in it always was (``ValueError``, ``RuntimeError``, ``OSError``), so
code written against those keeps working and no message changes.
"""

from __future__ import annotations


class EngageSeqError(Exception):
    """An error engage_seq raised on purpose, with a message that says what to do."""
