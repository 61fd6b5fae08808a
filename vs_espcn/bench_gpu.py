"""`python -m vs_espcn bench-gpu`: frames/s of Upscale x2 on a 1920x1080 clip (-> 3840x2160) with
TensorRT fp16, TensorRT fp32 and ONNX Runtime, side by side.

Engine builds and the first frames are excluded (warm-up); frames are requested the way vspipe
does (several in flight, `clip.frames()` prefetching). A backend that cannot run here is listed
with the reason instead of a number. Results go to stdout (this is a command, not a video pipe).
"""
from __future__ import annotations

import argparse
import sys
import time


def _clip(width: int, height: int, length: int):
    """A YUV420P8 clip with a moving diagonal ramp (content does not change the speed of a CNN)."""
    import numpy as np
    import vapoursynth as vs

    blank = vs.core.std.BlankClip(format=vs.YUV420P8, width=width, height=height, length=length,
                                  color=[0, 128, 128])
    ramp = (np.add.outer(np.arange(height), np.arange(width)) % 220 + 16).astype(np.uint8)

    def fill(n: int, f):
        out = f.copy()
        np.asarray(out[0])[...] = np.roll(ramp, n, axis=1)
        return out

    return vs.core.std.ModifyFrame(blank, blank, fill)


def measure(clip, frames: int, warmup: int) -> float:
    """Frames/s over `frames` frames after `warmup` frames (fetched and discarded)."""
    for _ in clip[:warmup].frames():
        pass
    body = clip[warmup:warmup + frames]
    start = time.perf_counter()
    for _ in body.frames():
        pass
    return frames / (time.perf_counter() - start)


def run(width: int, height: int, scale: int, model: str, frames: int, warmup: int,
        configs: list[tuple[str, str, dict]]) -> list[tuple[str, float | None, str]]:
    """(label, fps or None, note) per config."""
    from vs_espcn import graph

    src = _clip(width, height, frames + warmup)
    results = []
    for label, backend, kw in configs:
        try:
            out = graph.upscale(src, scale, model=model, backend=backend, **kw)
            results.append((label, measure(out, frames, warmup), f"{out.width}x{out.height}"))
        except Exception as e:  # noqa: BLE001 - report and go on with the next backend
            results.append((label, None, str(e).splitlines()[0]))
    return results


DESCRIPTION = ("Frames/s of Upscale on a synthetic clip (default x2, 1920x1080 -> 3840x2160) with TensorRT fp16 "
               "(1 and 2 streams), TensorRT fp32 and ONNX Runtime on the CPU, after a warm-up; a backend "
               "that cannot run here is listed with the reason.")

CONFIGS = [
    ("trt fp16", "trt", {"fp16": True}),
    ("trt fp16 2 streams", "trt", {"fp16": True, "num_streams": 2}),
    ("trt fp32", "trt", {"fp16": False}),
    ("ort (CPU)", "ort", {}),
]


def main(argv: list[str] | None = None) -> int:
    """Parse options, run every config, print one line each."""
    p = argparse.ArgumentParser(prog="python -m vs_espcn bench-gpu", description=DESCRIPTION)
    p.add_argument("--width", type=int, default=1920)
    p.add_argument("--height", type=int, default=1080)
    p.add_argument("--scale", type=int, default=2)
    p.add_argument("--model", default="", help='"" (shipped natural model) or a path to an ONNX file')
    p.add_argument("--frames", type=int, default=30, help="timed frames per backend (ORT gets at most 5)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--only", default="", help="comma-separated labels prefixes, e.g. 'trt' or 'ort'")
    args = p.parse_args(argv)
    configs = [c for c in CONFIGS if not args.only or any(c[0].startswith(o) for o in args.only.split(","))]
    print(f"Upscale x{args.scale} {args.width}x{args.height} -> {args.width * args.scale}x{args.height * args.scale}")
    for label, backend, kw in configs:
        frames = min(args.frames, 5) if backend == "ort" else args.frames
        [(label, fps, note)] = run(args.width, args.height, args.scale, args.model, frames, args.warmup,
                                   [(label, backend, kw)])
        line = f"{label:20s} {fps:8.2f} fps" if fps is not None else f"{label:20s}      n/a ({note})"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
