"""Monte Carlo on a real Dask cluster (issue 17 item 5): a
``dask.distributed.LocalCluster`` with two worker processes, trials sent in
chunks through ``client.get_executor()``; the result must be bit-identical to
the serial run with the same seed (trial ``t`` draws from
``SeedSequence(seed, spawn_key=(t, j))`` whatever process runs it, and the
chunks are folded back in trial order). Skipped when Dask is not installed
(``pip install 'symrmt[dask]'``; the ``test`` extra includes it)."""
import numpy as np
import pytest

import symrmt as sr

distributed = pytest.importorskip("distributed")

n, d = sr.dims("n d")
lam = sr.scalar("lam")
Sigma = sr.Covariance("Sigma", d)
X = sr.GaussianData("X", n, Sigma)
G = (X.T * X / n + lam * sr.I(d)).inverse()
EXPR = sr.ntr(Sigma * G)
VAR = sr.var(sr.ntr(G))           # jackknife path: rows kept, not only the running mean
BIND = dict(Sigma=np.arange(1, 31) ** -1.0, n=45, lam=np.array([0.05, 0.2, 1.0]))
TRIALS = 300


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=40) as cluster, \
            distributed.Client(cluster) as c:
        yield c


def test_dask_executor_bit_identical_to_serial(client):
    serial = sr.monte_carlo(EXPR, trials=TRIALS, seed=11, progress=False, **BIND)
    dask = sr.monte_carlo(EXPR, trials=TRIALS, seed=11, progress=False, executor=client.get_executor(), **BIND)
    assert dask.trials == serial.trials == TRIALS
    np.testing.assert_array_equal(dask.mean, serial.mean)      # bit for bit, not approximately
    np.testing.assert_array_equal(dask.sem, serial.sem)
    # the work really ran on the two worker processes
    assert len(client.scheduler_info()["workers"]) == 2
    other = sr.monte_carlo(EXPR, trials=TRIALS, seed=12, progress=False, **BIND)
    assert not np.array_equal(other.mean, serial.mean)          # the seed matters


def test_dask_executor_variance_and_series(client):
    counts = [100, 300]
    serial = sr.monte_carlo(VAR, trials=counts, seed=5, progress=False, **BIND)
    dask = sr.monte_carlo(VAR, trials=counts, seed=5, progress=False, executor=client.get_executor(), **BIND)
    for a, b in zip(serial, dask):
        np.testing.assert_array_equal(a.mean, b.mean)
        np.testing.assert_array_equal(a.sem, b.sem)


def test_cli_verify_on_scheduler(client, capsys):
    from symrmt.faces.cli import main
    args = ["verify", "ntr(Sigma*G)", "--bind", "Sigma=powerlaw(30,1)", "n=45", "lam=0.2", "--trials", "60"]
    assert main(args) == 0
    local = capsys.readouterr().out
    assert main(args + ["--scheduler", client.scheduler.address]) == 0
    assert capsys.readouterr().out == local                    # same table, digit for digit


def test_cli_scheduler_unreachable(capsys, monkeypatch):
    from symrmt.faces import cli
    from symrmt.faces.cli import main
    monkeypatch.setattr(cli, "SCHEDULER_TIMEOUT", "1s")
    rc = main(["verify", "ntr(Sigma*G)", "--bind", "Sigma=iso(5,1)", "n=9", "lam=0.2", "--trials", "3",
               "--scheduler", "tcp://127.0.0.1:9"])
    assert rc == 2 and "--scheduler tcp://127.0.0.1:9: cannot connect" in capsys.readouterr().err
