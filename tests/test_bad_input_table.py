"""Every row of the bad-input catalogue (tests/bad_inputs.py, docs/bad-input.md): its exit code, its one
line, no traceback, and no password from the input in the output."""

from __future__ import annotations

import pytest

from tests.bad_inputs import CASES, make_files, run


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return make_files(tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize("case", CASES, ids=[c.what for c in CASES])
def test_bad_input(case, files, redis_settings, redis_client):  # redis_client deletes the run's keys after
    res = run(case, files, redis_settings.prefix)
    assert res.exit_code == case.code, res.output
    assert case.needle in res.output, res.output
    assert "Traceback" not in res.output and "S3cret" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
