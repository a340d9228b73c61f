"""The compiled deterministic equivalent: ``f(**bindings)`` and ``f.solve``."""
from __future__ import annotations

import dataclasses

import numpy as np
import sympy as sp

from .._bindings import _deprecated, check_unique_names, split_options, structural_roles
from ..objects.functionals import Norm
from ..objects.matrices import Vector
from .backend import make_backend
from .bindings import bind
from .catalog import build_catalog
from .plan import Plan, solve_groups
from .result import ConvergenceError, SolveResult
from .solvers import XTOL_MAX, full

#: options of ``f(...)`` and ``f.solve(...)`` (their own namespace: ``options={...}``)
SOLVE_OPTIONS = ("maxiter", "xtol", "eta", "quad_rtol")
CALL_OPTIONS = SOLVE_OPTIONS + ("on_failure",)


class CompiledEquivalent:
    """A vectorised numeric function of the bindings of a
    :class:`~symrmt.equivalence.result.DeterministicEquivalent`.

    ``f(**bindings)`` returns the value as an array with the broadcast shape
    of the array-valued bindings; ``f.solve(**bindings)`` returns a
    :class:`SolveResult` with the unknowns and diagnostics. Bindings may also
    be given as one dict, ``f({"eta": 0.5, ...})``. Options live in their own
    namespace, ``f(..., options={...})`` (or ``f(bindings_dict, **options)``),
    so every symbol name is bindable: ``maxiter`` (per group, default 100),
    ``xtol`` (relative Newton step at convergence, at most ``1e-6``), ``eta``
    (smallest ``|Im λ|`` as a fraction of the spectral scale, default
    ``1e-9``), ``quad_rtol``, and ``raise_on_failure`` (``solve``) /
    ``on_failure`` (``"raise"`` or ``"nan"``, call). The keyword form
    ``f(lam=..., xtol=...)`` still works for an option that is not a
    symbol's name, with a ``DeprecationWarning``.

    All symbolic work (lowering, differentiation, lambdification) is done
    once per *binding signature* (which matrices are bound diagonal or
    full), at compile time for the all-diagonal one, and cached.
    """

    def __init__(self, de, backend="numpy", dps=50):
        self.de = de
        self.backend = make_backend(backend, dps)
        self.catalog = build_catalog(de)
        check_unique_names(self.catalog.scalars, self.catalog.matrices)
        sym, inv = structural_roles(de.expr)
        sym2, inv2 = structural_roles(de.value)
        self._symmetric, self._inverted = _merge_roles(sym, sym2), inv | inv2
        self._de, self._norms = _norm_placeholders(de)
        self._plans = {}
        with self.backend.context():
            self._plan(self._default_signature())

    # ----------------------------------------------------------- introspection
    @property
    def parameters(self):
        """Names accepted as bindings."""
        return tuple(self.catalog.names)

    @property
    def required(self):
        """Names that must be bound (or, for dimensions, inferable from bound arrays)."""
        return tuple(sorted(self.catalog.required))

    def __repr__(self):
        return (f"<compiled {self.backend.name} equivalent of {self.de.expr}; "
                f"bindings: {self.catalog.describe()}>")

    # ----------------------------------------------------------- plans
    def _default_signature(self):
        sig = []
        for name, m in self.catalog.matrices.items():
            if name in self.catalog.required:
                square = m.shape[0] == m.shape[1] and not isinstance(m, Vector)
                sig.append((name, "diag" if square else "full"))
        return tuple(sorted(sig))

    def _plan(self, signature):
        plan = self._plans.get(signature)
        if plan is None:
            plan = self._plans[signature] = Plan(self._de, self.backend, dict(signature))
        return plan

    # ----------------------------------------------------------- mpmath warm start
    def _warm_start(self, bindings, opts):
        """Double-precision roots of the top groups, ``{unknown: (z, x)}``,
        as Newton's starting points at full precision (only the start: the
        mpmath equations decide the root). Empty where the double-precision
        solve is not possible (values out of float range, complex groups …)."""
        import warnings
        from .._bindings import numbers
        try:
            if getattr(self, "_float", None) is None:
                self._float = CompiledEquivalent(self.de, backend="numpy")
            fb = {k: numbers(k, v) for k, v in bindings.items()}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = self._float._solve(fb, raise_on_failure=False, maxiter=opts["maxiter"])
            out = {}
            for s in self._float._plan(self._float._default_signature()).top:
                for u in s.unknowns:
                    out[u.name] = (np.ravel(res.z[s.zlabel]), np.ravel(res.x[u.name]))
            return out
        except Exception:  # noqa: BLE001 - a warm start is an optimisation only
            return {}

    # ----------------------------------------------------------- evaluation
    def solve(self, *args, **kwargs):
        """Solve the self-consistent equations and evaluate the value:
        ``f.solve(bindings_dict, **options)`` or ``f.solve(**bindings,
        options={...})`` (options: ``raise_on_failure=True``,
        ``maxiter=100``, ``xtol``, ``eta=1e-9``, ``quad_rtol``).

        ``quad_rtol``: relative tolerance of the adaptive quadrature of
        integral values (default ``10^(−5·digits/8)``, 1e-10 in double
        precision); a looser one (e.g. 1e-7 for comparisons with Monte Carlo)
        saves levels of nodes — roughly a factor 2 per level and integral,
        4 for double integrals. The achieved difference of the last two levels
        is in ``result.quad_error``.

        A value is reported converged only where every group converged and,
        with integrals, each integral's error estimate (the difference of its
        last two levels) is at most ``quad_rtol`` relative to the integral
        when ``quad_rtol`` is given (``√rtol`` at the default ``rtol``), and
        these errors propagated to the value, ``Σ_i |∂value/∂I_i| err_i``
        (``result.quad_error``, absolute), are at most that tolerance relative
        to the value: integrals that cancel in the value do not pass on their
        own accuracy. Where the value is zero to rounding against its parts
        (``result.quad_near_zero``) the error is judged against the parts.

        Raises :class:`ConvergenceError` (with ``.result``) if some grid point
        did not converge, unless ``raise_on_failure=False``.
        """
        bindings, options = split_options(args, kwargs, self.catalog.names,
                                          SOLVE_OPTIONS + ("raise_on_failure",), "solve", _deprecated)
        return self._solve(bindings, **options)

    def _solve(self, bindings, raise_on_failure=True, maxiter=100, xtol=None, eta=1e-9, quad_rtol=None):
        be = self.backend
        if quad_rtol is not None and not (0 < float(quad_rtol) < 1):
            raise ValueError(f"quad_rtol must be in (0, 1), got {quad_rtol!r}")
        if xtol is not None and not (0 < float(xtol) <= XTOL_MAX):
            raise ValueError(f"xtol must be in (0, {XTOL_MAX:g}] (a relative Newton step; a looser one would "
                             f"report unconverged roots as converged), got {xtol!r}")
        if not (isinstance(maxiter, (int, np.integer)) and maxiter >= 1):
            raise ValueError(f"maxiter must be a positive int, got {maxiter!r}")
        opts = dict(maxiter=int(maxiter), xtol=be.xtol if xtol is None else xtol,
                    eta=float(eta), quad_rtol=None if quad_rtol is None else float(quad_rtol))
        with be.context(), np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            bound = bind(self.catalog, be, bindings, self._symmetric, self._inverted)
            if be.name == "mpmath":
                opts["warm"] = self._warm_start(bindings, opts)
            plan = self._plan(bound.signature)
            n = bound.size
            env = dict(bound.values)
            env.update({ph: _spectral_norm(bound.mats[name], be) for ph, name in self._norms.items()})
            diagnostics = {}
            groups = solve_groups(plan.top, env, bound, n, opts)
            out, ok_int = plan.value.evaluate(env, bound, n, opts, diagnostics, with_extra=True)
        value = full(out[0], n)
        value = value.copy() if value.dtype.kind in "fcO" else be.asarray(value)   # a constant value may be an int
        solved = ok_int.copy()
        for g in groups.values():
            solved &= g["converged"]
        # NaN from a solved point (0/0 …) is undefined, and is reported like a failure, never silently
        undefined = solved & ~be.isfinite(value) & ~_is_inf(value, be)
        # ±inf at a zero ridge is a 0/0 limit the derived form (ridge in a denominator) cannot take:
        # reported as undefined, never returned as a number
        at_zero = np.zeros(n, dtype=bool)
        for s in plan.top:
            zv = np.asarray(full(env[s.zname], n))
            at_zero |= np.asarray(zv == 0, dtype=bool).reshape(-1)
        undefined |= solved & _is_inf(value, be) & at_zero
        converged = solved & ~undefined
        raw = np.ravel(value).copy()
        value[~converged] = be.const(float("nan"))
        shape = bound.shape
        res = SolveResult(
            value=value.reshape(shape),
            x={u.name: env[u.name].reshape(shape) for s in plan.top for u in s.unknowns},
            residuals=_residuals(plan, out[1:], n, shape),
            nit={k: g["nit"].reshape(shape) for k, g in groups.items()},
            converged=converged.reshape(shape),
            success=bool(converged.all()),
            z={s.zlabel: np.asarray(full(env[s.zname], n)).reshape(shape) for s in plan.top},
            eta={s.zlabel: g["eta"].reshape(shape) for s, g in zip(plan.top, groups.values())},
            shape=shape,
        )
        if "value_quad_error" in diagnostics:
            # the integrals' error estimates propagated to the value (absolute); converged only where
            # it is within the relative tolerance of the value (plan.ValueNode._value_error)
            res["quad_error"] = np.asarray(diagnostics["value_quad_error"], dtype=float).reshape(shape)
            res["quad_near_zero"] = np.asarray(diagnostics["value_near_zero"], dtype=bool).reshape(shape)
        elif "quad_error" in diagnostics:
            err = [np.asarray(full(e, n), dtype=float) for e in diagnostics["quad_error"]]
            res["quad_error"] = np.max(np.stack(err), axis=0).reshape(shape)
        res["message"] = _message(res, ~solved, undefined, bindings, bound, opts, raw)
        if raise_on_failure and not res.success:
            raise ConvergenceError(res["message"], res)
        return res

    def __call__(self, *args, **kwargs):
        """The value at the bindings, an array of their broadcast shape:
        ``f(**bindings)``, ``f(**bindings, options={...})`` or
        ``f(bindings_dict, **options)``.

        ``on_failure="raise"`` (default) raises :class:`ConvergenceError` where
        the equations could not be solved; ``"nan"`` returns NaN there
        (``f.solve(...).converged`` tells which).
        """
        bindings, options = split_options(args, kwargs, self.catalog.names, CALL_OPTIONS, "compiled equivalent",
                                          _deprecated)
        on_failure = options.pop("on_failure", "raise")
        if on_failure not in ("raise", "nan"):
            raise ValueError(f"on_failure must be 'raise' or 'nan', got {on_failure!r}")
        return self._solve(bindings, raise_on_failure=(on_failure == "raise"), **options).value


