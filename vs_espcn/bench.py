"""`python -m vs_espcn bench`: frames/s of espcn.Upscale next to vs-mlrt ORT and resize.Lanczos.

Every pipeline runs in this process on the same clip and the same ONNX, in alternating rounds
(best round wins, so a noisy shared machine hurts all rows alike):
  * `espcn YUV`   - our Upscale on YUV420P8 (the product: mirrored edge, network Y, output clamp,
                    Spline36 chroma, props)
  * `mlrt YUV`    - the same job built from vs-mlrt: Y -> GRAYS -> mirrored edge (Crop/Flip/Stack) ->
                    core.ort.Model -> crop -> 8 bit, chroma resized (no clamp: one min/max per frame)
  * `espcn GRAYS` / `mlrt GRAYS` - the network alone on a float Y clip with the mirrored edge
                    (`clamp=0`; the two give identical pictures, tests/test_peer_mlrt.py)
  * `lanczos`     - resize.Lanczos of the YUV420P8 clip (the cheap baseline)
The table goes to stdout (this is a CLI, not a VapourSynth script).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

SIZES = ((1920, 1080), (720, 480))


def default_model(tmp: Path) -> Path:
    """The shipped x2 model when installed, else a random-weights ESPCN built in `tmp`."""
    from vs_espcn.models import shipped_path
    from vs_espcn.onnx_factory import make_espcn_onnx

    shipped = shipped_path("natural", 2)
    return shipped if shipped.is_file() else make_espcn_onnx(tmp / "random_x2.onnx", 2, "random")


def mirror_edge(clip: "object", pad: int) -> "object":
    """A one-plane clip extended by `pad` pixels per side, mirrored with the edge pixel repeated (the
    plugin's border), from VapourSynth's own filters."""
    import vapoursynth as vs

    w, h, core = clip.width, clip.height, vs.core
    wide = core.std.StackHorizontal([clip.std.Crop(right=w - pad).std.FlipHorizontal(), clip,
                                     clip.std.Crop(left=w - pad).std.FlipHorizontal()])
    return core.std.StackVertical([wide.std.Crop(bottom=h - pad).std.FlipVertical(), wide,
                                   wide.std.Crop(top=h - pad).std.FlipVertical()])


def mlrt_job(grays: "object", model: Path, radius: int, scale: int) -> "object":
    """vs-mlrt's `core.ort.Model` doing our network job on a float Y clip: mirrored edge, run, crop."""
    import vapoursynth as vs

    net = vs.core.ort.Model([mirror_edge(grays, radius)], network_path=str(model), provider="CPU")
    k = radius * scale
    return net.std.Crop(k, k, k, k)


def pipelines(model: Path, width: int, height: int, length: int, backend: str, threads: int
              ) -> dict[str, "object"]:
    """name -> VideoNode for every row of the table (rows whose plugin is missing are left out)."""
    import vapoursynth as vs

    from vs_espcn.graph import upscale
    from vs_espcn.models import load

    info = load(model)
    core, r = vs.core, info.scale
    yuv = core.std.BlankClip(format=vs.YUV420P8, width=width, height=height, length=length,
                             color=[120, 110, 140])
    grays = core.std.BlankClip(format=vs.GRAYS, width=width, height=height, length=length, color=[0.45])
    rows = {"espcn YUV": upscale(yuv, model=str(model), backend=backend, threads=threads),
            "espcn GRAYS": upscale(grays, model=str(model), backend=backend, threads=threads, clamp=False)}
    if hasattr(core, "ort"):
        y = core.std.Expr(core.std.ShufflePlanes(yuv, 0, vs.GRAY), "x 255 /", format=vs.GRAYS)
        y8 = core.std.Expr(mlrt_job(y, model, info.radius, r), "x 255 *", format=vs.GRAY8)
        chroma = core.resize.Spline36(yuv, width * r, height * r)
        rows["mlrt YUV"] = core.std.ShufflePlanes([y8, chroma], [0, 1, 2], vs.YUV)
        rows["mlrt GRAYS"] = mlrt_job(grays, model, info.radius, r)
    rows["lanczos"] = core.resize.Lanczos(yuv, width * r, height * r)
    return rows


def fps(clip, first: int, count: int) -> tuple[float, float]:
    """(frames/s, process CPU ms/frame) pulling frames [first, first+count) (uncached) with
    VapourSynth's threads. CPU time is the steadier figure on a machine shared with other jobs."""
    start, cpu = time.perf_counter(), time.process_time()
    for _ in clip[first:first + count].frames():
        pass
    return count / (time.perf_counter() - start), (time.process_time() - cpu) * 1000 / count


def measure(rows: dict, frames: int, rounds: int, log: Callable[[str], None]
            ) -> dict[str, tuple[float, float]]:
    """Best-of-`rounds` (fps, cpu ms/frame) per row; rows alternate inside each round."""
    for clip in rows.values():
        clip.get_frame(0)
    best = dict.fromkeys(rows, (0.0, float("inf")))
    for r in range(rounds):
        for name, clip in rows.items():
            f, c = fps(clip, 1 + r * frames, frames)
            best[name] = (max(best[name][0], f), min(best[name][1], c))
            log(f"  round {r + 1} {name:12s} {f:8.2f} fps {c:9.1f} cpu ms/frame")
    return best


def main(argv: list[str] | None = None) -> int:
    """Parse options, run every size and print the table with the ours/vs-mlrt ratios."""
    ap = argparse.ArgumentParser(prog="python -m vs_espcn bench", description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=6, help="frames per round (default 6)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds, best kept (default 2)")
    ap.add_argument("--model", default="", help="ONNX path (default: shipped x2, else random weights)")
    ap.add_argument("--backend", default="auto", choices=("auto", "ort", "trt"))
    ap.add_argument("--threads", type=int, default=0, help="ORT intra-op threads (0 = ORT default, as vs-mlrt)")
    ap.add_argument("--sizes", default="1920x1080,720x480", help="comma-separated WxH list")
    ap.add_argument("-q", "--quiet", action="store_true", help="no per-round progress")
    args = ap.parse_args(argv)
    import sys

    import vapoursynth as vs

    progress = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else default_model(Path(tmp))
        print(f"model {model}  backend {args.backend}  threads {args.threads or 'ORT default'}  "
              f"vs threads {vs.core.num_threads}  frames {args.frames} x {args.rounds} rounds (best)")
        for size in args.sizes.split(","):
            w, h = (int(v) for v in size.lower().split("x"))
            rows = pipelines(model, w, h, 1 + args.frames * args.rounds, args.backend, args.threads)
            progress(f"{w}x{h}")
            best = measure(rows, args.frames, args.rounds, progress)
            print(f"\n{w}x{h} (x{next(iter(rows.values())).width // w})")
            print(f"  {'pipeline':14s} {'fps':>8s} {'cpu ms/frame':>13s}")
            for name, (f, c) in best.items():
                print(f"  {name:14s} {f:8.2f} {c:13.1f}")
            for kind in ("YUV", "GRAYS"):
                if f"mlrt {kind}" in best:
                    (f1, c1), (f2, c2) = best[f"espcn {kind}"], best[f"mlrt {kind}"]
                    print(f"  espcn/mlrt {kind:5s}  fps ratio {f1 / f2:.3f}  cpu-time ratio {c2 / c1:.3f}"
                          " (>1 = espcn faster)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
