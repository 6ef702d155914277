"""SIGINT/SIGTERM at seeded random moments (while loading, working or idle) on every node and
tool: the promised exit status (0, or 130 for an interrupted batch job) and no traceback.

Two stops per tool here; ``scripts/stop_at_random.py --runs 20`` runs the full sweep.
"""
from __future__ import annotations

import importlib.util
import random

import pytest

from conftest import REPO

pytestmark = [pytest.mark.ros, pytest.mark.slow]

_spec = importlib.util.spec_from_file_location("stop_at_random",
                                               REPO / "scripts" / "stop_at_random.py")
stops = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(stops)


@pytest.fixture(scope="module")
def resources(tmp_path_factory):
    work = tmp_path_factory.mktemp("stops")
    return work, stops._prepare(work)


@pytest.mark.parametrize("tool", list(stops.TOOLS))
def test_stops_are_clean(tool, resources):
    work, res = resources
    rng = random.Random(f"{tool}-19")
    for i in range(2):
        run = stops.stop_once(tool, res, work, rng, i)
        log = open(run["log"]).read()
        assert run["rc"] in stops.TOOLS[tool][1], (run, log[-3000:])
        assert not run["traceback"], (run, log[-3000:])
