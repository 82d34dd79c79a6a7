"""No silent skips: a test skips only through helpers/prerequisites.py, which fails instead
under CI (CI=true, set by .ci/run) unless the skip says why CI may lack the prerequisite."""

from __future__ import annotations

import re

import pytest
from helpers import REPO
from helpers.prerequisites import require_module, require_or_skip

HELPER = REPO / "tests" / "helpers" / "prerequisites.py"
BARE_SKIP = re.compile(r"pytest\.(skip\(|importorskip\(|mark\.skip)|\bskipif\b|unittest\.skip")


def test_no_test_skips_except_through_the_prerequisites_helper() -> None:
    found = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in sorted((REPO / "tests").rglob("*.py"))
        if path not in (HELPER, REPO / "tests" / "test_prerequisites.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if BARE_SKIP.search(line)
    ]
    assert found == [], "use helpers.prerequisites.require_or_skip instead:\n" + "\n".join(found)


@pytest.mark.parametrize("ci", ["", "false", "1"])
def test_a_missing_prerequisite_skips_outside_ci(monkeypatch, ci: str) -> None:
    monkeypatch.setenv("CI", ci)
    require_or_skip(True, "present")  # no-op
    with pytest.raises(pytest.skip.Exception, match=r"^no g\+\+$"):
        require_or_skip(None, "no g++")
    with pytest.raises(pytest.skip.Exception, match="cannot import no_such_module_xyz"):
        require_module("no_such_module_xyz")


def test_a_missing_prerequisite_fails_under_ci(monkeypatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true and a prerequisite is missing: no g"):
        require_or_skip(None, "no g++")
    with pytest.raises(pytest.fail.Exception, match="no_such_module_xyz"):
        require_module("no_such_module_xyz")
    assert require_module("json").__name__ == "json"


def test_a_skip_allowed_under_ci_says_so_in_its_reason(monkeypatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.skip.Exception, match=r"^no mount; allowed under CI: X covers it$"):
        require_or_skip(False, "no mount", ci_may_skip="X covers it")
