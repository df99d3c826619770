"""Shared fixtures: every multi-process test runs under each start method."""

import multiprocessing as mp

import pytest

START_METHODS = ["fork", "spawn", "forkserver"]


@pytest.fixture(params=START_METHODS)
def ctx(request):
    """A multiprocessing context for each start method."""
    return mp.get_context(request.param)
