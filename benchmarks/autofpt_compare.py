"""Run auto-fpt (ArjunSubramonian/auto-fpt, Subramonian & Dohmatob 2024) next to symrmt on its own examples:
derivation times and values at identical settings, plus the non-commuting case (auto-fpt's commuting assumption
vs symrmt's engine vs a dense NumPy Monte Carlo at two sizes). Rewrites ``derivations/data/autofpt_measured.json``,
which the recipe ``derivations/autofpt_examples.py`` reads (auto-fpt is not on PyPI, so CI cannot run it).

Needs a checkout of auto-fpt (its ``fpt.py``, ``free_proba_utils.py`` and ``examples/pencils/*.pkl``, e.g.
``git --git-dir=<mirror> archive HEAD | tar -x -C /tmp/autofpt``) and SymPy/NumPy/SciPy; auto-fpt's code is
imported from that folder, not copied here.

    python benchmarks/autofpt_compare.py --autofpt AUTOFPT_DIR --commit <sha> [--reps 3] [--out PATH]

Timing: each repetition is a FRESH Python process (no SymPy or engine cache carried over) timing only the
derivation call — auto-fpt: ``fpt.calc(pencil, ...)`` exactly as its example script calls it (display turned off,
stdout discarded), from the precomputed pencil (building the pencil, done in NCAlgebra, is not counted); symrmt:
``sr.deterministic_equivalent(expr)`` from the expression as written. Best of ``--reps``. Also a warm figure:
the same call repeated in one process (new symrmt objects each time; auto-fpt re-run on the same pencil).

Values: auto-fpt's returned fixed-point equations are evaluated numerically here — every ``tr̄(M)`` with all
matrices diagonal in one basis (its commuting assumption: ``tr̄ f(S) = mean_i f(s_i)``), solved by fixed-point
iteration from 0 (as its random-features script does) and polished with ``scipy.optimize.root`` — then mapped to
symrmt's expression with ``autofpt_examples.CONVENTION`` and compared with the compiled symrmt equivalent.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import tempfile
import pathlib
import platform
import subprocess
import sys
import time

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "derivations"))

# auto-fpt's calls, as in its example scripts (examples/*.py at the recorded commit)
AUTOFPT_CALL = {
    "mp": "MP", "anisotropic_mp": "anisotropic-MP", "ridge_bias": "ridge-bias", "ridge_variance": "ridge-var",
    "random_features": "random-features", "subordination": "subordination", "non_commuting": "subordination",
}


# ----------------------------------------------------------------------------- auto-fpt side (worker process)
def _autofpt_problem(kind):
    """(pencil, calc kwargs, target (i, j), extra entries wanted) — transcribed from auto-fpt's example scripts."""
    import pickle
    from sympy import MatrixSymbol, Symbol
    n = Symbol("n", integer=True, positive=True)
    d = Symbol("d", integer=True, positive=True)
    phi = Symbol(r"\phi", positive=True)

    def load(f):
        with open(os.path.join("examples", "pencils", f), "rb") as fh:
            return pickle.load(fh)
    if kind in ("MP", "anisotropic-MP", "ridge-bias", "ridge-var"):
        f = {"MP": "MP-pencil.pkl", "anisotropic-MP": "anisotropic-MP-pencil.pkl",
             "ridge-bias": "ridge-regression-error-bias-pencil.pkl",
             "ridge-var": "ridge-regression-error-var-pencil.pkl"}[kind]
        Q, (u, v) = load(f)
        i, j = (int(np.argmax(u)), int(np.argmax(v))) if kind == "anisotropic-MP" else \
            (int(np.flatnonzero(u)[0]), int(np.flatnonzero(v)[0]))
        rm = ["Z"] if kind == "anisotropic-MP" else "Z"
        return Q, dict(random_matrices=rm, row_idx=i, col_idx=j, normalize="full", subs={d: n * phi}), (i, j), {}
    if kind == "subordination":
        lambd = Symbol(r"\lambda", integer=True)
        n1 = Symbol("n_1", integer=True, positive=True)
        n2 = Symbol("n_2", integer=True, positive=True)
        p1, p2 = Symbol("p_1", positive=True), Symbol("p_2", positive=True)
        Z1, Z2 = MatrixSymbol("Z_1", n1, d), MatrixSymbol("Z_2", n2, d)
        Q, (u, v) = load("subordination-pencil.pkl")
        i, j = int(np.flatnonzero(u)[0]), int(np.flatnonzero(v)[0])
        return Q, dict(random_matrices=["Z_1", "Z_2"], row_idx=i, col_idx=j,
                       variances={Z1: 1 / (n * lambd), Z2: 1 / (n * lambd)},
                       subs={n1: n * p1, n2: n * p2, d: n * phi}), (i, j), {}
    if kind == "random-features":
        psi, lambd = Symbol(r"\psi", positive=True), Symbol(r"\lambda", positive=True)
        zeta, beta = Symbol(r"\zeta", positive=True), Symbol(r"\beta", positive=True)
        dd = phi * n
        m = dd / psi
        W0, X, T0 = MatrixSymbol("W_0", m, dd), MatrixSymbol("X", dd, n), MatrixSymbol(r"\Theta_0", m, n)
        Q, (u, v) = load("random-features-pencil.pkl")
        i, j = int(np.flatnonzero(u)[0]), int(np.flatnonzero(v)[0])
        kinv = (int(np.flatnonzero(u)[1]), int(np.flatnonzero(v)[0]))      # the Kinv entry (as in the script)
        return Q, dict(random_matrices=[X, W0, T0], row_idx=i, col_idx=j, subs={},
                       variances={X: 1 / dd, W0: zeta / (m * lambd), T0: beta / (m * lambd)}), kinv, {"XTXKinv": (i, j)}
    raise KeyError(kind)