def _merge_roles(a, b):
    """Union of two ``{name: "symmetric"|"psd"}`` (PSD wins)."""
    out = dict(a)
    for k, v in b.items():
        out[k] = "psd" if "psd" in (v, out.get(k)) else v
    return out


def _norm_placeholders(de):
    """``de`` with each spectral norm ``Norm(S)`` (value, equations, spectral
    parameters) replaced by a scalar ``__norm_S`` filled in from the binding
    of ``S``; and ``{placeholder name: S's name}``."""
    exprs = [de.value] + [e for g in de.groups for e in (*g.equations, sp.sympify(g.z))]
    atoms = set().union(*[sp.sympify(e).atoms(Norm) for e in exprs])
    if not atoms:
        return de, {}
    rep, names = {}, {}
    for a in atoms:
        if not isinstance(a.arg, sp.MatrixSymbol):
            raise NotImplementedError(f"numerics: the spectral norm {a}: only norms of bound matrices are evaluated")
        rep[a] = sp.Symbol(f"__norm_{a.arg.name}", positive=True)
        names[rep[a].name] = a.arg.name
    groups = [dataclasses.replace(g, equations=tuple(e.xreplace(rep) for e in g.equations),
                                  z=sp.sympify(g.z).xreplace(rep)) for g in de.groups]
    return dataclasses.replace(de, value=_replace(sp.sympify(de.value), rep), groups=groups), names


