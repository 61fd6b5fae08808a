"""`python -m vs_espcn soak`: resident memory (RSS) of a long Upscale run, sampled every N frames.

A night-long encode must not climb by gigabytes, and a growth of a fraction of a MB per frame only
shows after thousands of frames, so this command runs one graph over `--frames` frames and prints
a table of RSS every `--every` frames to stdout (a benchmark CLI, not part of a video pipe; notes
go to stderr). In-process it drives the graph the way vspipe does (`VideoNode.output`,
`core.num_threads` frames in flight, output discarded) and also prints VapourSynth's own
`used_cache_size`; with `--vspipe` it runs the same graph in a vspipe child and samples that
process's RSS as vspipe reports progress. It prints the growth from the first sample at or after
`--from` to the end and, with `--limit`, exits 1 when the growth is larger.

`--pure` runs the graph shape without the network (luma through a point resize), so a growth can
be told apart from the network's; `--shape` runs a part of it (see `SHAPES`). `--trim N` appends a
pass-through node that calls glibc's `malloc_trim(0)` at most every N seconds: the measured remedy
for the YUV growth (freed frame buffers kept by glibc's heap, not a leak; see README "Memory").
RSS comes from psutil when it is installed, else /proc/<pid>/statm.
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import vapoursynth as vs

from vs_espcn.heap import heap_trimmer

KERNEL = "Spline36"  # graph.upscale's default chroma kernel
SCRIPT = """import shlex
from vs_espcn import soak
soak.build(soak.parser().parse_args(shlex.split({argv!r}))).set_output()
"""


def rss_mb(pid: int | None = None) -> float:
    """Resident set size of process `pid` (default: this one) in MB (psutil, else /proc/<pid>/statm)."""
    try:
        import psutil
    except ImportError:
        with open(f"/proc/{pid or 'self'}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return psutil.Process(pid).memory_info().rss / 2**20


def trimmed(core: vs.Core, clip: vs.VideoNode, interval_s: float) -> vs.VideoNode:
    """`clip` through a pass-through ModifyFrame that calls `malloc_trim(0)` at most every
    `interval_s` seconds: what the recommended frames.py change does inside the network's own
    callback (there without an extra node)."""
    if interval_s <= 0:
        return clip
    tick = heap_trimmer(interval_s)

    def passthrough(n: int, f: vs.VideoFrame) -> vs.VideoFrame:
        tick()
        return f

    return core.std.ModifyFrame(clip, clip, passthrough)


def _luma(core: vs.Core, clip: vs.VideoNode, r: int, args: argparse.Namespace) -> vs.VideoNode:
    """The upscaled Y plane as a GRAY clip: the network (graph.upscale of the Y plane) or, with
    --pure, a point resize of it."""
    y = core.std.ShufflePlanes(clip, 0, vs.GRAY)
    if args.pure:
        return core.resize.Point(y, clip.width * r, clip.height * r)
    from vs_espcn import graph

    return graph.upscale(y, scale=r, model=args.model, backend=args.backend, threads=args.threads)


def _whole(core: vs.Core, clip: vs.VideoNode, luma: vs.VideoNode, r: int) -> vs.VideoNode:
    """graph.py's shape: chroma = the whole clip resized, joined with the luma by ShufflePlanes."""
    chroma = getattr(core.resize, KERNEL)(clip, clip.width * r, clip.height * r)
    return core.std.ShufflePlanes([luma, chroma], [0, 1, 2], vs.YUV)


def _chroma(core: vs.Core, clip: vs.VideoNode, luma: vs.VideoNode, r: int) -> vs.VideoNode:
    """Part: only the chroma resize of the whole clip (no luma node, no ShufflePlanes)."""
    return getattr(core.resize, KERNEL)(clip, clip.width * r, clip.height * r)


def _split(core: vs.Core, clip: vs.VideoNode, luma: vs.VideoNode, r: int) -> vs.VideoNode:
    """Alternative: U and V resized one by one as GRAY planes (no full-size luma from the chroma
    resize) and joined by ShufflePlanes. Memory comparison only: it ignores chroma siting."""
    fmt = clip.format
    planes = [getattr(core.resize, KERNEL)(core.std.ShufflePlanes(clip, p, vs.GRAY),
                                          (clip.width >> fmt.subsampling_w) * r,
                                          (clip.height >> fmt.subsampling_h) * r) for p in (1, 2)]
    return core.std.ShufflePlanes([luma, *planes], [0, 0, 0], vs.YUV)


