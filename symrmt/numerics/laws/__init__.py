"""Law families on the numeric side: one module per family, one registry.

A group of unknowns produced by the engine (:class:`~symrmt.equivalence.result.UnknownGroup`)
names its family in ``group.kind``. Each family is one module here holding a
:class:`~.base.LawSystem` subclass — its stages (residuals, Jacobian and the
functionals the solver needs, lowered once), its real-ridge solver (the
increasing map, the bracket, the start), its complex-continuation hooks (start
at large ``|z|``, spectral scale, branch variables and the branch test
``branch_ok``) and the line the
standalone module (:mod:`symrmt.faces.codegen`) emits for it — registered in
:data:`LAWS` by :func:`register` (the ``solve_ivp`` ``METHODS`` pattern: no
string switches in the solvers, the plan or the code generator).

The law family itself (its equations, presentation attributes and sampler)
is one module of :mod:`symrmt.laws`, which names its class here
(``Law.numeric``); :func:`~.base.numeric_class` finds a kind in :data:`LAWS`
or, failing that, through the family registered in the equivalence layer
(a plug-in family may carry its ``LawSystem`` class itself:
``tests/test_laws_plugin.py``). A numeric class is written like::

    @register
    class MyLaw(LawSystem):
        kind = "mylaw"
        def __init__(self, group, index, lowering, backend): ...
        def solve_real(self, env, bound, z, opts): ...

=============  ===============================================  =========================
kind           equations (docs/math.md)                         module
=============  ===============================================  =========================
``wishart``    ``κ Π_j(1 − df₁(κ)/m_j) = z``                     :mod:`.wishart`
``separable``  ``Tr[K(K+ν)⁻¹] = df₁(κ)``, ``κ ν df₁ = m z``       :mod:`.separable`
``general``    ``δ_j = c_j Tr[Σ_j R(δ)]/n_j`` (blocks, shift B)  :mod:`.general`
=============  ===============================================  =========================
"""
from .base import LAWS, LawSystem, numeric_class, register, system_for
from . import general, separable, wishart  # noqa: F401  (registration)

__all__ = ["LAWS", "LawSystem", "numeric_class", "register", "system_for"]
