"""`python -m vs_espcn <command>`: demo | bench | bench-gpu | engines. Each command lives in its own module."""
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


def main(argv: list[str] | None = None) -> int:
    """Dispatch to the command module's `main(argv)`."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        lines = [f"  {name:10s} {doc}" for name, (_, doc) in COMMANDS.items()]
        sys.stderr.write("usage: python -m vs_espcn <command> [options]\n" + "\n".join(lines) + "\n")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
