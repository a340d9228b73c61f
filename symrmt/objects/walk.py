"""Tree walks that visit each distinct sub-tree once (shared sub-expressions
are common in derived values; SymPy's own walks revisit them)."""
from __future__ import annotations

import sympy as sp


def atoms_shared(expr, *types):
    """``expr.atoms(*types)`` visiting each distinct sub-tree once."""
    types = tuple(t if isinstance(t, type) else type(t) for t in types)
    out, seen, stack = set(), set(), [expr]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, sp.Basic):
            if types:
                if isinstance(node, types):
                    out.add(node)
            elif not node.args:
                out.add(node)
            stack.extend(getattr(node, "_argset", None) or node.args)
        elif sp.iterables.iterable(node):
            stack.extend(node)
    return out
