"""The fenced shell and Python blocks of README.md and the docs/ pages, with their doctest
directives: what `tests/integration/test_docs.py` runs, composes or skips, in document order.

Why directives: a README command either runs as written (on tiny data) or says why not, in
an HTML comment right above its block, invisible on GitHub. A block without one is an error,
so a new undocumented command turns CI red instead of rotting silently.

Directive grammar (the comment must end on the line before the fence, blank lines allowed)::

    <!-- doctest: run -->                 every command of the block runs for real
    <!-- doctest: compose -->             every (engage-train) command is composed, not run
    <!-- doctest: skip: <reason> -->      nothing runs; the reason is printed
    <!-- doctest: run
      needs: exports/events/              fixtures the harness writes first (test_docs.FIXTURES)
      2, 3: compose                       per command (1-based): run | compose | skip: <reason>
      3: tiny: seed=1,2,3 -> seed=1       size hint: text replaced before running (must match)
      <run> = oldest *_lstm               what a placeholder stands for: a glob; the word holding
                                          it becomes the oldest/newest (default) existing path
                                          matching it (default glob: *)
      1: exit: 1                          the exit status the command must end with (default 0)
    -->

A shell block's commands are its logical lines (backslash continuations joined, blank and
comment-only lines left out); a Python block is one command. Only engage-train commands can
be composed: Hydra composes their exact overrides and the pre-flight checks of
`engage_seq.experiments.run.train` run on the result, without reading data or training.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

SHELL_LANGUAGES = frozenset({"bash", "sh", "shell", "console"})
PYTHON_LANGUAGES = frozenset({"python", "py"})
MODES = ("run", "compose", "skip")
PLACEHOLDER = re.compile(r"<[a-z][a-z_]*>")
# An opening fence: up to 3 spaces, 3+ backticks (or tildes) and an info string that, for
# backticks, holds none (CommonMark: "```` ```bash ````" starting a line is inline code).
_FENCE = re.compile(r"^( {0,3})(`{3,}(?=[^`]*$)|~{3,})\s*([\w+-]*)")
_DIRECTIVE_START = re.compile(r"^\s*<!--\s*doctest:(.*)$")
_NUMBERED = re.compile(r"^(\d+(?:\s*,\s*\d+)*)\s*:\s*(.*)$")
_PLACEHOLDER_RULE = re.compile(r"^(<[a-z][a-z_]*>)\s*=\s*(?:(oldest|newest)\s+)?(\S+)$")


class DirectiveError(ValueError):
    """A block without a directive, or a directive this module cannot read."""


@dataclass(frozen=True)
class Placeholder:
    """`<name>` in a command stands for the oldest or newest path matching `pattern`."""

    pattern: str
    pick: str = "newest"


@dataclass
class Command:
    """One command of a block, with what the directive says to do with it."""

    number: int  # 1-based within its block
    text: str  # as written: one logical line (continuations joined) or a whole Python block
    mode: str = "run"
    reason: str = ""  # for mode == "skip"
    tiny: list[tuple[str, str]] = field(default_factory=list)
    placeholders: dict[str, Placeholder] = field(default_factory=dict)
    exit_code: int = 0

    @property
    def program(self) -> str:
        """The executable's name (``engage-train`` for ``.venv/bin/engage-train ...``)."""
        try:
            words = shlex.split(self.text, comments=True)
        except ValueError:
            return ""
        return Path(words[0]).name if words else ""


@dataclass
class Block:
    """A fenced block and its commands; ``where`` is ``file:line`` of its opening fence."""

    path: Path
    line: int
    language: str
    source: str
    commands: list[Command]
    needs: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"

    @property
    def is_python(self) -> bool:
        return self.language in PYTHON_LANGUAGES


def shell_commands(source: str) -> list[str]:
    """Logical lines of a shell block: continuations joined, blank/comment-only lines out."""
    commands, pending = [], ""
    for raw in source.splitlines():
        line = pending + raw.strip() if pending else raw.rstrip()
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        pending = ""
        if line.strip() and not line.lstrip().startswith("#"):
            commands.append(line.strip())
    if pending.strip():
        commands.append(pending.strip())
    return commands


def _parse_mode(text: str, where: str) -> tuple[str, str]:
    mode, _, reason = text.partition(":")
    mode, reason = mode.strip(), reason.strip()
    if mode not in MODES:
        raise DirectiveError(f"{where}: unknown doctest mode {text!r}; use run, compose or skip")
    if mode == "skip" and not reason:
        raise DirectiveError(f"{where}: 'skip' needs a reason: skip: <why it cannot run here>")
    if mode != "skip" and reason:
        raise DirectiveError(f"{where}: {mode!r} takes no argument (got {text!r})")
    return mode, reason


def _apply_item(
    block: Block, targets: list[Command], item: str, where: str, numbered: bool
) -> None:
    """One directive line (without its command numbers) applied to ``targets``."""
    key, _, value = item.partition(":")
    key, value = key.strip(), value.strip()
    placeholder = _PLACEHOLDER_RULE.match(item)
    if placeholder:
        name, pick, pattern = placeholder.groups()
        for command in targets:
            command.placeholders[name] = Placeholder(pattern, pick or "newest")
    elif key == "needs":
        if numbered:
            raise DirectiveError(f"{where}: 'needs:' applies to the whole block, not to commands")
        block.needs += value.split()
    elif key == "tiny":
        old, arrow, new = value.partition(" -> ")
        if not arrow or not old.strip():
            raise DirectiveError(f"{where}: write a size hint as 'tiny: <old text> -> <new text>'")
        for command in targets:
            command.tiny.append((old.strip(), new.strip()))
    elif key == "exit":
        if not value.isdigit():
            raise DirectiveError(f"{where}: 'exit:' takes a number (got {value!r})")
        for command in targets:
            command.exit_code = int(value)
    else:
        mode, reason = _parse_mode(item, where)
        for command in targets:
            command.mode, command.reason = mode, reason


