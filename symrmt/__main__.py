"""``python -m symrmt``: the main job on its built-in default (README)."""
from .faces.demo import main

if __name__ == "__main__":
    raise SystemExit(main())
