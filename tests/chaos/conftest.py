"""Chaos tests reuse the worker fixtures (random model, private key prefix on the shared Redis)."""

from tests.worker.conftest import (  # noqa: F401
    detector,
    keys,
    random_weights,
    rconn,
    start_worker,
    wprefix,
    wsettings,
)
