"""Shared helpers for the recipes in ``derivations/``: spectra, quadrature of
derived integrals, theory-vs-Monte-Carlo tables, lazy plotting.

Nothing here derives a formula: values come from the engine
(``sr.deterministic_equivalent``) and are evaluated by ``de.compile()``;
these helpers only arrange inputs and outputs.
"""
from __future__ import annotations

import dataclasses
import math
import time
from contextlib import contextmanager

import numpy as np
import sympy as sp

import symrmt as sr


# ----------------------------------------------------------------- inputs
def power_law_spectrum(d, alpha=1.0):
    """``s_i = i^{-α}``, ``i = 1 … d``: the top eigenvalue is 1, so the scale
    of the noise levels ``σ²`` does not drift with ``d``."""
    return np.arange(1, int(d) + 1, dtype=float) ** -float(alpha)


def basis(d, j):
    """The eigenvector ``e_j`` (0-based index) in the eigenbasis of ``Σ``."""
    e = np.zeros(int(d))
    e[int(j)] = 1.0
    return e


@contextmanager
def timed(label, log=print):
    t0 = time.perf_counter()
    yield
    log(f"  [{label}: {time.perf_counter() - t0:.1f} s]")


# ----------------------------------------------------------------- integrals
def flatten_integrals(expr):
    """Write ``expr`` as ``Σ_i ∫…∫ f_i``: a list of ``(f_i, limits_i)``, the
    limits ``(var, a, b)`` outermost first. Integrals may sit in sums and be
    multiplied by factors free of their variables (linearity); anything else
    (an integral inside a non-linear function) raises ``NotImplementedError``."""
    if not expr.has(sp.Integral):
        return [(expr, [])]
    if isinstance(expr, sp.Add):
        return [p for a in expr.args for p in flatten_integrals(a)]
    if isinstance(expr, sp.Integral):
        lims = [tuple(lim) for lim in expr.limits][::-1]
        if any(len(lim) != 3 for lim in lims):
            raise NotImplementedError(f"integral without explicit limits: {expr}")
        return [(f, lims + sub) for f, sub in flatten_integrals(expr.function)]
    if isinstance(expr, sp.Mul):
        with_int = [a for a in expr.args if a.has(sp.Integral)]
        if len(with_int) == 1:
            rest = sp.Mul(*[a for a in expr.args if a is not with_int[0]])
            return [(rest * f, lims) for f, lims in flatten_integrals(with_int[0])]
    raise NotImplementedError(f"an integral in a non-linear position: {expr}")


def _tanh_sinh(h, X=3.2):
    """Nodes ``u`` on (0, 1), ``1 − u`` (accurate near 1) and weights of the
    tanh-sinh rule with step ``h``; ``|x| ≤ X`` reaches ~1e-17 of the ends.
    Index ``k`` runs over ``−K … K``: the even ``k`` are the rule at ``2h``."""
    K = int(math.ceil(X / h))
    k = np.arange(-K, K + 1)
    x = k * h
    s = np.pi / 2 * np.sinh(x)
    e = np.exp(-2 * s)
    u, um = 1 / (1 + e), e / (1 + e)
    w = h * (np.pi / 2) * np.cosh(x) / (2 * np.cosh(s) ** 2)
    return u, um, w, (k % 2 == 0)


@dataclasses.dataclass
class QuadratureResult:
    value: np.ndarray
    rel_change: float   # |I(h) − I(2h)| / |I(h)|, worst grid point: an error bound (tanh-sinh error squares per halving)
    nodes: int          # integrand evaluations per grid point (largest piece)


