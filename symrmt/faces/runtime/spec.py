"""Placeholders for what each generated module defines itself (its
bindings ``SPEC`` and the functions translated from the SymPy value), so that
the runtime parts can be imported and linted as ordinary modules. Nothing
here is copied into generated code."""

SPEC = {"scalars": {}, "matrices": {}, "randoms": {}, "required": [], "unknowns": [], "bases": {},
        "symmetric": {}, "inverted": []}


def _solve_groups(s, M):
    """Solve each group of unknowns into ``s``."""


def _equations(s, M):
    """``[(label, [terms of lhs − rhs]), ...]``."""
    return []


def _value(s, M):
    """The equivalent at the solved unknowns."""
    return 0.0
