"""Command line: one thin module per console script (`train`, `export`, `score`, `evaluate`,
`drift`, `backtest`, `sweep_report`, `quickstart`), each parsing its arguments, calling the
library and printing, plus what they share (`args`: ``key=value`` arguments; `user_errors`:
one-line messages and exit status 2 for the user's own mistakes). It may import every other
subpackage; nothing imports it, so the library never depends on how a command is spelled.
"""

from __future__ import annotations

from engage_seq.common.moved import package_getattr

__getattr__ = package_getattr(__name__)  # 0.1 class paths: engage_seq.common.moved
