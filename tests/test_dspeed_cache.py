"""Issue 12 derivation speed: the fast paths give the same outputs as the
reference paths they replace (benchmarks/derive.py times both).

- ``general_law.lift`` (unknowns as tags) vs ``general_law._lift_reference``
  (unknowns as SymPy symbols, ``diff``/``subs``): identical derived values;
- ``simplify.count_ops`` (memoised, with an early exit over a limit) vs
  ``sympy.count_ops``; ``tidy``'s lower bound on a collected form's size is below
  its true size;
- ``objects.walk.atoms_shared`` / ``simplify.xreplace_shared`` vs ``atoms`` / ``xreplace``;
- memoised letter products/transposes in ``output`` vs the plain ones, and the
  caches do not leak between different words.
"""
import importlib.util
import pathlib
import random

import pytest
import sympy as sp

import symrmt as sr
from symrmt.equivalence import output, simplify
from symrmt.objects import walk

_spec = importlib.util.spec_from_file_location(
    "bench_derive_dspeed", pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "derive.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def _both(build):
    """Values of the same expression derived on the fast path and under ``baseline()``."""
    bench.clear_caches()
    new = sr.deterministic_equivalent(build())
    bench.clear_caches()
    with bench.baseline():
        old = sr.deterministic_equivalent(build())
    bench.clear_caches()
    return new, old


def _pooled_shift():
    """Two pooled groups with a non-scalar deterministic shift B and a 2-point product."""
    d, n1, n2 = sr.dims("d n1 n2")
    lam = sr.scalar("lam")
    S1, S2, B, A = (sr.Covariance(s, d) for s in ("S1", "S2", "B", "A"))
    X1, X2 = sr.GaussianData("X1", n1, S1), sr.GaussianData("X2", n2, S2)
    G = ((X1.T * X1 + X2.T * X2) / (n1 + n2) + B + lam * sr.I(d)).inverse()
    return sr.ntr(S1 * G * A * G)


def _bare_link():
    """A bare Σ̂ between two resolvents (an off-diagonal link of the lift)."""
    d, n = sr.dims("d n")
    z1, z2 = sr.scalar("z1"), sr.scalar("z2")
    Sigma, A = sr.Covariance("Sigma", d), sr.Covariance("A", d)
    X = sr.GaussianData("X", n, Sigma)
    Sh = X.T * X / n
    return sr.ntr(A * (Sh + z1 * sr.I(d)).inverse() * Sh * (Sh + z2 * sr.I(d)).inverse())


@pytest.mark.parametrize("build", [
    lambda: bench.speed_models()["k-point trace, k = 2"](),
    lambda: bench.speed_models()["k-point trace, k = 3"](),
    _pooled_shift,
    _bare_link,
    lambda: bench.rf_ridge_risk(),
], ids=["kpoint2", "kpoint3", "pooled-shift-B", "bare-link", "rf-risk"])
def test_fast_lift_and_words_identical_to_reference(build):
    new, old = _both(build)
    assert new.value == old.value
    assert new.equations == old.equations
    assert new.unknowns == old.unknowns


def _exprs():
    x, y, z = sp.symbols("x y z")
    d = sr.dims("d")[0] if isinstance(sr.dims("d"), tuple) else sr.dims("d")
    S = sr.Covariance("Sig", d)
    t = sr.ntr((S + x * sr.I(d)).inverse())
    base = [-x - y, -x + y, x - y, 1 / x / y, -2 * x / 3, sp.exp(x) + sp.E, sp.exp(-y) * 2,
            sp.Integral(x, (x, 0, 1)) - 3, sp.re(x) * sp.Max(x, y, 2), -(x + y) / (2 * y),
            (x - 1) ** -1, sp.Rational(-1, 3), sp.S.One, x ** 2 * y ** -3 - z, t, -t / (1 - t) ** 2 + x * t]
    rnd = random.Random(0)
    atoms = [x, y, z, t, sp.Integer(2), sp.Rational(-1, 2)]
    for _ in range(40):   # random rational expressions with shared sub-trees
        e = rnd.choice(atoms)
        for _ in range(rnd.randint(2, 7)):
            o, f = rnd.choice(atoms), rnd.choice(["+", "-", "*", "/", "neg"])
            e = {"+": lambda: e + o, "-": lambda: e - o, "*": lambda: e * o,
                 "/": lambda: e / (o + 1), "neg": lambda: -e * (e + o)}[f]()
        base.append(e)
    return base


def test_count_ops_matches_sympy_and_limit_is_a_proof():
    for e in _exprs():
        c = sp.count_ops(e)
        assert simplify.count_ops(e) == c, e
        for lim in (0, 1, c - 1, c, c + 5):
            r = simplify.count_ops(e, lim)
            assert (r > lim) == (c > lim), (e, lim)
            if c <= lim:
                assert r == c


def test_shared_walks_match_sympy():
    y, z = sp.symbols("y z")
    rule = {y: z + 1}
    for e in _exprs():
        assert walk.atoms_shared(e) == e.atoms()
        assert walk.atoms_shared(e, sp.Symbol) == e.atoms(sp.Symbol)
        assert walk.atoms_shared(e, sp.Pow, sp.Add) == e.atoms(sp.Pow, sp.Add)
        assert simplify.xreplace_shared(e, rule) == e.xreplace(rule)
        assert simplify.xreplace_shared(e, {}) is e


def test_output_memoised_letters_keep_words_apart():
    """Cached letter products/transposes: equal to the plain ones, and two
    words differing only in one letter give different traces."""
    from sympy import MatMul

    from symrmt.rewrite.letters import Det, transpose_word
    d = sp.Symbol("d", integer=True, positive=True)
    A, B, C = (sr.Deterministic(s, d, d) for s in ("Aq", "Bq", "Cq"))
    lam = sp.Symbol("lam", positive=True)
    R = (B + lam * sp.Identity(d)).inverse()
    w1 = (Det(A), Det(R), Det(2 * C))
    w2 = (Det(A), Det(R), Det(3 * C))
    for w in (w1, w2):
        assert output._product(w) == MatMul(*[l.expr for l in w]).doit()
        assert output._transpose_word(w) == transpose_word(w)
    assert output.word_to_scalar(w1) != output.word_to_scalar(w2)
    assert output.word_to_scalar(w1) == output.word_to_scalar.__wrapped__(w1)


def test_collected_lower_bound_is_below_the_collected_size():
    """``tidy`` skips collecting when this bound exceeds the value's size: it must
    never exceed the size of the form it stands for (random sums of products of
    functionals ``Tr[(Σ+x)⁻¹]``-like symbols with rational coefficients)."""
    rnd = random.Random(1)
    x, y, n = sp.symbols("x y n", positive=True)
    ts = sp.symbols("_t0:3")
    d = sp.Symbol("d", integer=True, positive=True)
    S = sr.Covariance("Sig", d)
    atoms = [sr.ntr((S + c * sp.Identity(d)).inverse()) for c in (x, y, x + y)]
    atom_ops = {t: simplify.count_ops(a) for t, a in zip(ts, atoms)}
    coeffs = [sp.Integer(1), sp.Integer(-2), sp.Rational(3, 4), x, -x / n, x * y ** 2, 1 / (1 + x), -n]
    for _ in range(60):
        num = sp.expand(sum(rnd.choice(coeffs) * sp.Mul(*rnd.sample(ts, rnd.randint(0, 3))) ** rnd.randint(1, 2)
                            for _ in range(rnd.randint(1, 8))))
        if num == 0:
            continue
        den = 1 - ts[0] * rnd.choice(coeffs[1:])
        out = (sp.collect(num, ts, evaluate=True) / simplify._factor(den)).xreplace(dict(zip(ts, atoms)))
        assert simplify._collected_ops_lower_bound(num, ts) <= sp.count_ops(out.xreplace(dict(zip(atoms, ts))))
        assert simplify._collected_ops_lower_bound(num, ts, atom_ops) <= sp.count_ops(out), num
