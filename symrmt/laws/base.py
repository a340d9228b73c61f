"""The base class of a law family, and how it plugs into the layers.

A *law family* is the law of one kind of random core (white Wishart data,
correlated samples, pooled blocks …) together with everything each layer
needs to handle it. One module of :mod:`symrmt.laws` holds one family:

=====================  =======================================================  ==========================
layer                  what the law provides                                    registry (lower layer)
=====================  =======================================================  ==========================
equivalence            ``applies(core)``, ``equations(reg, core, z)``           ``equivalence.laws.FAMILIES``
                       (SymPy, from the S-transform catalogue), ``side``
presentation           ``presents_kappa`` (``κ Π_j(1 − df/m_j) = z`` shown)     (same object)
numerics               ``numeric``: its :class:`~symrmt.numerics.laws.LawSystem`  ``numerics.laws.LAWS``
                       (the increasing map, bracket, start, complex hooks,
                       ``python_solver``) — a class or ``"module:Class"``
Monte Carlo            ``samples(obj)``, ``draw(sampler, obj, ctx, rng)``        ``FAMILIES`` (looked up by
                       (the draw of one data block), ``gram``                   ``montecarlo.sampler``)
=====================  =======================================================  ==========================

The registries sit in the lower layers and are keyed by ``kind``; a law
module imports those layers and registers itself (:func:`register`), never
the other way round. The numeric hooks of the built-in families are named
by a string (``"symrmt.numerics.laws.wishart:WishartSystem"``) and imported
on first compile, so that a bare ``import symrmt`` stays free of SciPy and
the numerics layer (benchmarks/import_time.py); a plug-in may give the class
itself. Adding a law = one module (a ``Law`` subclass decorated with
:func:`register`, plus its ``LawSystem``) and its tests: see
``tests/test_laws_plugin.py``, which registers a rescaled Wishart law,
derives, compiles and samples with it, and unregisters it.
"""
from __future__ import annotations

from importlib import import_module

from ..equivalence.laws import FAMILIES, register_law, unregister_law


class Law:
    """One law family. Subclasses set :attr:`kind` and override the hooks."""

    #: registry key, shared by every layer (``UnknownGroup.kind``)
    kind = None
    #: human name for messages and docs
    title = ""
    #: the group is one unknown ``κ`` whose equation is ``κ Π_j(1 − df₁(κ)/m_j) = z``
    #: (the presentation layer shows it with ``df₁``, ``γ`` and eliminates ridges through it)
    presents_kappa = False
    #: the core may be a block of the general one-point law (pooled sums, shifts, the k-point lift)
    pools = False
    #: the numeric hooks: a ``LawSystem`` subclass or ``"module:Class"`` (imported on first use)
    numeric = None
    #: draws of this law may use the Bartlett Gram sampler (``montecarlo.sampler``)
    gram = False

    # ------------------------------------------------------------ equivalence
    def applies(self, core):
        """Whether this family gives the law of ``core`` (a :class:`~symrmt.rewrite.letters.Core`).
        The built-in families match the exact class of the data (``type(X) is GaussianData``), so
        a subclass with another law is never derived as theirs: it needs its own family."""
        return False

    def key_extra(self, core):
        """Extra parts of the group key (what else distinguishes two cores' laws)."""
        return ()

    def equations(self, reg, core, z):
        """The group dict of ``core`` at spectral parameter ``z`` (see
        :class:`~symrmt.equivalence.laws.Registry`); ``reg.next_index()``
        numbers its dummies."""
        raise NotImplementedError(f"the {self.kind!r} law derives no equations")

    def side(self, core, g):
        """The :class:`~symrmt.equivalence.laws.Side` the rules use for ``core`` with group ``g``."""
        raise NotImplementedError(f"the {self.kind!r} law has no one-core side")

    # ------------------------------------------------------------ numerics
    def numeric_class(self):
        """The ``LawSystem`` subclass of this family (imported if named by a string)."""
        num = self.numeric
        if num is None:
            raise NotImplementedError(f"numerics: the {self.kind!r} law has no numeric hooks")
        if isinstance(num, str):
            mod, _, name = num.partition(":")
            num = getattr(import_module(mod), name)
        return num

    # ------------------------------------------------------------ Monte Carlo
    def samples(self, obj):
        """Whether :meth:`draw` draws the random object ``obj``."""
        return False

    def sampling_law(self, program, obj):
        """The compiled parameters of ``obj``'s law (``program.matrix`` nodes), once per run."""
        return {}

    def draw(self, sampler, obj, ctx, rng):
        """One draw of ``obj`` (a NumPy array of its shape)."""
        raise NotImplementedError(f"monte_carlo: the {self.kind!r} law has no sampler")

    def __repr__(self):
        return f"<law {self.kind!r}: {self.title}>"


def register(cls):
    """Class decorator: registers an instance of the law family ``cls``
    (equivalence/presentation/Monte Carlo registry); a ``numeric`` given as a
    class is registered in the numerics registry too."""
    law = register_law(cls)
    if isinstance(cls.numeric, type):
        from ..numerics.laws import register as register_numeric
        if getattr(cls.numeric, "kind", None) != cls.kind:
            raise ValueError(f"{cls.__name__}.numeric must have kind {cls.kind!r}")
        register_numeric(cls.numeric)
    return cls if isinstance(cls, type) else law


def unregister(kind):
    """Remove the family ``kind`` from every registry (a test's toy law)."""
    law = unregister_law(kind)
    import sys
    if "symrmt.numerics.laws" in sys.modules:
        from ..numerics.laws import LAWS
        LAWS.pop(kind, None)
    return law


__all__ = ["Law", "FAMILIES", "register", "unregister"]
