"""Static checks over the project's Python sources (pyflakes): no undefined names, no unused
imports, no names redefined before use.

A name used but never imported fails only when its line runs; this check finds it without
running anything. Generated rosidl packages (``lens_ros/msg``, ``lens_ros/action``) are skipped,
and a line may opt out with ``# noqa`` (a deliberate re-export or availability probe).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import REPO

pyflakes_api = pytest.importorskip("pyflakes.api")
from pyflakes import reporter as pyflakes_reporter  # noqa: E402

ROOTS = ("lens_ros", "bench", "scripts", "test")
GENERATED = (REPO / "lens_ros" / "msg", REPO / "lens_ros" / "action")


class _Collect(pyflakes_reporter.Reporter):
    def __init__(self) -> None:
        self.messages: list[str] = []

    def unexpectedError(self, filename, msg) -> None:  # noqa: N802 (pyflakes' API)
        self.messages.append(f"{filename}: {msg}")

    def syntaxError(self, filename, msg, lineno, offset, text) -> None:  # noqa: N802
        self.messages.append(f"{filename}:{lineno}: syntax error: {msg}")

    def flake(self, message) -> None:
        self.messages.append(str(message))


def _sources() -> list[Path]:
    files = []
    for root in ROOTS:
        for path in sorted((REPO / root).rglob("*.py")):
            if any(g in path.parents for g in GENERATED) or ".venv" in path.parts:
                continue
            files.append(path)
    return files


def _noqa(message: str) -> bool:
    path, lineno = message.split(":", 2)[:2]
    line = Path(path).read_text().splitlines()[int(lineno) - 1]
    return "# noqa" in line


def test_sources_have_no_undefined_or_unused_names():
    files = _sources()
    assert len(files) > 100, "the source walk found too few files; the roots moved?"
    rep = _Collect()
    for path in files:
        pyflakes_api.checkPath(str(path), rep)
    problems = [m for m in rep.messages if not _noqa(m)]
    assert not problems, "pyflakes:\n" + "\n".join(problems)


def test_the_check_catches_an_undefined_name(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    return Image.open('x')\n")
    rep = _Collect()
    pyflakes_api.checkPath(str(bad), rep)
    assert any("undefined name 'Image'" in m for m in rep.messages)
