"""The trainer's third-party packages, checked before a command imports them.

The trainer runs from the repository root and is not part of the vs-espcn wheel, so a user may start
`python -m trainer.train` in a venv that has only the plugin (or nothing). Without this check that is a
ModuleNotFoundError traceback; with it, one sentence naming what to `pip install`.
"""
from __future__ import annotations

import importlib.util
import sys

# Import name -> pip package: the `train` extra plus the plugin's own numpy/onnx/onnxruntime.
PACKAGES = {
    "numpy": "numpy",
    "torch": "torch",
    "PIL": "pillow",
    "tqdm": "tqdm",
    "matplotlib": "matplotlib",
    "skimage": "scikit-image",
    "scipy": "scipy",
    "onnx": "onnx",
    "onnxruntime": "onnxruntime",
}


def missing() -> list[str]:
    """The pip names of the PACKAGES that cannot be imported here."""
    return [pip for name, pip in PACKAGES.items() if importlib.util.find_spec(name) is None]


def require(module: str) -> None:
    """Check PACKAGES for the trainer module named `module` (its `__name__`).

    Run as a command (`__main__`), a missing package ends the process with one sentence on stderr and
    exit status 1; imported, it raises ImportError with the same sentence (so pytest.importorskip works).
    """
    absent = missing()
    if not absent:
        return
    command = module
    if module == "__main__":  # started with `python -m trainer.X`: name the command as typed
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        command = f"python -m {spec.name}" if spec is not None else "the trainer"
    verb = "is" if len(absent) == 1 else "are"
    sentence = (f"{command} needs {', '.join(absent)}, which {verb} not installed; install with: "
                f"pip install {' '.join(absent)}")
    if module == "__main__":
        raise SystemExit(sentence)
    raise ImportError(sentence)
