"""Run a snippet in a child Python process that can crash itself on purpose.

Kills are real SIGKILLs sent by the child to itself at a chosen point (half-way through
writing a file, just before a rename, between an artifact and its sidecar), so a case hits
the same instant on every run instead of depending on timing.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

PRELUDE = """
import os, signal, sys

def die():
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)

def half_written_then_die(write):
    '''Wrap write(obj, file, ...): let it finish, cut the file to half its size, die.'''
    def wrapper(obj, file, *args, **kwargs):
        write(obj, file, *args, **kwargs)
        with open(file, "r+b") as handle:
            handle.truncate(os.path.getsize(file) // 2)
        die()
    return wrapper
"""


def run_child(body: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``body`` (indented or not) after the prelude, with ``args`` as ``sys.argv[1:]``."""
    code = PRELUDE + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout
    )
