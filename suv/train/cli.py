"""Deprecated: ``python -m suv.train.cli`` / ``torchrun -m suv.train.cli`` is now ``suv.cli.train`` (the ``suv-train``
console script: ``torchrun --no-python suv-train ...``). It still runs, with a DeprecationWarning."""
import warnings

from .._deprecated import moved

__getattr__ = moved(__name__, {"main": "suv.cli.train"})

if __name__ == "__main__":
    from suv.cli.train import main

    warnings.warn("python -m suv.train.cli is deprecated; run suv-train or python -m suv.cli.train",
                  DeprecationWarning, stacklevel=1)
    raise SystemExit(main())