def _autofpt_bindings(name, c):
    """auto-fpt's symbols (by name) at the case's settings: scalars, and each matrix symbol's eigenvalues."""
    import autofpt_examples as A
    a = A.case_arrays(name, c)
    d, n, lam = int(c["d"]), int(c["n"]), c["lam"]
    if name in ("mp", "anisotropic_mp"):
        return {"lambda": lam, r"\phi": d / n}, {r"\Sigma_{sqrt}": np.sqrt(a["Sigma"])}
    if name == "ridge_bias":
        return {"lambda": lam, r"\phi": d / n}, {r"\Sigma_{sqrt}": np.sqrt(a["Sigma"]), r"\Sigma": a["Sigma"],
                                                   r"\Theta": d * a["w"] ** 2}
    if name == "ridge_variance":
        return {"lambda": lam, r"\phi": d / n}, {r"\Sigma_{sqrt}": np.sqrt(a["Sigma"]), r"\Sigma": a["Sigma"]}
    if name in ("subordination", "non_commuting"):
        return ({r"\lambda": lam, "p_1": c["p1"], "p_2": c["p2"], r"\phi": d / n},
                {"S_1": np.sqrt(a["Sigma1"]), "S_2": np.sqrt(a["Sigma2"])})
    if name == "random_features":
        return ({r"\lambda": lam, r"\phi": d / n, r"\psi": d / c["m"], r"\zeta": c["zeta"], r"\beta": c["beta"]}, {})
    raise KeyError(name)


def _scalarize(e, cache):
    """A matrix expression whose matrices all commute (diagonal in one basis) as a scalar expression of their
    eigenvalues: I → 1, A·B → ab, A⁻¹ → 1/a, Aᵀ → a; G[i, j] → the scalar unknown g_i_j."""
    import sympy as sp
    from sympy.matrices.expressions.matexpr import MatrixElement
    if isinstance(e, MatrixElement):
        return sp.Symbol(f"g_{int(e.args[1])}_{int(e.args[2])}")
    if isinstance(e, sp.Identity):
        return sp.Integer(1)
    if isinstance(e, sp.MatrixSymbol):
        return cache.setdefault(e.name, sp.Symbol("m%d" % len(cache), positive=True))
    if isinstance(e, sp.Inverse):
        return 1 / _scalarize(e.args[0], cache)
    if isinstance(e, sp.MatPow):
        return _scalarize(e.args[0], cache) ** e.args[1]
    if isinstance(e, sp.Transpose):
        return _scalarize(e.args[0], cache)
    if isinstance(e, sp.MatAdd):
        return sp.Add(*[_scalarize(a, cache) for a in e.args])
    if isinstance(e, sp.MatMul):
        return sp.Mul(*[_scalarize(a, cache) for a in e.args])
    if not e.args:
        return e
    return e.func(*[_scalarize(a, cache) for a in e.args])


