"""`python -m vs_espcn engines build | list | clear`: manage the TensorRT engine cache.

`build` prebuilds the engine that `Upscale(clip, ..., backend="trt")` will look up for a clip of
`--width` x `--height` (the same tile plan as the plugin), so the first vspipe run does not pay
the build. It prints the engine path on stdout (this command is not part of a video pipe); all
progress goes to stderr. Without a GPU (e.g. a CI box with tensorrt-rtx) it still builds, keyed
with GPU "none"; such an engine is only a check that the model builds, not one the plugin loads.
"""
from __future__ import annotations

import argparse
import logging
import sys
from types import SimpleNamespace

log = logging.getLogger("vs_espcn")
FOREIGN_SHOWN = 20  # `clear` names at most this many of the files it leaves


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vs_espcn engines", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="prebuild the engine for a clip size")
    b.add_argument("--scale", type=int, default=None, help="2, 3 or 4 (default: the model's, else 2)")
    b.add_argument("--model", default="", help='"" / "natural", "anime", "manga" or a path to an ONNX file')
    b.add_argument("--width", type=int, required=True, help="clip width (luma)")
    b.add_argument("--height", type=int, required=True, help="clip height (luma)")
    b.add_argument("--fp32", action="store_true", help="build fp32 (default fp16)")
    b.add_argument("--dynamic", action="store_true", help="dynamic profile (static_shape=0)")
    b.add_argument("--opt-level", type=int, default=3, help="builder optimization level 0..5")
    b.add_argument("--workspace", type=int, default=0, help="workspace MiB (0 = TensorRT default)")
    b.add_argument("--tilesize", type=int, nargs="*", default=[], help="as Upscale(tilesize=...)")
    b.add_argument("--overlap", type=int, default=-1, help="as Upscale(overlap=...)")
    b.add_argument("--device-id", type=int, default=0)
    for name, text in (("list", "list cached engines"),
                       ("clear", "delete every cached engine (only files the cache wrote; others are listed)")):
        sub.add_parser(name, help=text)
    for sp in sub.choices.values():
        sp.add_argument("--cache-dir", default="", help="default: $VS_ESPCN_CACHE_DIR or the user cache dir")
    return p


def tile_window(height: int, width: int, radius: int, tilesize: list[int], overlap: int) -> tuple[int, int]:
    """The (H, W) LR tile the plugin feeds the backend for this clip size (graph.tile_plan)."""
    from vs_espcn import graph

    tile = graph.check_tiles(tilesize, overlap)
    return graph.tile_plan(SimpleNamespace(height=height, width=width), radius, tile, overlap)[2]


def _build(args: argparse.Namespace) -> int:
    from vs_espcn import models
    from vs_espcn.backends import TrtOptions
    from vs_espcn.backends.trt import ensure_engine
    from vs_espcn.backends.trt_env import import_trt, probe_gpu

    trt, why = import_trt()
    if trt is None:
        log.error("espcn engines: %s", why)
        return 1
    info = models.resolve(args.model, args.scale)
    shape = tile_window(args.height, args.width, info.radius, args.tilesize, args.overlap)
    options = TrtOptions(fp16=not args.fp32, device_id=args.device_id, static_shape=not args.dynamic,
                         opt_level=args.opt_level, workspace=args.workspace, cache_dir=args.cache_dir)
    gpu, gpu_why = probe_gpu(args.device_id)
    if gpu is None:
        log.warning("espcn engines: %s; building a GPU-independent engine keyed with GPU \"none\"", gpu_why)
    _, key, path, data, built = ensure_engine(info, shape, options, trt, gpu)
    log.info("espcn engines: %s %s (%d bytes)", "built" if built else "already cached", path, len(data))
    print(path)
    return 0


def _list(args: argparse.Namespace) -> int:
    from vs_espcn.engine_cache import EngineCache

    cache = EngineCache(args.cache_dir or None)
    entries = cache.entries()  # CacheDirError (exit 1) when the directory is a file or unreadable
    missing = "" if cache.directory.is_dir() else " (no such directory yet)"
    sys.stderr.write(f"{len(entries)} engine(s) in {cache.directory}{missing}\n")
    for e in entries:
        k = e["key"] or {}
        desc = (f"{k.get('model_name')} x{k.get('scale')} {k.get('precision')} {k.get('trt_package')} "
                f"{k.get('trt_version')} gpu={k.get('gpu_name')}" if k else "(no readable sidecar)")
        print(f"{e['path']}\t{e['size']}\t{desc}")
    return 0


def _clear(args: argparse.Namespace) -> int:
    from vs_espcn.engine_cache import EngineCache

    cache = EngineCache(args.cache_dir or None)
    n = cache.clear()
    sys.stderr.write(f"deleted {n} engine(s) from {cache.directory}\n")
    left = cache.foreign()
    if left:
        shown = ", ".join(left[:FOREIGN_SHOWN]) + (f", ... ({len(left) - FOREIGN_SHOWN} more)"
                                                   if len(left) > FOREIGN_SHOWN else "")
        sys.stderr.write(f"left {len(left)} file(s) it did not write: {shown}\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point called by `python -m vs_espcn engines ...`."""
    args = _parser().parse_args(argv)
    if not logging.getLogger().handlers and not log.handlers:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    try:
        return {"build": _build, "list": _list, "clear": _clear}[args.cmd](args)
    except Exception as e:  # vs.Error, BuildError, OSError: one clear line, no traceback
        log.error("espcn engines %s: %s", args.cmd, e)
        return 1
