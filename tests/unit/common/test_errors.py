"""Every error class the package defines derives from `EngageSeqError` (one class to catch)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import engage_seq
from engage_seq.common.errors import EngageSeqError


def _package_modules() -> list[str]:
    return [
        info.name
        for info in pkgutil.walk_packages(engage_seq.__path__, prefix="engage_seq.")
        if not info.ispkg
    ]


def test_every_error_class_subclasses_the_package_base() -> None:
    found: list[str] = []
    for name in _package_modules():
        module = importlib.import_module(name)
        for cls_name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != name or not issubclass(cls, Exception):
                continue
            if cls_name.startswith("_"):  # private control flow (e.g. a skipped pre-check)
                continue
            found.append(cls_name)
            assert issubclass(cls, EngageSeqError), f"{name}.{cls_name} does not subclass it"
    assert {"EventSchemaError", "ScoringError", "UnsafeTargetError", "DriftError"} <= set(found)
