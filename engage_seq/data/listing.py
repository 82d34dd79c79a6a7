"""Which files an input path means: a folder is listed here, not by Polars.

Polars reads every file of a folder it is given (a README.txt is a read error), follows a
link loop until the OS refuses, and opens files only once a scan is under way, so its
failures arrive as bare library or OS errors far from the cause. Listing the folder here
reads only .parquet/.csv files (the rest counted in a warning), refuses a folder or file
reached twice through links (its events would be read twice), and opens every file once
before any work, so each problem is an `EventSchemaError` naming the file and what to do.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

from engage_seq.data.schema import EventSchemaError

log = logging.getLogger(__name__)

DATA_SUFFIXES = (".parquet", ".csv")


def folder_files(root: Path) -> list[Path]:
    """Every .parquet/.csv file below ``root``, following links to folders.

    A link that leads back to a folder already listed (a link loop, or a second link to the
    same folder) is an error naming it: its files would be read twice. Other files are not
    read and are counted in the log: a warning for e.g. README.txt or events.parquet.gz, a
    debug line for markers whose name starts with "_" or "." (_SUCCESS, .crc checksums).
    """
    found: list[Path] = []
    skipped: list[Path] = []
    seen: dict[str, str] = {}

    def refuse(error: OSError) -> None:
        raise EventSchemaError(
            f"cannot list folder {error.filename!r} under {str(root)!r}: {error.strerror}. "
            "Give the account running engage_seq read access to it, or point the input at "
            "the folders it can read"
        )

    for folder, subfolders, names in os.walk(root, onerror=refuse, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            raise EventSchemaError(
                f"folder {folder!r} is {seen[real]!r} again, reached through a symbolic link "
                "(a link loop, or two links to one folder): its files would be read twice. "
                "Remove the link, or point the input at a glob that avoids it"
            )
        seen[real] = folder
        subfolders.sort()
        for name in names:
            path = Path(folder) / name
            (found if path.suffix in DATA_SUFFIXES else skipped).append(path)
    noted = [p for p in skipped if not p.name.startswith(("_", "."))]
    if noted:
        log.warning("%s: %d file(s) neither .parquet nor .csv are not read (e.g. %s)",
                    root, len(noted), noted[0].relative_to(root))  # fmt: skip
    if len(skipped) > len(noted):
        log.debug("%s: %d marker file(s) not read", root, len(skipped) - len(noted))
    return found


def refuse_repeats(files: list[Path], pattern: str) -> None:
    """A glob that reaches one file twice (through a link loop or two links) would read its
    events twice: refuse it, naming both paths."""
    first: dict[str, Path] = {}
    for path in files:
        real = os.path.realpath(path)
        if real in first:
            raise EventSchemaError(
                f"{pattern!r} reaches {str(first[real])!r} again as {str(path)!r} (a symbolic "
                "link loop, or two links to one file): its events would be read twice. Remove "
                "the link or narrow the glob"
            )
        first[real] = path


_OPEN_HINTS = {
    errno.EACCES: "give the account running engage_seq read permission (chmod/chown)",
    errno.EPERM: "give the account running engage_seq read permission (chmod/chown)",
    errno.ENOENT: "it is a broken symbolic link or was removed: fix the link",
    errno.ELOOP: "it is a symbolic link that leads back to itself: fix the link",
}


def check_readable(path: Path) -> None:
    """Open and close ``path``: an unreadable file fails here, by name and with what to do,
    not halfway through a scan as a bare OS error."""
    try:
        os.close(os.open(path, os.O_RDONLY))
    except OSError as error:
        hint = _OPEN_HINTS.get(error.errno or 0, "check the file")
        raise EventSchemaError(
            f"cannot open event file {str(path)!r}: {error.strerror}. {hint.capitalize()}, "
            "or remove it from the input"
        ) from None
