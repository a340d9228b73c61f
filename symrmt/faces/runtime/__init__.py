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


def source() -> str:
    """The runtime's text, as copied into generated modules."""
    here = pathlib.Path(__file__).parent
    texts = [(here / f"{part}.py").read_text().split(MARKER, 1)[1].strip("\n") for part in PARTS]
    return "\n\n\n".join(texts) + "\n"
