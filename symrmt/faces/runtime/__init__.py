"""Runtime of the modules written by :func:`symrmt.faces.codegen.to_python`.

Each part's text below its ``# ---- RUNTIME BEGINS ----`` marker is copied
verbatim, in the order of :data:`PARTS`, into every generated module, so it
imports NumPy only and never symrmt. The parts are real modules (rather
than string templates) so that they are linted, imported and tested like
the rest of the package; what they import above the marker from one another
or from :mod:`.spec` (the generated definitions) is one namespace in the
generated module.
"""
from __future__ import annotations

import pathlib

PARTS = ("matrices", "bindings", "solvers")
MARKER = "# ---- RUNTIME BEGINS ----\n"


END = "# ---- RUNTIME ENDS ----"


def source() -> str:
    """The runtime's text, as copied into generated modules: first the NumPy
    half of the one binding layer (:mod:`symrmt._bindings`, between its
    markers), then the parts."""
    here = pathlib.Path(__file__).parent
    shared = (here.parent.parent / "_bindings.py").read_text().split(MARKER, 1)[1].split(END, 1)[0]
    texts = [shared.strip("\n")]
    texts += [(here / f"{part}.py").read_text().split(MARKER, 1)[1].strip("\n") for part in PARTS]
    return "\n\n\n".join(texts) + "\n"
