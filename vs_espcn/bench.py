"""`python -m vs_espcn bench`: frames/s of espcn.Upscale next to vs-mlrt (ort, ov) and resize.Lanczos.

Every pipeline runs in this process on the same YUV420P8 clip and the same ONNX, in alternating
rounds (best round wins, so a noisy shared machine hurts all rows alike):
  * `espcn default`  - our Upscale with every default (the product: mirrored edge, network Y, output
                       clamp, Spline36 chroma, props; the backend and precision `auto` picks)
  * `espcn ort fp32`, `espcn ov fp32/bf16/int8` - the same with the backend/precision fixed (int8: the
                       model's int8 twin, made by quantization-aware training)
  * `mlrt ort`, `mlrt ort s2`, `mlrt ov`, `mlrt ov bf16 s1/s2` - the same job built from vs-mlrt: Y ->
                       GRAYS -> mirrored edge (Crop/Flip/Stack) -> core.ort/ov.Model -> crop -> 8 bit,
                       chroma resized; ort with 1 and 2 streams, ov at its default precision, then bf16
                       set in its config with 1 and 2 streams (vs-mlrt's best CPU settings)
  * `lanczos`        - resize.Lanczos of the clip (the cheap baseline)
Rows whose plugin or instruction set is missing are listed as skipped, with the reason. The table goes
to stdout (this is a CLI, not a VapourSynth script).
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


def mlrt_job(yuv: "object", model: Path, radius: int, scale: int, plugin: str, **kwargs: object) -> "object":
    """vs-mlrt's `core.<plugin>.Model` doing our whole job on a YUV420P8 clip: Y -> GRAYS -> mirrored edge
    -> network -> crop -> 8 bit, chroma through Spline36 (no output clamp: one min/max per frame)."""
    import vapoursynth as vs

    core = vs.core
    y = core.std.Expr(core.std.ShufflePlanes(yuv, 0, vs.GRAY), "x 255 /", format=vs.GRAYS)
    net = getattr(core, plugin).Model([mirror_edge(y, radius)], network_path=str(model), **kwargs)
    k = radius * scale
    y8 = core.std.Expr(net.std.Crop(k, k, k, k), "x 255 *", format=vs.GRAY8)
    chroma = core.resize.Spline36(yuv, yuv.width * scale, yuv.height * scale)
    return core.std.ShufflePlanes([y8, chroma], [0, 1, 2], vs.YUV)


def source(width: int, height: int, length: int, clip_path: str) -> "object":
    """A YUV420P8 clip of width x height whose frames cost nothing to get, so no row pays for decoding
    (the first row of a round would, the others would read VapourSynth's cache): the first `length`
    frames of a real video resized (`clip_path`, read with BestSource) held in memory, else one fixed
    frame of smooth gradients and noise."""
    import numpy as np
    import vapoursynth as vs

    core = vs.core
    blank = core.std.BlankClip(format=vs.YUV420P8, width=width, height=height, length=length)
    if clip_path:
        video = core.resize.Bicubic(core.bs.VideoSource(clip_path), width, height, format=vs.YUV420P8)
        held = [video.get_frame(n % video.num_frames) for n in range(length)]
        return blank.std.ModifyFrame(blank, lambda n, f: held[n])
    frame = blank.get_frame(0).copy()
    rng = np.random.default_rng(0)
    for p in range(3):
        a = np.asarray(frame[p])
        yy, xx = np.mgrid[:a.shape[0], :a.shape[1]]
        a[:] = np.clip(128 + 60 * np.sin(xx / 17.0 + p) * np.cos(yy / 23.0) + rng.normal(0, 12, a.shape), 16, 235)
    return blank.std.ModifyFrame(blank, lambda n, f: frame)


def pipelines(model: Path, width: int, height: int, length: int, clip_path: str
              ) -> tuple[dict[str, "object"], list[str]]:
    """(name -> VideoNode for every row of the table, the skipped rows with their reasons)."""
    import vapoursynth as vs

    from vs_espcn import backends, precision
    from vs_espcn.graph import upscale
    from vs_espcn.models import load

    info = load(model)
    core, r = vs.core, info.scale
    yuv = source(width, height, length, clip_path)
    rows, skipped = {"espcn default": upscale(yuv, model=str(model))}, []
    rows["espcn ort fp32"] = upscale(yuv, model=str(model), backend="ort")
    ov_ok, ov_why = backends.ov_status()
    for prec in ("fp32", "bf16", "int8"):
        if not ov_ok or not precision.cpu_can(prec):
            skipped.append(f"espcn ov {prec}: " + (ov_why or precision.unavailable("ov", prec) or ""))
            continue
        try:
            rows[f"espcn ov {prec}"] = upscale(yuv, model=str(model), backend="ov", precision=prec)
        except vs.Error as exc:  # e.g. int8 for a model without an int8 twin
            skipped.append(f"espcn ov {prec}: {exc}")
    if hasattr(core, "ort"):
        rows["mlrt ort"] = mlrt_job(yuv, model, info.radius, r, "ort", provider="CPU")
        rows["mlrt ort s2"] = mlrt_job(yuv, model, info.radius, r, "ort", provider="CPU", num_streams=2)
    else:
        skipped.append("mlrt ort: vs-mlrt's ort plugin is not installed (pip install vapoursynth-mlrt-ort)")
    if hasattr(core, "ov"):
        bf16 = lambda: {"INFERENCE_PRECISION_HINT": "bf16"}  # noqa: E731 (vs-mlrt's config is a function)
        rows["mlrt ov"] = mlrt_job(yuv, model, info.radius, r, "ov", device="CPU")
        for streams in (1, 2):
            rows[f"mlrt ov bf16 s{streams}"] = mlrt_job(yuv, model, info.radius, r, "ov", device="CPU",
                                                        num_streams=streams, config=bf16)
    else:
        skipped.append("mlrt ov: vs-mlrt's ov plugin is not installed (pip install vapoursynth-mlrt-ov)")
    rows["lanczos"] = core.resize.Lanczos(yuv, width * r, height * r)
    return rows, skipped


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
    """Parse options, run every size and print the table with the ours/best-peer ratio."""
    ap = argparse.ArgumentParser(prog="python -m vs_espcn bench", description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=8, help="frames per round (default 8)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds, best kept (default 3)")
    ap.add_argument("--model", default="", help="ONNX path (default: shipped x2, else random weights)")
    ap.add_argument("--sizes", default="720x480", help="comma-separated WxH list (default 720x480)")
    ap.add_argument("--clip", default="", help="a video to measure on (BestSource), resized to each size")
    ap.add_argument("-q", "--quiet", action="store_true", help="no per-round progress")
    args = ap.parse_args(argv)
    import sys

    import vapoursynth as vs

    progress = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else default_model(Path(tmp))
        print(f"model {model.name}  vs threads {vs.core.num_threads}  frames {args.frames} x {args.rounds} "
              f"rounds (best)  source {args.clip or 'synthetic'}")
        for size in args.sizes.split(","):
            w, h = (int(v) for v in size.lower().split("x"))
            rows, skipped = pipelines(model, w, h, 1 + args.frames * args.rounds, args.clip)
            progress(f"{w}x{h}")
            best = measure(rows, args.frames, args.rounds, progress)
            print(f"\n{w}x{h} YUV420P8 (x{next(iter(rows.values())).width // w})")
            print(f"  {'pipeline':18s} {'fps':>8s} {'cpu ms/frame':>13s}")
            for name, (f, c) in best.items():
                print(f"  {name:18s} {f:8.2f} {c:13.1f}")
            peers = {k: v for k, v in best.items() if k.startswith("mlrt")}
            if peers:
                top = max(peers, key=lambda k: peers[k][0])
                for ours in (k for k in best if k.startswith("espcn")):
                    print(f"  {ours} / {top} (best peer): {best[ours][0] / peers[top][0]:.2f}x")
            for line in skipped:
                print(f"  skipped {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
