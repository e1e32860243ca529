"""End-to-end fixtures (shares the worker fixtures: random fsdet-s weights, private key prefix)."""

from __future__ import annotations

import pytest

from tests.e2e.procs import Proc
from tests.worker.conftest import (  # noqa: F401 (fixtures)
    detector,
    keys,
    low_threshold_detector,
    random_weights,
    rconn,
    start_worker,
    wprefix,
    wsettings,
)


@pytest.fixture
def procs(tmp_path, request):
    """Start processes with procs.append(Proc); all are stopped at teardown, logs shown on failure."""
    started: list[Proc] = []
    yield started
    for p in started:
        p.close()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for p in started:
            print(f"----- {p.name} ({p.log}) -----\n{p.output()}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    if rep.when == "call":
        item.rep_call = rep
    return rep
