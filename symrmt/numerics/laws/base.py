"""The base class of a law family's numeric side, and the registry."""
from __future__ import annotations

import numpy as np
import sympy as sp

from ..kernels import Stage
from ..solvers import bracketed_newton, take, warm_start

#: kind → :class:`LawSystem` subclass (filled by :func:`register`)
LAWS = {}


def register(cls):
    """Class decorator: adds ``cls`` to :data:`LAWS` under ``cls.kind``."""
    if not getattr(cls, "kind", None):
        raise TypeError(f"{cls.__name__} needs a 'kind'")
    if cls.kind in LAWS and LAWS[cls.kind] is not cls:
        raise ValueError(f"a law of kind {cls.kind!r} is already registered ({LAWS[cls.kind].__name__})")
    LAWS[cls.kind] = cls
    return cls


def system_for(group, index, lowering, backend):
    """The numeric system of one group of unknowns (its family's class)."""
    return numeric_class(group.kind)(group, index, lowering, backend)


def numeric_class(kind):
    """The :class:`LawSystem` subclass of ``kind``: from :data:`LAWS`, else
    from the law family registered under ``kind`` in the equivalence layer
    (``Law.numeric``, a class or ``"module:Class"``, imported and registered
    here on first use); ``NotImplementedError`` naming the kind otherwise."""
    cls = LAWS.get(kind)
    if cls is None:
        from ...equivalence.laws import FAMILIES
        law = FAMILIES.get(kind)
        if law is not None and law.numeric is not None:
            cls = law.numeric_class()
            if getattr(cls, "kind", None) != kind:
                raise ValueError(f"numerics: the {kind!r} law's numeric class {cls.__name__} has kind "
                                 f"{getattr(cls, 'kind', None)!r}")
            LAWS[kind] = cls
    if cls is None:
        raise NotImplementedError(f"numerics: unknown group kind {kind!r} "
                                  f"(registered: {', '.join(sorted(LAWS))})")
    return cls


class LawSystem:
    """One group of unknowns, prepared for the solvers (symbolic work done once).

    For a group with unknowns ``u`` and equations ``lhs_i = rhs_i`` the
    residuals are ``F_i = lhs_i − rhs_i`` with the group's spectral parameter
    ``z`` replaced by a placeholder (so that the solvers can move ``z`` off the
    real axis, or along a continuation path), and the Jacobian
    ``J_ij = ∂F_i/∂u_j`` is differentiated by SymPy (``Tr``/``Form``
    differentiate through symrmt's matrix derivative). Everything is lowered to
    contractions and lambdified into :class:`~symrmt.numerics.kernels.Stage`
    objects.

    Subclasses implement the hooks below; the solvers call only these.
    """

    #: registry key (``group.kind``) and a human name for messages
    kind = None
    title = ""
    #: whether :meth:`python_solver` emits a standalone solver
    has_python_solver = False

    # ------------------------------------------------------------ common set-up
    def _prepare(self, group, index, lowering, backend):
        """Residuals, Jacobian, the placeholder for ``z`` and its inverse map."""
        self.group = group
        self.backend = backend
        self.unknowns = tuple(group.unknowns)
        self._lowering = lowering
        z = sp.sympify(group.z)
        zsym = sp.Symbol(f"__z{index}")
        self._zsym = zsym
        self.zname, self.zlabel, self.z = zsym.name, sp.sstr(z), z
        F = [(e.lhs.subs(z, zsym) - e.rhs.subs(z, zsym)) for e in group.equations]
        if len(F) != len(self.unknowns):
            raise ValueError(f"group {self.unknowns}: {len(F)} equations for {len(self.unknowns)} unknowns")
        self.residuals = F
        self.jacobian = [sp.diff(f, u) for f in F for u in self.unknowns]
        self.zstage = self.stage([z])
        self._inverse_z = None
        if len(z.free_symbols) == 1:
            (s,) = z.free_symbols
            w, free = sp.Symbol("__w"), sp.Dummy(s.name)   # drop s's sign assumptions
            sol = sp.solve(sp.Eq(w, z.xreplace({s: free})), free)
            if len(sol) == 1:
                self._inverse_z = (s.name, backend.lambdify([w], [sol[0]]))
        return F

    def newton_from_above(self, env, z, x0, opts, step):
        """Safeguarded Newton for a one-unknown law on a real ridge grid ``z``,
        started at ``x0`` (above the root; replaced by a warm start where one
        is given in ``opts["warm"]``), bracketed in ``[0, ∞)``.
        ``step(e, idx, x) → (Newton step, below)``: ``e`` the environment of the
        points ``idx`` with the unknown set to ``x``; ``below`` marks points
        known to lie below the root (off the branch, or ``h(x) < z``). Off the
        branch the step must be NaN (the bracket then bisects): a residual can
        vanish there at a spurious root, and a small step would count as converged."""
        be = self.backend
        (k,) = self.unknowns
        x0 = warm_start(x0, z, opts.get("warm", {}).get(k.name), be)
        zero = 0 * x0
        inf = zero + be.const(float("inf"))

        def evaluate(idx, x):
            e = take(env, idx)
            e[k.name] = x
            e[self.zname] = z[idx]
            return step(e, idx, x)

        x, nit, conv = bracketed_newton(evaluate, x0, zero, inf, be, opts["maxiter"], opts["xtol"])
        return {k.name: x}, nit, conv

    def stage(self, exprs):
        """Lower SymPy expressions once into a vectorised :class:`Stage`."""
        low = self._lowering.lower_expr
        return Stage(self.backend, [low(sp.sympify(e)) for e in exprs], self._lowering.contractions)

    # ------------------------------------------------------------ hooks
    def solve_real(self, env, bound, z, opts):
        """Real ``z ≥ 0``: ``({name: array}, nit, converged)`` on the physical branch."""
        raise NotImplementedError(f"numerics: the {self.kind!r} law has no real-ridge solver")

    def scale(self, env, bound):
        """Spectral scale of the core (start of the complex continuation)."""
        raise NotImplementedError(f"numerics: complex spectral parameters for the {self.kind!r} law "
                                  "are not implemented")

    def initial_guess(self, env, bound, z0):
        """Complex Newton start at large ``|z0|`` (in :attr:`complex_names` variables)."""
        raise NotImplementedError(f"numerics: complex spectral parameters for the {self.kind!r} law "
                                  "are not implemented")

    def complex_unknowns(self, U):
        """The group's unknowns from the complex Newton variables."""
        return list(U)

    def branch_ok(self, U):
        """Whether the complex Newton variables ``U`` (at ``Im z < 0``) are on the
        physical branch; default: every unknown has ``Im u ≤ 0`` (``κ``, ``ν``), finite."""
        from ..solvers import _branch_ok
        return _branch_ok(self.complex_unknowns(U), self.backend)

    @classmethod
    def python_solver(cls, b, group, names, label):
        """The line the standalone module (``to_python``) emits to solve this
        group, or ``NotImplementedError``."""
        raise NotImplementedError(f"to_python: the {cls.kind!r} law's unknowns {tuple(group.unknowns)} "
                                  "have no standalone solver yet")

    # ------------------------------------------------------------ z
    def z_values(self, env, bound, n):
        return np.broadcast_to(np.asarray(self.zstage(env, bound)[0]), (n,)).copy()

    def binding_for_z(self, z_used):
        """``(name, values)`` of the binding giving spectral parameter ``z_used``, if invertible."""
        if self._inverse_z is None:
            return None
        name, fn = self._inverse_z
        return name, fn(z_used)[0]
