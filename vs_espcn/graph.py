"""The filter graph behind `core.espcn.Upscale`: checks, Y through the network, chroma through
`core.resize`, join, and the source's frame props.

Y goes through `frames.luma_clip` (the network, tile by tile); U/V come from resizing the whole
clip with a built-in kernel, which honours `_ChromaLocation`, so chroma stays sited like the
source and aligned with the upscaled luma. Every check raises `vs.Error` naming espcn.Upscale.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

import vapoursynth as vs

from vs_espcn import backends, frames, models, tiling
from vs_espcn.precision import check as check_precision
from vs_espcn.precision import int8_model

log = logging.getLogger("vs_espcn")
MIN_TILE = 16  # LR pixels: smallest tile core side honoured (see min_tile)
KERNELS = {"point": "Point", "bilinear": "Bilinear", "bicubic": "Bicubic", "spline16": "Spline16",
           "spline36": "Spline36", "spline64": "Spline64", "lanczos": "Lanczos"}
# (subsampling_w, subsampling_h) -> name, for the YUV layouts the plugin accepts
SUBSAMPLINGS = {(1, 1): "420", (1, 0): "422", (0, 0): "444", (0, 1): "440", (2, 0): "411", (2, 2): "410"}
MAX_THREADS = 256  # generous: a 2-core machine runs ~400x slower at threads=1000, and 100000 crashed hosts
MAX_STREAMS = 32  # frames in flight; each holds its planes and the backend's activations (DESIGN.md)
AUTO_STREAMS = 2  # num_streams=0: frames in flight (measured best on the CPU backends; see README)
FORMATS_TEXT = ("constant-format YUV (420, 422, 444, 440, 411, 410) or GRAY, "
                "8-16 bit integer or 16/32 bit float")


def _error(problem: str, supported: str) -> vs.Error:
    """Build the plugin's user-facing error."""
    return vs.Error(f"espcn.Upscale: {problem}; {supported}")


def check_clip(clip: object) -> vs.VideoNode:
    """Reject anything but a constant-format, constant-size GRAY/YUV clip of a supported depth."""
    if not isinstance(clip, vs.VideoNode):
        raise _error(f"clip must be a video clip, got {type(clip).__name__}", FORMATS_TEXT)
    fmt = clip.format
    if fmt is None or fmt.color_family == vs.UNDEFINED:
        raise _error("variable-format clips are not supported", FORMATS_TEXT)
    if clip.width == 0 or clip.height == 0:
        raise _error("variable-size clips are not supported", "convert to a constant size first")
    if fmt.color_family not in (vs.GRAY, vs.YUV):
        raise _error(f"{fmt.name} is not supported ({fmt.color_family.name} input)",
                     FORMATS_TEXT + "; convert RGB with core.resize first")
    if fmt.color_family == vs.YUV and (fmt.subsampling_w, fmt.subsampling_h) not in SUBSAMPLINGS:
        raise _error(f"{fmt.name} has an unsupported chroma subsampling", FORMATS_TEXT)
    bits = fmt.bits_per_sample
    if (fmt.sample_type == vs.INTEGER and not 8 <= bits <= 16) or (
            fmt.sample_type == vs.FLOAT and bits not in (16, 32)):
        raise _error(f"{fmt.name} has an unsupported sample type/depth", FORMATS_TEXT)
    return clip


def check_tiles(tilesize: Sequence[int], overlap: int) -> tuple[int, int] | None:
    """Validate tilesize/overlap; return the (h, w) tile or None for automatic tiling.

    Sizes must be >= 1 here; `tile_plan` then raises sides below max(16, 2 * overlap) to that
    minimum (with a logged note), since tiny tiles only multiply the backend calls."""
    tiles = list(tilesize or ())
    if len(tiles) > 2 or any(int(t) < 1 for t in tiles):
        raise _error(f"tilesize={tiles} is invalid", "use [] (automatic), [w] or [w, h] with sizes >= 1")
    if overlap < -1:
        raise _error(f"overlap={overlap} is invalid", "use -1 (the model's receptive radius) or >= 0")
    if not tiles:
        return None
    w = int(tiles[0])
    return (int(tiles[1]) if len(tiles) == 2 else w), w


def check_options(backend: str, kernel: str, threads: int, device_id: int, num_streams: int,
                  opt_level: int, workspace: int) -> str:
    """Validate the scalar options; return the core.resize function name of `kernel`."""
    if backend not in backends.KINDS:
        raise _error(f"unknown backend {backend!r}", "supported backends are "
                     + ", ".join(f'"{k}"' for k in backends.KINDS))
    if kernel.lower() not in KERNELS:
        raise _error(f"unknown kernel {kernel!r}", "supported kernels are " + ", ".join(KERNELS))
    for name, value, low, high in (("threads", threads, 0, MAX_THREADS), ("device_id", device_id, 0, None),
                                   ("num_streams", num_streams, 0, MAX_STREAMS), ("workspace", workspace, 0, None)):
        if value < low or (high is not None and value > high):
            raise _error(f"{name}={value} is invalid",
                         f"{name} must be {low}..{high}" if high is not None else f"{name} must be >= {low}")
    if not 0 <= opt_level <= 5:
        raise _error(f"opt_level={opt_level} is invalid", "opt_level must be 0..5")
    return KERNELS[kernel.lower()]


