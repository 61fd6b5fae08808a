"""Chunked encoding, as av1an and similar tools do it: separate vspipe processes each render a frame
range, and several workers share one engine cache directory.

(a) Frame ranges rendered by separate `vspipe -s START -e END` processes, concatenated, are the same
    bytes as one run over the whole clip (raw output, so there are no per-chunk headers).
(b) N `python -m vs_espcn engines build` processes started at once on one cache directory build the
    engine once: one file, one "building" line, the others find it cached (TensorRT-RTX's builder,
    which needs no GPU; skips when it is absent).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

vs = pytest.importorskip("vapoursynth")

from trt_helpers import require_builder  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
VSPIPE = Path(sys.executable).parent / "vspipe"
CLIP = REPO.parent / "shared" / "data" / "video" / "park_joy_90p_8_420.y4m"  # 160x90, 10 frames
WORKERS = 3

# A script like a user's: the source is a seeded-noise clip (frame n is the same in every process) or,
# with `-a src=PATH`, a file read by BestSource without an index cache.
SCRIPT = '''import numpy as np
import vapoursynth as vs
core = vs.core
src = globals().get("src", "")
if src:
    clip = core.bs.VideoSource(src, cachemode=0)
else:
    blank = core.std.BlankClip(format=vs.YUV420P8, width=96, height=64, length=12)
    def fill(n, f):
        out = f.copy()
        rng = np.random.default_rng(1000 + n)
        for p in range(3):
            a = np.asarray(out[p])
            a[...] = rng.integers(16, 236, a.shape)
        return out
    clip = blank.std.ModifyFrame(blank, fill)
core.espcn.Upscale(clip, 2).set_output()
'''

pytestmark = pytest.mark.skipif(not VSPIPE.exists(), reason=f"vspipe not found beside {sys.executable}")


def _user_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VAPOURSYNTH_EXTRA_PLUGIN_PATH")}


def _vspipe(script: Path, args: list[str], start: int | None = None, end: int | None = None) -> subprocess.Popen:
    cmd = [str(VSPIPE), *args]
    if start is not None:
        cmd += ["-s", str(start), "-e", str(end)]
    return subprocess.Popen([*cmd, str(script), "-"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_user_env(), cwd=script.parent)


def _frames(script: Path, args: list[str]) -> int:
    info = subprocess.run([str(VSPIPE), *args, "--info", str(script)], capture_output=True, text=True,
                          env=_user_env(), timeout=120)
    assert info.returncode == 0, info.stderr
    return int(next(li for li in info.stdout.splitlines() if li.startswith("Frames:")).split()[1])


@pytest.mark.parametrize("source", ["noise", "file"])
def test_separately_rendered_ranges_concatenate_to_one_run(tmp_path, source):
    if not hasattr(vs.core, "espcn"):
        pytest.skip("espcn plugin not installed (make test installs it)")
    args: list[str] = []
    if source == "file":
        if not CLIP.exists():
            pytest.skip(f"test clip not found at {CLIP}")
        if not hasattr(vs.core, "bs"):
            pytest.skip("BestSource is not installed (pip install vapoursynth-bestsource; the dev extra has it)")
        args = ["-a", f"src={CLIP}"]
    script = tmp_path / "chunk.vpy"
    script.write_text(SCRIPT)
    frames = _frames(script, args)
    assert frames >= WORKERS
    whole = _vspipe(script, args).communicate(timeout=300)
    edges = [round(i * frames / WORKERS) for i in range(WORKERS + 1)]
    chunks = [_vspipe(script, args, a, b - 1) for a, b in zip(edges, edges[1:])]  # all running at once
    parts = [p.communicate(timeout=300) for p in chunks]
    assert all(p.returncode == 0 for p in chunks), [err.decode() for _, err in parts]
    frame_bytes = len(whole[0]) // frames
    assert len(whole[0]) == frames * frame_bytes and frame_bytes == (2 * 96 * 2 * 64 * 3 // 2 if source == "noise"
                                                                     else 320 * 180 * 3 // 2)
    assert [len(out) for out, _ in parts] == [(b - a) * frame_bytes for a, b in zip(edges, edges[1:])]
    assert b"".join(out for out, _ in parts) == whole[0]


def test_workers_starting_at_once_build_the_engine_once(tmp_path):
    require_builder()
    cache = tmp_path / "shared-cache"
    cmd = [sys.executable, "-m", "vs_espcn", "engines", "build", "--scale", "2", "--width", "64", "--height", "48",
           "--opt-level", "0", "--cache-dir", str(cache)]
    env = _user_env() | {"PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(WORKERS)]
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0] * WORKERS, [err for _, err in outs]
    paths = {out.strip() for out, _ in outs}
    assert len(paths) == 1
    engine = Path(paths.pop())
    assert engine.parent == cache and engine.is_file() and engine.stat().st_size > 0
    assert [p.name for p in cache.glob("*.engine")] == [engine.name]
    errs = "".join(err for _, err in outs)
    assert errs.count("espcn engines: built ") == 1
    assert errs.count("espcn engines: already cached ") == WORKERS - 1
    # a later worker reuses the same file: not rewritten (same inode and mtime)
    before = engine.stat()
    late = subprocess.run(cmd, cwd=tmp_path, env=env, text=True, capture_output=True, timeout=300)
    assert late.returncode == 0 and "already cached" in late.stderr and late.stdout.strip() == str(engine)
    after = engine.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
