"""`python -m vs_espcn <command>`: demo | bench | bench-gpu | engines. Each command lives in its own module.

The dispatcher also turns a missing optional Python package into one sentence that names what to
`pip install`, so no command shows a user a ModuleNotFoundError traceback.
"""
from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "demo": ("vs_espcn.demo", "upscale a bundled sample photo and write a comparison PNG"),
    "bench": ("vs_espcn.bench", "frames/s of Upscale vs vs-mlrt ORT and resize.Lanczos"),
    "bench-gpu": ("vs_espcn.bench_gpu", "frames/s of TensorRT fp16/fp32 vs ORT at 1080p -> 2160p (NVIDIA GPU)"),
    "engines": ("vs_espcn.engines_cli", "build | list | clear the TensorRT engine cache"),
    "soak": ("vs_espcn.soak", "RSS every N frames over a long Upscale run (memory growth check)"),
}

# Import name -> the name pip installs it under, where the two differ.
PIP_NAMES = {
    "PIL": "pillow",
    "skimage": "scikit-image",
    "tensorrt_rtx": "tensorrt-rtx",
    "cuda": "cuda-python",
    "imageio_ffmpeg": "imageio-ffmpeg",
    "vskernels": "vsjetpack",
    "vstools": "vsjetpack",
}


def usage(problem: str = "") -> str:
    """The usage text, preceded by `problem` when there is one."""
    lines = [f"  {name:10s} {doc}" for name, (_, doc) in COMMANDS.items()]
    head = f"python -m vs_espcn: {problem}\n" if problem else ""
    return head + "usage: python -m vs_espcn <command> [options]\n" + "\n".join(lines) + "\n"


def missing_package_sentence(command: str, exc: ModuleNotFoundError) -> str | None:
    """One sentence naming the pip package a command lacks, or None when the missing module is
    part of vs_espcn itself (a broken install, which deserves its traceback)."""
    top = (exc.name or "").split(".")[0]
    if not top or top == "vs_espcn":
        return None
    package = PIP_NAMES.get(top, top)
    return (f"python -m vs_espcn {command}: needs the Python package '{package}', which is not installed "
            f"here; install it with: pip install {package}\n")


def main(argv: list[str] | None = None) -> int:
    """Dispatch to the command module's `main(argv)`; 2 for a missing or unknown command."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        sys.stderr.write(usage())
        return 0 if argv else 2
    command = argv[0]
    if command not in COMMANDS:
        sys.stderr.write(usage(f"unknown command '{command}'"))
        return 2
    try:
        module = importlib.import_module(COMMANDS[command][0])
        return int(module.main(argv[1:]) or 0)
    except ModuleNotFoundError as exc:
        sentence = missing_package_sentence(command, exc)
        if sentence is None:
            raise
        sys.stderr.write(sentence)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
