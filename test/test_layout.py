"""The package layout: which parts may import which, no import cycles, rclpy only under ros/,
and no dangling links in the documentation.

Imports are read from the source (``ast``), function-level imports included and
``if TYPE_CHECKING:`` blocks excluded (they never run). A module's imports of its own package's
``__init__`` are ignored.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from conftest import REPO

PKG = REPO / "lens_ros"
GENERATED = {"msg", "action"}  # rosidl output, not ours


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG).parts
        if rel[0] in GENERATED:
            continue
        mods[_module_name(path)] = path
    return mods


class _ImportCollector(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool) -> None:
        self.module, self.is_package, self.targets = module, is_package, []

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
        if name == "TYPE_CHECKING":
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.targets += [alias.name for alias in node.names]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.module.split(".")
            if not self.is_package:
                base = base[:-1]
            base = base[:len(base) - node.level + 1]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        self.targets.append(prefix)
        self.targets += [f"{prefix}.{alias.name}" for alias in node.names]


def _graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(module -> lens_ros modules it imports, module -> external top-level packages)."""
    mods = _modules()
    internal: dict[str, set[str]] = {}
    external: dict[str, set[str]] = {}
    for name, path in mods.items():
        collector = _ImportCollector(name, path.name == "__init__.py")
        collector.visit(ast.parse(path.read_text(encoding="utf-8")))
        internal[name], external[name] = set(), set()
        for target in collector.targets:
            if not target.startswith("lens_ros"):
                external[name].add(target.split(".")[0])
                continue
            while target and target not in mods:
                target = target.rpartition(".")[0]
            # the package's own __init__ (and lens_ros itself) is not a dependency edge
            if target and target != name and not name.startswith(target + "."):
                internal[name].add(target)
    return internal, external


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


INTERNAL, EXTERNAL = _graph()


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_the_import_walk_sees_known_edges():
    # guards the walker itself: a broken walk would make every other test here pass vacuously
    assert "lens_ros.model.segmenter" in INTERNAL["lens_ros.serving.worker"] or \
        "lens_ros.serving.requests" in INTERNAL["lens_ros.serving.worker"]
    assert "lens_ros.core" in INTERNAL["lens_ros.model.segmenter"]
    assert "rclpy" in EXTERNAL["lens_ros.ros.lens_node"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles_inside_the_package():
    assert _cycles(INTERNAL) == []


def test_rclpy_is_imported_only_under_ros():
    users = sorted(m for m, ext in EXTERNAL.items() if "rclpy" in ext and _part(m) != "ros")
    assert users == []


@pytest.mark.parametrize("part, forbidden", [
    ("core", {"model", "training", "evaluation", "serving", "bag", "synthetic", "speech", "demo",
              "ros", "data", "conversions"}),
    ("data", {"model", "training", "evaluation", "serving", "bag", "synthetic", "speech", "demo",
              "ros", "conversions"}),
    ("model", {"training", "evaluation", "serving", "bag", "demo", "ros"}),
    ("training", {"serving", "bag", "demo", "ros"}),
    ("evaluation", {"training", "serving", "bag", "demo", "ros"}),
    ("synthetic", {"training", "serving", "demo", "ros"}),
    ("bag", {"training", "demo", "ros"}),
    ("conversions", {"model", "training", "serving", "bag", "demo", "ros"}),
    ("serving", {"training", "bag", "demo", "ros"}),
    ("speech", {"model", "training", "serving", "bag", "demo", "ros"}),
])
def test_dependencies_point_down(part, forbidden):
    offenders = sorted(f"{m} -> {t}" for m, targets in INTERNAL.items() if _part(m) == part
                       for t in targets if _part(t) in forbidden)
    assert offenders == []


# ---- documentation links ---------------------------------------------------------------------
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _doc_files() -> list[Path]:
    return [REPO / "README.md", REPO / "CHANGELOG.md", *sorted((REPO / "docs").rglob("*.md"))]


@pytest.mark.parametrize("doc", _doc_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_in_docs_point_at_files(doc):
    assert doc.is_file(), f"{doc.relative_to(REPO)} is missing"
    broken = []
    for target in LINK.findall(doc.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # web links and anchors
        path = (doc.parent / target.split("#")[0]).resolve()
        if not path.exists():
            broken.append(target)
    assert broken == [], f"{doc.relative_to(REPO)} links to missing files"


def test_link_check_catches_a_broken_link(tmp_path):
    doc = tmp_path / "page.md"
    doc.write_text("[ok](page.md) [web](https://example.org) [gone](nothere/file.md)")
    found = [t for t in LINK.findall(doc.read_text())
             if not re.match(r"[a-z]+:", t) and not (doc.parent / t).exists()]
    assert found == ["nothere/file.md"]
