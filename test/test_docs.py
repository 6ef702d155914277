"""The documentation speaks of the product: README.md stays short and opens with what a new user
needs, and no text file in the repository narrates development rounds, cites issue numbers or
points at documents that are not in the repository."""
from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCANNED = ["README.md", "CHANGELOG.md", "Makefile", ".ci", "docs", "lens_ros", "config", "models",
           "scripts", "bench", "test", "requirements", "tools"]
# Assembled at run time from pieces, so that neither this file nor its bytecode matches itself
# (the compiler folds "a" + "b" into one constant; it does not fold a join).
_J = "".join
FORBIDDEN = re.compile("|".join([
    _J(["sess", r"ion[ -][0-9]"]), _J(["iss", r"ue [0-9]"]), _J(["lens-", "reference"]),
    _J(["demo-", r"model\.md"]), _J(["model-", "stack"]), _J(["DES", r"IGN\.md"]),
    _J(["pit", r"fall [0-9]"]), _J(["(?-i:README", "_[a-z])"]), _J(["our ", "machines"]),
    _J(["shared/", "reference"])]), re.IGNORECASE)
README_MAX_LINES = 250


def _text_files():
    for entry in SCANNED:
        path = REPO / entry
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for f in files:
            if "__pycache__" in f.parts:
                continue
            try:
                yield f, f.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue  # images, audio, generated binaries


def _hits(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if FORBIDDEN.search(line)]


def test_no_development_history_or_outside_references():
    found = {str(f.relative_to(REPO)): hits for f, text in _text_files() if (hits := _hits(text))}
    assert found == {}, "state the fact itself instead of a round, an issue or an outside document"


def test_the_pattern_catches_what_it_should():
    assert _hits(_J(["measured in Sess", "ion 3"])) and _hits(_J(["see lens-", "reference.md"]))
    assert _hits(_J(["(pit", "fall 12)"])) and _hits(_J(["see README", "_node.md"]))
    assert _hits(_J(["the sess", "ion-1 recipe"]))
    assert not _hits("the session's command") and not _hits("TrackSession.step")


def test_readme_is_short_and_opens_with_what_a_user_needs():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"
    first = "\n".join(lines[:40])
    for needed in ("](docs/img/demo_overlays.png)", "Prerequisites", "Python 3.11", "make demo",
                   "make test", "LENS-3B", "knows only"):
        assert needed in first, f"README.md's first 40 lines lack {needed!r}"