def check_switches(**switches: object) -> tuple[bool, ...]:
    """The 0/1 arguments as bools, in order; any other value is an error (clamp=2 is not "on")."""
    for name, value in switches.items():
        if isinstance(value, bool) or value in (0, 1):
            continue
        raise _error(f"{name}={value!r} is invalid", f"{name} must be 0 or 1")
    return tuple(bool(v) for v in switches.values())


def auto_streams(clip: vs.VideoNode) -> int:
    """Frames in flight for num_streams=0: AUTO_STREAMS for planes that run whole, 1 for planes big
    enough to be tiled (2160p), whose tiles already keep the cores busy and whose second frame in flight
    would double the peak memory."""
    return AUTO_STREAMS if clip.width * clip.height <= tiling.AUTO_PIXELS else 1


def min_tile(overlap: int) -> int:
    """Smallest tile core (LR pixels per side) honoured: max(MIN_TILE, 2 * overlap), so context
    never dominates a window and a 4K plane never becomes millions of backend calls."""
    return max(MIN_TILE, 2 * overlap)


def tile_plan(clip: vs.VideoNode, radius: int, tile: tuple[int, int] | None, overlap: int
              ) -> tiling.Plan:
    """The Y plane's tiling (core tile, effective overlap, window shape fed to the backend,
    tiles), computed once per graph for both the backend and the frame path.

    A requested tile side below `min_tile(overlap)` is raised to it (a note on the vs_espcn
    logger): tilesize=[1] on a 2160p clip would otherwise mean 8 million backend calls per frame.
    """
    eff_overlap = max(overlap, radius)
    if tile is not None:
        low = min_tile(eff_overlap)
        if min(tile) < low:
            log.warning("espcn.Upscale: tilesize %s raised to at least %d (the minimum for overlap %d)",
                        list(tile[::-1]), low, eff_overlap)
            tile = (max(tile[0], low), max(tile[1], low))
    core = tile or tiling.auto_tilesize(clip.height, clip.width)
    return tiling.make_plan(clip.height, clip.width, core, eff_overlap, pad=radius)


def upscale(clip: vs.VideoNode, scale: int | None = None, model: str = "", backend: str = "auto",
            threads: int = 0, tilesize: Sequence[int] = (), overlap: int = -1,
            kernel: str = "spline36", fp16: bool = True, device_id: int = 0, num_streams: int = 0,
            cuda_graph: bool = False, static_shape: bool = True, opt_level: int = 3,
            workspace: int = 0, cache_dir: str = "", clamp: bool = True, precision: str = "auto"
            ) -> vs.VideoNode:
    """espcn.Upscale: Y through the ESPCN network, chroma through core.resize.<kernel>, same format,
    width*scale x height*scale, all source frame props kept."""
    clip = check_clip(clip)
    core = vs.core.core  # the concrete core of this environment (R81 nodes do not expose theirs)
    tile = check_tiles(tilesize, overlap)
    resizer = check_options(backend, kernel, threads, device_id, num_streams, opt_level, workspace)
    fp16, cuda_graph, static_shape, clamp = check_switches(fp16=fp16, cuda_graph=cuda_graph,
                                                           static_shape=static_shape, clamp=clamp)
    prec = check_precision(precision)
    info = models.resolve(model or "", scale)
    if prec == "int8":  # the shipped model's int8 twin, or a QDQ file given as `model`
        shipped = info.path.parent == models.MODEL_DIR.resolve()
        info = models.load(int8_model(info.path, shipped))
    streams = num_streams or auto_streams(clip)
    plan = tile_plan(clip, info.radius, tile, overlap)
    options = backends.BackendOptions(
        precision=prec,
        ort=backends.OrtOptions(threads=threads, streams=min(streams, core.num_threads)),  # frames that can overlap
        ov=backends.OvOptions(threads=threads, streams=streams),
        trt=backends.TrtOptions(fp16=fp16, device_id=device_id, num_streams=streams,
                                cuda_graph=cuda_graph, static_shape=static_shape,
                                opt_level=opt_level, workspace=workspace, cache_dir=cache_dir or ""))
    net = backends.create(backend, info, plan.window, options)
    upscaler = frames.PlaneUpscaler(net, info.scale, plan, frames.Codec.of(clip.format),
                                    clamp=clamp)
    luma = frames.luma_clip(core, clip, upscaler, streams)
    out = luma
    if clip.format.color_family == vs.YUV:
        r = info.scale
        # core.resize scales a clip flagged _FieldBased field by field; the luma went through
        # the network as one progressive picture, so the chroma must too (the flag itself is
        # restored on the output by CopyFrameProps below).
        progressive = core.std.RemoveFrameProps(clip, "_FieldBased")
        chroma = getattr(core.resize, resizer)(progressive, clip.width * r, clip.height * r)
        out = core.std.ShufflePlanes([luma, chroma], [0, 1, 2], vs.YUV)
    return core.std.CopyFrameProps(out, clip)