def _replace(e, rep):
    """``e.xreplace(rep)`` without re-evaluating ``re(…)`` nodes (costly on
    a contour integral, and its value is known not to change)."""
    if e in rep:
        return rep[e]
    if not e.args or not e.has(*rep):
        return e
    args = [_replace(a, rep) for a in e.args]
    return sp.re(args[0], evaluate=False) if isinstance(e, sp.re) else e.func(*args)


def _spectral_norm(mat, be):
    """Largest eigenvalue of a bound symmetric PSD matrix ``(kind, array)``."""
    kind, arr = mat
    if kind == "diag":
        return arr.max()
    return be.eigh(arr)[0].max()


def _is_inf(v, be):
    if v.dtype == object:
        import mpmath
        return np.asarray(np.frompyfunc(mpmath.isinf, 1, 1)(v), dtype=bool)
    return np.isinf(v)


def _message(res, unsolved, undefined, bindings, bound, opts, raw=None):
    n = bound.size
    if not unsolved.any() and not undefined.any():
        return f"converged at all {n} grid point(s)"
    parts = []
    if unsolved.any():
        i = int(np.nonzero(unsolved)[0][0])
        there = "; ".join(
            [f"{k} = {np.ravel(v)[i]}" for k, v in res["x"].items()]
            + [f"residual {k} = {np.ravel(v)[i]}" for k, v in res["residuals"].items()]
            + [f"iterations ({k}) = {np.ravel(v)[i]}" for k, v in res["nit"].items()]
            + ([f"quadrature error ≈ {np.ravel(res['quad_error'])[i]:.3g}"
                + (f" ({np.ravel(res['quad_error'])[i] / abs(complex(raw[i])):.2g} relative to the value "
                   f"{complex(raw[i]).real:.6g})" if raw is not None and complex(raw[i]) != 0 else "")
                + (" (absolute: the value is zero to rounding against its parts)"
                   if "quad_near_zero" in res and np.ravel(res["quad_near_zero"])[i] else "")]
               if "quad_error" in res else []))
        parts.append(f"not converged at {int(unsolved.sum())} of {n} grid point(s) (maxiter={opts['maxiter']}); "
                     f"first at {_point(bindings, bound, i)}: {there}")
    if undefined.any():
        i = int(np.nonzero(undefined)[0][0])
        parts.append(f"the value is NaN (undefined, e.g. 0/0) at {int(undefined.sum())} solved grid point(s), "
                     f"first at {_point(bindings, bound, i)}")
    return "; ".join(parts) + ". See .converged"


def _residuals(plan, outs, n, shape):
    res = {}
    k = 0
    for s in plan.top:
        label = ",".join(u.name for u in s.unknowns)
        for i, _ in enumerate(s.residuals):
            res[f"{label}[{i}]"] = np.asarray(full(outs[k], n)).reshape(shape)
            k += 1
    return res


def _point(bindings, bound, i):
    """The grid bindings at flat index ``i``, for messages."""
    idx = np.unravel_index(i, bound.shape) if bound.shape else ()
    parts = []
    for name, v in bindings.items():
        a = np.asarray(v) if not isinstance(v, np.ndarray) else v
        if name in bound.values and a.ndim and name not in bound.mats:
            try:
                parts.append(f"{name}={np.broadcast_to(a, bound.shape)[idx].item()}")
            except ValueError:
                pass
    return f"index {tuple(int(j) for j in idx)}" + (f" ({', '.join(parts)})" if parts else "")


def compile_equivalent(de, backend="numpy", dps=50):
    """Compile a :class:`~symrmt.equivalence.result.DeterministicEquivalent`
    (``de.compile``): returns a :class:`CompiledEquivalent`."""
    return CompiledEquivalent(de, backend=backend, dps=dps)