def _luma_only(core: vs.Core, clip: vs.VideoNode, luma: vs.VideoNode, r: int) -> vs.VideoNode:
    """Part: only the luma node (what GRAY input runs)."""
    return luma


SHAPES: dict[str, Callable[[vs.Core, vs.VideoNode, vs.VideoNode, int], vs.VideoNode]] = {
    "whole": _whole, "chroma": _chroma, "luma": _luma_only, "split": _split,
}


def build(args: argparse.Namespace) -> vs.VideoNode:
    """The clip to soak: a `--format` BlankClip source (a new frame per request) through the chosen
    graph; the real `graph.upscale` for the default (not --pure, --shape whole)."""
    core = vs.core
    if args.core_threads:
        core.num_threads = args.core_threads
    if args.max_cache:
        core.max_cache_size = args.max_cache
    src = core.std.BlankClip(format=getattr(vs, args.format), width=args.width, height=args.height,
                             length=args.frames, keep=False)
    r = args.scale
    if not args.pure and args.shape == "whole":
        from vs_espcn import graph

        out = graph.upscale(src, scale=r, model=args.model, backend=args.backend, threads=args.threads)
    else:
        luma = _luma(core, src, r, args)
        joined = luma if src.format.color_family == vs.GRAY else SHAPES[args.shape](core, src, luma, r)
        out = core.std.CopyFrameProps(joined, src)
    return trimmed(core, out, args.trim)


def parser() -> argparse.ArgumentParser:
    """The command line (also parsed by the vspipe script of --vspipe)."""
    p = argparse.ArgumentParser(prog="python -m vs_espcn soak", description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=3000, help="frames to run (default 3000)")
    p.add_argument("--width", type=int, default=720, help="source width (default 720)")
    p.add_argument("--height", type=int, default=480, help="source height (default 480)")
    p.add_argument("--format", default="YUV420P8", help="a vapoursynth preset name (default YUV420P8)")
    p.add_argument("--scale", type=int, default=2)
    p.add_argument("--model", default="", help="as Upscale(model=...)")
    p.add_argument("--backend", default="auto", help='as Upscale(backend=...) (default "auto", the product)')
    p.add_argument("--threads", type=int, default=0, help="as Upscale(threads=...)")
    p.add_argument("--every", type=int, default=250, help="sample RSS every N frames (default 250)")
    p.add_argument("--from", dest="start", type=int, default=500,
                   help="growth is measured from the first sample at or after this frame (default 500)")
    p.add_argument("--limit", type=float, default=0.0, help="exit 1 when the growth exceeds this many MB")
    p.add_argument("--pure", action="store_true", help="no network: the luma through resize.Point")
    p.add_argument("--shape", choices=sorted(SHAPES), default="whole",
                   help="whole: graph.py's shape (default); chroma / luma: only that part; split: "
                        "U, V resized as separate planes")
    p.add_argument("--trim", type=float, default=0.0, metavar="SECONDS",
                   help="call glibc malloc_trim(0) at most every SECONDS while frames are output (0: never)")
    p.add_argument("--core-threads", type=int, default=0, help="core.num_threads (0: VapourSynth default)")
    p.add_argument("--max-cache", type=int, default=0, help="core.max_cache_size in MB (0: default)")
    p.add_argument("--vspipe", action="store_true", help="run the graph in a vspipe child process")
    return p