def evaluate_equations(eqs, scalars, mats):
    """Solve auto-fpt's returned equations numerically: ``{(i, j): value}`` and the max residual."""
    import sympy as sp
    from scipy.optimize import root
    unknowns = [sp.Symbol(f"g_{int(q.lhs.args[1])}_{int(q.lhs.args[2])}") for q in eqs]
    cache, parts = {}, []
    for q in eqs:
        rhs = q.rhs
        trs = [t for t in rhs.atoms(sp.Function) if type(t).__name__ == "trbar"]
        reps, tr_fns = {}, []
        for k, t in enumerate(trs):
            f = _scalarize(t.args[0], cache)
            reps[t] = sp.Symbol(f"t{k}")
            tr_fns.append(f)
        r = _scalarize(rhs.xreplace(reps), cache)
        parts.append((r, [reps[t] for t in trs], tr_fns))
    msyms = [cache[k] for k in cache]
    byname = {}
    for r, tsyms, tfs in parts:
        for s_ in set().union(r.free_symbols, *[f.free_symbols for f in tfs]):
            if s_ not in unknowns and s_ not in tsyms and s_ not in msyms:
                byname[s_.name] = s_
    missing = [nm for nm in byname if nm not in scalars]
    if missing:
        raise ValueError(f"unbound auto-fpt symbols {missing}")
    marr = [mats[k] for k in cache]
    compiled = []
    for r, tsyms, tfs in parts:
        ssub = {byname[k]: v for k, v in scalars.items() if k in byname}
        rf = sp.lambdify(unknowns + tsyms, r.subs(ssub), "numpy")
        tfl = [sp.lambdify(unknowns + msyms, f.subs(ssub), "numpy") for f in tfs]
        compiled.append((rf, tfl))

    def F(g):
        out = []
        for rf, tfl in compiled:
            ts = [np.mean(np.broadcast_to(tf(*g, *marr), np.shape(marr[0]) if marr else ())) for tf in tfl]
            out.append(complex(rf(*g, *ts)).real)
        return np.array(out)
    g = np.zeros(len(unknowns))
    for _ in range(5000):
        g_new = F(g)
        if np.max(np.abs(g_new - g)) < 1e-15 * max(1.0, np.max(np.abs(g_new))):
            g = g_new
            break
        g = 0.5 * g + 0.5 * g_new
    sol = root(lambda x: F(x) - x, g, method="hybr", tol=1e-15)
    g = sol.x if np.max(np.abs(F(sol.x) - sol.x)) <= np.max(np.abs(F(g) - g)) else g
    res = float(np.max(np.abs(F(g) - g)))
    return {(int(q.lhs.args[1]), int(q.lhs.args[2])): float(x) for q, x in zip(eqs, g)}, res


def worker_autofpt(name, bindings_file, autofpt_dir, warm):
    import sympy as sp
    with np.load(bindings_file) as z:                 # the case's bindings, made by the parent (no symrmt import
        scal = json.loads(str(z["__scalars__"]))      # here: this worker may run under auto-fpt's own SymPy)
        mats = {k: z[k] for k in z.files if k != "__scalars__"}
    os.chdir(autofpt_dir)
    sys.path.insert(0, autofpt_dir)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        import fpt
    import_s = time.perf_counter() - t0
    kind = AUTOFPT_CALL[name]
    Q, kw, target, extra = _autofpt_problem(kind)
    times = []
    for _ in range(1 + warm):
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            eqs = fpt.calc(Q, display=lambda *a, **k: None, **kw)
        times.append(time.perf_counter() - t0)
    vals, res = evaluate_equations(eqs, scal, mats)
    if target not in vals:
        raise RuntimeError(f"{name}: target entry {target} not among auto-fpt's equations {list(vals)}")
    return dict(cold_s=times[0], warm_s=min(times[1:]) if warm else None, import_s=import_s, sympy=sp.__version__,
                target=list(target),
                value=vals[target], residual=res, n_equations=len(eqs),
                equations=[sp.latex(q) for q in eqs], extra={k: vals.get(v) for k, v in extra.items()})