def _apply_directive(block: Block, lines: list[str], where: str) -> None:
    """Fill in the block's commands from its directive's lines (the first is the mode)."""
    block_mode, block_reason = _parse_mode(lines[0], where)
    for command in block.commands:
        command.mode, command.reason = block_mode, block_reason
    for line in lines[1:]:
        numbered = _NUMBERED.match(line)
        targets = block.commands
        item = line
        if numbered:
            numbers = [int(n) for n in numbered.group(1).split(",")]
            missing = [n for n in numbers if not 1 <= n <= len(block.commands)]
            if missing:
                raise DirectiveError(
                    f"{where}: command {missing[0]} does not exist (the block has "
                    f"{len(block.commands)}); directives number commands from 1"
                )
            targets = [block.commands[n - 1] for n in numbers]
            item = numbered.group(2)
        _apply_item(block, targets, item.strip(), where, numbered is not None)
    for command in block.commands:
        if command.mode == "compose" and command.program != "engage-train":
            raise DirectiveError(
                f"{where}: command {command.number} ({command.program or 'Python'}) cannot be "
                "composed: only engage-train commands are; run or skip it"
            )
        for old, _ in command.tiny:
            if old not in command.text:
                raise DirectiveError(
                    f"{where}: size hint {old!r} is not in command {command.number}"
                )


def _directive_lines(lines: list[str], start: int, path: Path) -> tuple[list[str], int]:
    """The directive starting at ``lines[start]``: its content lines, and the index of the
    line holding ``-->``."""
    first = _DIRECTIVE_START.match(lines[start]).group(1)  # type: ignore[union-attr]
    content, end = [first], start
    while "-->" not in content[-1]:
        end += 1
        if end >= len(lines):
            raise DirectiveError(f"{path.name}:{start + 1}: doctest comment never closed (-->)")
        content.append(lines[end])
    content[-1] = content[-1].split("-->", 1)[0]
    return [c.strip() for c in content if c.strip()], end


def parse_markdown(path: Path, text: str | None = None) -> list[Block]:
    """Every ```bash/sh/python block of a Markdown file, in order, with its directive
    applied. Raises `DirectiveError` naming ``file:line`` for a block without a directive, a
    directive not followed by a block, or one that does not parse."""
    lines = (path.read_text() if text is None else text).splitlines()
    blocks: list[Block] = []
    pending: tuple[list[str], int] | None = None  # directive lines, where it started
    i = 0
    while i < len(lines):
        line = lines[i]
        if _DIRECTIVE_START.match(line):
            if pending is not None:
                raise DirectiveError(f"{path.name}:{pending[1]}: doctest comment without a block")
            content, end = _directive_lines(lines, i, path)
            pending, i = (content, i + 1), end + 1
            continue
        fence = _FENCE.match(line)
        if fence is None:
            if pending is not None and line.strip():
                raise DirectiveError(
                    f"{path.name}:{pending[1]}: doctest comment not followed by a code block"
                )
            i += 1
            continue
        indent, marker, language = fence.groups()
        body, j = [], i + 1
        while j < len(lines) and not lines[j].strip().startswith(marker):
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j])
            j += 1
        language = language.lower()
        if language in SHELL_LANGUAGES | PYTHON_LANGUAGES:
            where = f"{path.name}:{i + 1}"
            if pending is None:
                raise DirectiveError(
                    f"{where}: ```{language} block has no doctest directive: put "
                    "<!-- doctest: run --> (or compose, or skip: <reason>) on the line above it"
                )
            source = "\n".join(body) + "\n"
            texts = [source] if language in PYTHON_LANGUAGES else shell_commands(source)
            commands = [Command(n, t) for n, t in enumerate(texts, start=1)]
            block = Block(path, i + 1, language, source, commands)
            _apply_directive(block, pending[0], f"{where} (directive at line {pending[1]})")
            blocks.append(block)
        elif pending is not None:
            raise DirectiveError(
                f"{path.name}:{pending[1]}: doctest comment above a ```{language or 'plain'} "
                "block, which is not run; remove it"
            )
        pending = None
        i = j + 1
    if pending is not None:
        raise DirectiveError(f"{path.name}:{pending[1]}: doctest comment without a block")
    return blocks


def _nav_pages(entries: object) -> list[str]:
    """The page paths of an mkdocs ``nav`` (nested lists of ``title: path`` or bare paths),
    in reading order."""
    if isinstance(entries, str):
        return [entries]
    if isinstance(entries, dict):
        return [page for value in entries.values() for page in _nav_pages(value)]
    if isinstance(entries, list):
        return [page for entry in entries for page in _nav_pages(entry)]
    return []


def documents(repo: Path) -> list[Path]:
    """README.md, then the docs pages in the site's nav order (mkdocs.yml), then any page the
    nav leaves out (sorted): the order their blocks run in. Nav order is reading order, and it
    is what the blocks rely on: the experiments page trains the runs that later pages export,
    evaluate and monitor."""
    import yaml  # PyYAML comes with Hydra (omegaconf)

    docs = repo / "docs"
    if not docs.is_dir():
        return [repo / "README.md"]
    config = repo / "mkdocs.yml"
    nav = yaml.safe_load(config.read_text()).get("nav", []) if config.exists() else []
    ordered = [docs / page for page in _nav_pages(nav)]
    rest = sorted(set(docs.rglob("*.md")) - set(ordered))
    return [repo / "README.md", *ordered, *rest]
