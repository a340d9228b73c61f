"""Shared pytest configuration: long Monte Carlo runs are marked ``slow`` and
skipped unless ``--runslow`` is given (CI runs the default suite).

One BLAS thread for the suite and the recipes it runs as subprocesses: the
matrices in tests are small, and threaded BLAS on them is slower even on an
idle 2-core machine (the diffusion recipe's quick run: 120 s threaded, 87 s
with one thread). A value set by the caller is kept."""
import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import pytest  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run slow Monte Carlo tests")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