# ----------------------------------------------------------------------------- symrmt side (worker process)
def worker_symrmt(name, case, warm):
    t0 = time.perf_counter()
    import symrmt as sr
    import_s = time.perf_counter() - t0
    import autofpt_examples as A
    times = []
    for _ in range(1 + warm):
        e = A.model()[case["ours"]]                  # new objects each time: no cache hit
        t0 = time.perf_counter()
        de = sr.deterministic_equivalent(e)
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    fns = {case["ours"]: de.compile()}
    compile_s = time.perf_counter() - t0
    return dict(cold_s=times[0], warm_s=min(times[1:]) if warm else None, compile_s=compile_s, import_s=import_s,
                value=A.symrmt_value(name, case, fns))


def run_worker(side, name, case, args, python=None):
    arg = json.dumps(case)
    if side == "autofpt":
        scal, mats = _autofpt_bindings(name, case)
        arg = os.path.join(args.tmp, f"bindings_{name}.npz")
        np.savez(arg, __scalars__=json.dumps(scal), **mats)
    cmd = [python or sys.executable, __file__, "--worker", side, name, "--case", arg,
           "--autofpt", args.autofpt, "--warm", str(args.warm)]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=str(ROOT), timeout=1800)
    if p.returncode != 0:
        raise RuntimeError(f"{side} {name} failed:\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- dense Monte Carlo (non-commuting)
def dense_mc_non_commuting(c, D, trials, seed):
    """Independent dense NumPy: ntr((X₁ᵀX₁/n₁ + X₂ᵀX₂/n₂ + λ)⁻¹), X₁ = Z₁Σ₁^{1/2}, X₂ = Z₂Σ₂^{1/2},
    Σ₂ = Q diag(s₂) Qᵀ (the same Q as the engine's binding), n₁ = n₂ = (n/d)·D."""
    import autofpt_examples as A
    s1, s2, S2 = A.nc_spectra(D)
    N = int(round(c["n"] / c["d"] * D))
    ev, V = np.linalg.eigh(S2)
    R2 = (V * np.sqrt(np.clip(ev, 0, None))) @ V.T
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(trials):
        X1 = rng.standard_normal((N, D)) * np.sqrt(s1)
        X2 = rng.standard_normal((N, D)) @ R2
        M = X1.T @ X1 / N + X2.T @ X2 / N
        vals.append(np.mean(1.0 / (np.linalg.eigvalsh(M) + c["lam"])))
    vals = np.asarray(vals)
    return float(vals.mean()), float(vals.std(ddof=1) / np.sqrt(trials))


def machine():
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import scipy
    import sympy
    return dict(platform=platform.platform(), cpu=cpu, cores=os.cpu_count(), python=platform.python_version(),
                sympy=sympy.__version__, numpy=np.__version__, scipy=scipy.__version__)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--autofpt", default=os.environ.get("AUTOFPT_DIR"),
                    help="folder holding auto-fpt's fpt.py, free_proba_utils.py, examples/pencils/ "
                         "(an extracted checkout of ArjunSubramonian/auto-fpt; default $AUTOFPT_DIR)")
    ap.add_argument("--commit", default=None, help="auto-fpt commit the folder was extracted from")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--warm", type=int, default=1, help="in-process repeats for the warm figure")
    ap.add_argument("--out", default=str(ROOT / "derivations" / "data" / "autofpt_measured.json"))
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--mc-sizes", type=int, nargs="*", default=[200, 400])
    ap.add_argument("--also-python", default=None,
                    help="a second interpreter (e.g. a venv with auto-fpt's pinned sympy==1.12) to time auto-fpt under")
    ap.add_argument("--tmp", default=os.path.join(tempfile.gettempdir(), "autofpt_compare"))
    ap.add_argument("--worker", nargs=2, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--case", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        side, name = args.worker
        out = worker_autofpt(name, args.case, args.autofpt, args.warm) if side == "autofpt" else \
            worker_symrmt(name, json.loads(args.case), args.warm)
        print(json.dumps(out))
        return
    import autofpt_examples as A
    if not args.autofpt:
        sys.exit("--autofpt: give the folder of an auto-fpt checkout (or set AUTOFPT_DIR)")
    auto = os.path.abspath(args.autofpt)
    if not os.path.exists(os.path.join(auto, "fpt.py")):
        sys.exit(f"--autofpt: no fpt.py in {auto}")
    args.autofpt = auto
    os.makedirs(args.tmp, exist_ok=True)
    load0 = os.getloadavg()
    t_all = time.perf_counter()
    results = {}
    for name, case in A.CASES.items():
        if args.only and name not in args.only:
            continue
        runs = {"autofpt": [], "symrmt": [], "alt": []}
        for r in range(args.reps):
            for side in ("autofpt", "symrmt"):           # interleaved: both see the same machine load
                runs[side].append(run_worker(side, name, case, args))
            if args.also_python:
                runs["alt"].append(run_worker("autofpt", name, case, args, python=args.also_python))
        af, sm = runs["autofpt"], runs["symrmt"]
        g = af[0]["value"]
        mapped = A.autofpt_to_symrmt(name, case, g)
        ours = sm[0]["value"]
        row = dict(settings=case, convention=A.CONVENTION[name],
                   autofpt=dict(cold_s=[x["cold_s"] for x in af], warm_s=min(x["warm_s"] for x in af),
                                best_cold_s=min(x["cold_s"] for x in af), target=af[0]["target"], value=g,
                                best_import_s=min(x["import_s"] for x in af),
                                value_in_symrmt_convention=mapped, residual=af[0]["residual"],
                                n_equations=af[0]["n_equations"], equations=af[0]["equations"],
                                extra=af[0]["extra"], sympy=af[0]["sympy"],
                                alt=dict(python=args.also_python, sympy=runs["alt"][0]["sympy"],
                                         cold_s=[x["cold_s"] for x in runs["alt"]],
                                         best_cold_s=min(x["cold_s"] for x in runs["alt"]),
                                         value=runs["alt"][0]["value"]) if runs["alt"] else None),
                   symrmt=dict(cold_s=[x["cold_s"] for x in sm], warm_s=min(x["warm_s"] for x in sm),
                               best_cold_s=min(x["cold_s"] for x in sm),
                               best_compile_s=min(x["compile_s"] for x in sm),
                               best_import_s=min(x["import_s"] for x in sm), value=ours),
                   rel_diff=abs(mapped - ours) / abs(ours))
        if name == "non_commuting":
            fns = {case["ours"]: __import__("symrmt").deterministic_equivalent(A.model()[case["ours"]]).compile()}
            row["engine_rotated"] = A.symrmt_value(name, case, fns, rotated=True)
            row["dense_mc"] = []
            for D in args.mc_sizes:
                c2 = dict(case, d=D, n=int(round(case["n"] / case["d"] * D)))
                trials = 60 if D <= 200 else 30
                mc, sem = dense_mc_non_commuting(case, D, trials, seed=1000 + D)
                row["dense_mc"].append(dict(d=D, n1=c2["n"], n2=c2["n"], trials=trials, mean=mc, sem=sem,
                                            engine=A.symrmt_value(name, c2, fns, rotated=True),
                                            shortcut=A.symrmt_value(name, c2, fns)))
        results[name] = row
        print(f"{name:16s} auto-fpt {row['autofpt']['best_cold_s']:.3f}s  symrmt {row['symrmt']['best_cold_s']:.3f}s"
              f"  values {mapped:.12g} vs {ours:.12g}  rel {row['rel_diff']:.1e}", flush=True)
    out = dict(
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        autofpt=dict(repo="github.com/ArjunSubramonian/auto-fpt", commit=args.commit, folder=auto),
        command="python benchmarks/autofpt_compare.py " + " ".join(a for a in (argv or sys.argv[1:])),
        machine=dict(machine(), loadavg_start=load0, loadavg_end=os.getloadavg()),
        timing=("fresh Python process per repetition, derivation call only (auto-fpt: fpt.calc on its "
                f"precomputed pencil; symrmt: sr.deterministic_equivalent on the expression), best of {args.reps}; "
                f"warm = best of {args.warm} repeats in one process"),
        seconds=time.perf_counter() - t_all, cases=results)
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out} ({out['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