class Table:
    """The RSS samples: one stdout row each, and the growth summary."""

    def __init__(self, every: int, cache: bool) -> None:
        self.every, self.cache, self.rows, self.next = every, cache, [], 0
        self.t0 = time.perf_counter()
        print(f"{'frame':>8s} {'rss_mb':>10s}" + (f" {'vs_cache':>10s}" if cache else "") + f" {'secs':>8s}",
              flush=True)

    def due(self, done: int, total: int) -> bool:
        """True when frame count `done` reaches the next multiple of `every` (or the end)."""
        return done >= self.next or done == total

    def add(self, done: int, rss: float, cache_mb: float = 0.0) -> None:
        """Record and print one sample; the next one is due at the next multiple of `every`."""
        if self.rows and self.rows[-1][0] == done:
            return
        secs = time.perf_counter() - self.t0
        self.rows.append((done, rss))
        self.next = (done // self.every + 1) * self.every
        print(f"{done:8d} {rss:10.1f}" + (f" {cache_mb:10.1f}" if self.cache else "") + f" {secs:8.1f}",
              flush=True)

    def summary(self, start: int, frames: int) -> float:
        """Write the growth from the first sample at or after `start` to the last one; returns it (MB)."""
        if not self.rows:
            sys.stderr.write("espcn soak: no samples\n")
            return 0.0
        n0, base = next(((n, r) for n, r in self.rows if n >= start), self.rows[0])
        n1, last = self.rows[-1]
        growth = last - base
        fps = frames / max(1e-9, time.perf_counter() - self.t0)
        sys.stderr.write(f"espcn soak: RSS {base:.0f} MB at frame {n0}, {last:.0f} MB at frame {n1}: growth "
                         f"{growth:+.0f} MB ({growth / max(1, n1 - n0):+.3f} MB/frame), {fps:.1f} frames/s\n")
        return growth


def _run_here(args: argparse.Namespace) -> Table:
    """Run the graph in this process through `VideoNode.output` (frames in flight like vspipe)."""
    core = vs.core
    clip = build(args)
    _describe(clip, args, core.num_threads, core.max_cache_size)
    table = Table(args.every, cache=True)

    def progress(done: int, total: int) -> None:
        if table.due(done, total):
            table.add(done, rss_mb(), core.used_cache_size / 2**20)

    with open(os.devnull, "wb") as sink:
        clip.output(sink, progress_update=progress)
    return table


def vspipe_path() -> str:
    """The vspipe binary next to the vapoursynth module (the venv's `vspipe` is a Python wrapper
    that starts it as a child, whose RSS we want), else the one on PATH."""
    p = Path(vs.__file__).with_name("vspipe")
    return str(p) if p.is_file() else "vspipe"


def _run_vspipe(args: argparse.Namespace, argv: list[str]) -> Table:
    """Run the same graph in `vspipe -p script -` (output discarded) and sample the child's RSS
    whenever its progress line passes the next multiple of `--every`."""
    inner = [a for a in argv if a != "--vspipe"]
    with tempfile.TemporaryDirectory(prefix="vs_espcn_soak_") as tmp:
        script = Path(tmp) / "soak.vpy"
        script.write_text(SCRIPT.format(argv=shlex.join(inner)))
        env = dict(os.environ)
        here = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH", "")) if p)
        proc = subprocess.Popen([vspipe_path(), "-p", str(script), "-"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, env=env)
        sys.stderr.write(f"espcn soak: vspipe pid {proc.pid}, {args.width}x{args.height} {args.format} -> "
                         f"x{args.scale}, {args.frames} frames, {'pure' if args.pure else args.backend} "
                         f"shape={args.shape} trim={args.trim}\n")
        table, buf, tail, last = Table(args.every, cache=False), b"", b"", None
        assert proc.stderr is not None
        while chunk := proc.stderr.read1(4096):
            buf += chunk
            *lines, buf = re.split(rb"[\r\n]", buf)
            for line in lines:
                m = re.match(rb"Frame: (\d+)/(\d+)", line)
                if m is None:
                    tail = (tail + line + b"\n")[-4000:]
                    continue
                try:  # every progress line: the last one before exit becomes the final row
                    last = (int(m[1]), rss_mb(proc.pid))
                except (OSError, ValueError):  # exited between the line and the read
                    continue
                if table.due(int(m[1]), int(m[2])):
                    table.add(*last)
        if last is not None:
            table.add(*last)  # no-op when already the last row
        if proc.wait() != 0:
            sys.stderr.write(tail.decode(errors="replace"))
            raise SystemExit(f"espcn soak: vspipe exited with {proc.returncode}")
    return table


def _describe(clip: vs.VideoNode, args: argparse.Namespace, threads: int, max_cache: int) -> None:
    sys.stderr.write(f"espcn soak: {args.width}x{args.height} {args.format} -> {clip.width}x{clip.height}, "
                     f"{args.frames} frames, {'pure' if args.pure else args.backend} shape={args.shape} "
                     f"trim={args.trim}, threads={threads}, max_cache_size={max_cache} MB\n")


def main(argv: list[str] | None = None) -> int:
    """Entry point called by `python -m vs_espcn soak ...`."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    if args.format not in vs.PresetVideoFormat.__members__:
        sys.stderr.write(f"espcn soak: unknown format {args.format!r} (use a vapoursynth preset name)\n")
        return 2
    if args.frames < 1 or args.every < 1:
        sys.stderr.write("espcn soak: --frames and --every must be >= 1\n")
        return 2
    table = _run_vspipe(args, argv) if args.vspipe else _run_here(args)
    growth = table.summary(args.start, args.frames)
    return 1 if args.limit and growth > args.limit else 0