def integrate_equivalent(de, bindings, h=1 / 16, max_points=2_000_000):
    """Value of a derived equivalent whose value holds (possibly nested)
    ``sympy.Integral`` nodes over finite limits, e.g. the double integral of
    the variance of a fractional-power sampling map.

    The integrand — the engine's, unchanged — is compiled with ``compile()``
    (which solves every ``κ`` at the nodes and forms the spectral sums); the
    integration variables become bound scalars on a tensor-product tanh-sinh
    grid (step ``h``; the rule at ``2h`` gives ``rel_change``, a generous
    bound: the error of the double-exponential rule roughly squares at each
    halving, so the result at ``h`` is far more accurate than ``rel_change``).

    The recipe uses it as an independent check of ``compile()``'s adaptive
    quadrature (a different rule, fixed step, tensor grid).
    """
    pieces = flatten_integrals(sp.sympify(de.value))
    classes = {}
    for f, lims in pieces:
        key = tuple((sp.sympify(a), sp.sympify(b)) for _, a, b in lims)
        classes.setdefault(key, []).append((f, [v for v, _, _ in lims]))
    mats = {m.name for m in sp.sympify(de.value).atoms(sp.MatrixSymbol)}
    mats |= {m.name for m in sp.sympify(de.expr).atoms(sp.MatrixSymbol)}
    total, worst, most = 0.0, 0.0, 1
    u, um, w, even = _tanh_sinh(h)
    for key, items in classes.items():
        depth = len(key)
        qs = [sr.scalar(f"quad_q{i}") for i in range(depth)]
        rename, body = {}, sp.S.Zero
        for f, variables in items:
            sub = dict(zip(variables, qs))
            rename.update(sub)
            body += f.xreplace(sub)
        groups = [dataclasses.replace(g, z=sp.sympify(g.z).xreplace(rename),
                                      equations=tuple(e.xreplace(rename) for e in g.equations))
                  for g in de.groups]
        used = body.free_symbols
        groups = [g for g in groups if set(g.unknowns) & used]
        fn = sr.DeterministicEquivalent(expr=de.expr, value=body, groups=groups).compile()
        if depth == 0:
            total = total + np.asarray(fn(**bindings), dtype=float)
            continue
        lims = []
        for a, b in key:
            a, b = float(a), float(b)   # limits depending on bindings are not needed here
            lims.append((np.where(u < 0.5, a + (b - a) * u, b - (b - a) * um), (b - a) * w))
        base = {k: (np.asarray(v, dtype=float) if k not in mats and np.ndim(v) else v) for k, v in bindings.items()}
        shape = np.broadcast_shapes(*[np.shape(v) for k, v in base.items() if k not in mats])
        npts = int(np.prod(shape, dtype=int))
        flat = {k: (np.broadcast_to(v, shape).reshape(-1) if k not in mats and np.ndim(v) else v)
                for k, v in base.items()}
        q = len(u)
        fine = np.zeros(npts)
        coarse = np.zeros(npts)
        # chunk the grid points so that points × nodes stays bounded (the
        # compiled sums hold one row per point and eigenvalue)
        per = max(1, max_points // (q ** depth))
        for start in range(0, npts, per):
            sl = slice(start, min(npts, start + per))
            args = {}
            for k, v in flat.items():
                if k not in mats and np.ndim(v):
                    args[k] = v[sl].reshape((-1,) + (1,) * depth)
                else:
                    args[k] = v
            W = np.ones((1,) * (depth + 1))
            E = np.ones((1,) * (depth + 1), dtype=bool)
            for i, (t, wt) in enumerate(lims):
                shp = [1] * (depth + 1)
                shp[i + 1] = q
                args[qs[i].name] = t.reshape(shp)
                W = W * wt.reshape(shp)
                E = E & even.reshape(shp)
            vals = np.asarray(fn(**args), dtype=float)
            axes = tuple(range(1, depth + 1))
            fine[sl] = (vals * W).sum(axis=axes)
            coarse[sl] = (vals * W * E).sum(axis=axes) * 2 ** depth
        most = max(most, q ** depth)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.abs(fine - coarse) / np.maximum(np.abs(fine), 1e-300)
        worst = max(worst, float(np.nanmax(rel)) if rel.size else 0.0)
        total = total + fine.reshape(shape)
    return QuadratureResult(np.asarray(total, dtype=float), worst, most)


# ----------------------------------------------------------------- tables
@dataclasses.dataclass
class Row:
    """One theory-vs-Monte-Carlo comparison. It passes when
    ``|MC − theory| ≤ k·sem + c·|theory|/d``: ``k`` standard errors plus the
    O(1/d) finite-size allowance of a first-order equivalent (``c`` stated
    per quantity by the recipe)."""
    quantity: str
    d: int
    ratio: float
    sigma2: float
    theory: float
    mc: float
    sem: float
    trials: int
    c: float = 3.0
    k: float = 4.0

    @property
    def z(self):
        return (self.mc - self.theory) / self.sem if self.sem > 0 else float("nan")

    @property
    def rel(self):
        return (self.mc - self.theory) / abs(self.theory) if self.theory != 0 else float("nan")

    @property
    def rel_sem(self):
        return self.sem / abs(self.theory) if self.theory != 0 else float("nan")

    @property
    def tol(self):
        return self.k * self.sem + self.c * abs(self.theory) / self.d

    @property
    def passed(self):
        return bool(abs(self.mc - self.theory) <= self.tol)


def markdown_table(rows, title=None):
    head = ("| quantity | d | n/d | σ² | theory | Monte Carlo | sem | z | rel. error | ± rel. sem | trials "
            r"| tol = k·sem + c·\|th\|/d | c | pass |")
    sep = "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|"
    lines = ([f"### {title}", ""] if title else []) + [head, sep]
    for r in rows:
        lines.append(f"| {r.quantity} | {r.d} | {r.ratio:g} | {r.sigma2:g} | {r.theory:.6g} | {r.mc:.6g} | "
                     f"{r.sem:.2g} | {r.z:+.2f} | {r.rel:+.2e} | {r.rel_sem:.1e} | {r.trials} | {r.tol:.2g} | "
                     f"{r.c:g} | {'yes' if r.passed else '**NO**'} |")
    return "\n".join(lines)


def trend_table(rows):
    """Per quantity and size: the mean |relative error| and mean relative
    sem over the table's n/d and σ² — the O(1/d) gap should shrink with d
    (visible where the Monte Carlo resolves it)."""
    groups = {}
    for r in rows:
        groups.setdefault(r.quantity, {}).setdefault(r.d, []).append(r)
    sizes = sorted({r.d for r in rows})
    head = "| quantity | " + " | ".join(rf"d = {d}: \|rel. error\| (rel. sem)" for d in sizes) + " |"
    sep = "|---|" + "---:|" * len(sizes)
    lines = [head, sep]
    for q, by_d in groups.items():
        cells = []
        for d in sizes:
            rs = by_d.get(d)
            if not rs:
                cells.append("–")
                continue
            cells.append(f"{np.mean([abs(r.rel) for r in rs]):.1e} ({np.mean([r.rel_sem for r in rs]):.1e})")
        lines.append(f"| {q} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------- plotting
def pyplot(log=print):
    """``matplotlib.pyplot`` with the Agg backend, or ``None`` (with a
    message) when matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: skipping plots (pip install matplotlib)")
        return None
    return plt


def readable_log_axes(ax, which="xy"):
    """Tick labels on every log axis of ``ax``, whatever its span.

    Matplotlib labels only the decades of a log axis, so an axis spanning
    less than one decade shows no tick label at all. Here: with two decades
    or more, decades only (``10⁻²``); with less, ticks at 1, 2, 5 × 10^k
    (1, 1.5, 2, 3, 4, 5, 7 × 10^k below one decade) labelled in plain
    numbers (``0.2``, ``1.5``); minor ticks unlabelled. Call after the data
    are drawn (the span is read from the axis limits)."""
    from matplotlib.ticker import FuncFormatter, LogFormatterSciNotation, LogLocator, NullFormatter
    for name in which:
        axis = ax.xaxis if name == "x" else ax.yaxis
        if (ax.get_xscale() if name == "x" else ax.get_yscale()) != "log":
            continue
        lo, hi = sorted(ax.get_xlim() if name == "x" else ax.get_ylim())
        if lo <= 0 or np.log10(hi / lo) >= 2:
            axis.set_major_locator(LogLocator(base=10, numticks=12))
            axis.set_major_formatter(LogFormatterSciNotation(base=10))
        else:
            subs = (1.0, 2.0, 5.0) if np.log10(hi / lo) >= 1 else (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.0)
            axis.set_major_locator(LogLocator(base=10, subs=subs, numticks=12))
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
        axis.set_minor_formatter(NullFormatter())


# ----------------------------------------------------------------- forms
def parse_form(F):
    """``(c, u, M, w)`` for a form ``c·uᵀ M w`` of two vectors (``M`` the
    identity if absent)."""
    arg = F.arg
    parts = list(arg.args) if isinstance(arg, sp.MatMul) else [arg]
    coeff = sp.S.One
    while parts and not isinstance(parts[0], sp.MatrixExpr):
        coeff, parts = coeff * parts[0], parts[1:]
    left, right = parts[0], parts[-1]
    if not (isinstance(left, sp.Transpose) and isinstance(left.arg, sr.Vector) and isinstance(right, sr.Vector)):
        raise ValueError(f"not a bilinear form of two vectors: {F}")
    mid = sp.MatMul(*parts[1:-1]).doit() if len(parts) > 2 else sp.Identity(left.arg.shape[0])
    return coeff, left.arg, mid, right


def sum_over_basis(value, v):
    """``Σ_j value|_{v = e_j}`` over an orthonormal basis, for a value that
    is quadratic in the vector ``v`` through forms (a variance of ``vᵀ…``):
    ``Σ_j e_jᵀMe_j = Tr M`` and ``Σ_j (e_jᵀAw)(e_jᵀBu) = wᵀAᵀBu``. Integrals
    are kept (the identity is applied to each integrand)."""
    pieces = flatten_integrals(sp.sympify(value))
    out = sp.S.Zero
    for f, lims in pieces:
        g = _basis_sum_integrand(f, v)
        for var, a, b in reversed(lims):
            g = sp.Integral(g, (var, a, b))
        out += g
    return out


def _basis_sum_integrand(f, v):
    from symrmt import Form, Tr
    forms = sorted(f.atoms(Form), key=sp.default_sort_key)
    info, dummies = {}, {}
    for F in forms:
        c, u, M, w = parse_form(F)
        if w == v and u != v:      # uᵀMv = vᵀMᵀu
            u, M, w = w, M.T, u
        info[F] = (c, u, M, w)
        dummies[F] = sp.Dummy(F.arg.__class__.__name__)
    back = {dm: F for F, dm in dummies.items()}
    poly = sp.expand(f.xreplace(dummies))
    total = sp.S.Zero
    for term in sp.Add.make_args(poly):
        vparts, rest = [], sp.S.One
        for fac in sp.Mul.make_args(term):
            base, exp = fac.as_base_exp()
            if base in back and info[back[base]][1] == v:
                vparts += [back[base]] * int(exp)
            else:
                rest *= fac
        rest = rest.xreplace(back)
        if len(vparts) == 1 and info[vparts[0]][3] == v:          # vᵀMv
            c, _, M, _ = info[vparts[0]]
            total += rest * c * Tr(M)
        elif len(vparts) == 2 and all(info[F][3] != v for F in vparts):   # (vᵀAw)(vᵀBu)
            (c1, _, A, w), (c2, _, B, u) = info[vparts[0]], info[vparts[1]]
            total += rest * c1 * c2 * Form(w.T * A.T * B * u)
        else:
            raise ValueError(f"term not quadratic in {v}: {term.xreplace(back)}")
    return total
