"""Configs read back from run folders: untrusted input, bounded before anything is built.

engage-evaluate and its sibling runs, engage-export and engage-sweep-report read a run
folder's config, which anyone may have edited. `load_untrusted_config` bounds its size,
nesting and node count and refuses YAML anchors and ``${...}`` interpolations (both expand a
few KB into GB) *before* building anything, then runs `safe_config.check_targets` on it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from engage_seq.common.safe_config import MAX_YAML_DEPTH, UnsafeConfigError, check_targets

# A config engage-train writes is a few KB, ~200 nodes, ~6 levels deep: far below these.
MAX_UNTRUSTED_BYTES = 1_000_000
MAX_YAML_NODES = 20_000
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: fast, and no recursion


def _check_yaml_shape(text: str, path: Path) -> None:
    """Walk the parser's events (linear, nothing built) and refuse anchors/aliases, deep
    nesting and huge node counts before any object exists."""
    depth = nodes = 0
    for event in yaml.parse(text, Loader=_LOADER):
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise UnsafeConfigError(
                f"{path} line {line}: YAML anchors/aliases are refused in a config read back "
                "from a run folder (an alias can expand a few KB into GB; engage-train never "
                "writes them); rewrite the values out in full"
            )
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        nodes += isinstance(event, yaml.NodeEvent)
        if depth > MAX_YAML_DEPTH or nodes > MAX_YAML_NODES:
            raise UnsafeConfigError(
                f"{path} line {line}: over {MAX_YAML_DEPTH} levels deep or {MAX_YAML_NODES:,} "
                "values, far beyond any config engage-train writes; refusing to parse it"
            )


def read_untrusted_yaml(path: str | Path, max_bytes: int = MAX_UNTRUSTED_BYTES) -> Any:
    """Plain data of a YAML file from a run folder, within size, nesting and node limits and
    without anchors/aliases (checked before parsing). Raises `UnsafeConfigError`, or
    ValueError for a file that is not YAML; both name the file."""
    path = Path(path)
    with open(path, "rb") as handle:
        raw = handle.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise UnsafeConfigError(
            f"{path} is over {max_bytes:,} bytes; the files engage-train writes are a few KB, "
            "so it is refused unread (restore the run's own file)"
        )
    try:
        text = raw.decode("utf-8")
        _check_yaml_shape(text, path)
        return yaml.load(text, Loader=_LOADER)  # a safe loader
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not UTF-8 text (byte {error.start})") from None
    except yaml.YAMLError as error:
        raise ValueError(f"{path} is not valid YAML: {error}".replace("\n", " ")) from None


def _refuse_interpolations(data: Any, path: Path) -> None:
    """``${...}`` would be resolved by OmegaConf (nested string interpolations blow up like
    aliases); config_resolved.yaml is written resolved, so a run's own file has none."""
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        key, value = stack.pop()
        if isinstance(value, dict):
            stack += [(f"{key}.{k}" if key else str(k), v) for k, v in value.items()]
        elif isinstance(value, list):
            stack += [(f"{key}[{i}]", v) for i, v in enumerate(value)]
        elif isinstance(value, str) and "${" in value:
            raise UnsafeConfigError(
                f"{path}: key {key} holds an interpolation ('${{...}}'); a run's resolved "
                "config has none, so the file was edited: restore the run's own file"
            )


def load_untrusted_config(path: str | Path, extra: Iterable[str] | None = None) -> dict:
    """A run folder's config as plain data, refused (`UnsafeConfigError` naming the file and
    key) unless it passes `read_untrusted_yaml`, has no interpolations and every entry naming
    code passes `check_targets` with ``extra`` (None: the person's `trusted_targets`)."""
    path = Path(path)
    data = read_untrusted_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UnsafeConfigError(f"{path} is not a mapping of settings; restore the run's own file")
    _refuse_interpolations(data, path)
    try:
        check_targets(data, extra)
    except UnsafeConfigError as error:  # UnsafeTargetError or a refused env_set/env_copy
        raise type(error)(f"{path}: {error}") from None
    return data
