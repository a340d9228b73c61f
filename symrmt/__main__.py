"""``python -m symrmt``: the main job on its built-in default (README);
``python -m symrmt COMMAND …`` is the ``symrmt`` command line
(``derive``, ``verify``, ``codegen``, ``run``, ``demo``)."""
import sys

COMMANDS = ("derive", "verify", "codegen", "run", "demo")

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in COMMANDS:
        from .faces.cli import main as cli_main
        raise SystemExit(cli_main(sys.argv[1:]))
    from .faces.demo import main
    raise SystemExit(main())
