"""Engine cache: directory resolution, key -> file name, atomic write, validation, lock (no TensorRT)."""
from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from vs_espcn import engine_cache
from vs_espcn.backends.trt import timing_cache_path
from vs_espcn.engine_cache import EngineCache, EngineKey, atomic_write, cache_dir

ROOT = Path(__file__).resolve().parents[1]


def make_key(**changes) -> EngineKey:
    base = dict(onnx_sha256="ab" * 32, model_name="espcn x2", scale=2,
                profile=((1, 1, 36, 64),) * 3, precision="fp16", precision_mode="onnx",
                trt_package="tensorrt_rtx", trt_version="1.7.1.116", gpu_name="NVIDIA GeForce RTX 4070",
                compute_capability="8.9", opt_level=3, workspace_mib=0)
    base.update(changes)
    return EngineKey(**base)


def test_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv(engine_cache.ENV_VAR, str(tmp_path / "env"))
    assert cache_dir(tmp_path / "arg") == tmp_path / "arg"
    assert cache_dir("") == tmp_path / "env"
    monkeypatch.delenv(engine_cache.ENV_VAR)
    import platformdirs

    assert cache_dir(None) == Path(platformdirs.user_cache_dir("vs-espcn", appauthor=False)) / "engines"


@pytest.mark.parametrize("change", [
    {"onnx_sha256": "cd" * 32}, {"profile": ((1, 1, 36, 65),) * 3},
    {"profile": ((1, 1, 1, 1), (1, 1, 36, 64), (1, 1, 36, 64))}, {"precision": "fp32"},
    {"precision_mode": "flag"}, {"trt_package": "tensorrt"}, {"trt_version": "1.7.2"},
    {"gpu_name": "NVIDIA GeForce RTX 3060"}, {"compute_capability": "8.6"}, {"opt_level": 5},
    {"workspace_mib": 512}, {"scale": 3},
])
def test_every_key_field_changes_the_file_name(change):
    assert make_key(**change).filename() != make_key().filename()


def test_file_name_is_stable_and_readable():
    key = make_key()
    assert key.filename() == make_key().filename()
    assert key.filename().startswith("espcn_x2-x2-1x1x36x64-static-fp16-tensorrt_rtx-")
    assert key.filename().endswith(".engine")
    dyn = make_key(profile=((1, 1, 1, 1), (1, 1, 36, 64), (1, 1, 36, 64)))
    assert not dyn.static and "1x1x1x1-1x1x36x64-dyn" in dyn.filename()
    assert EngineKey(**{f.name: getattr(key, f.name) for f in dataclasses.fields(key)}) == key


def test_atomic_write_replaces_and_cleans_up(tmp_path, monkeypatch):
    target = tmp_path / "sub" / "a.bin"
    atomic_write(target, b"one")
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(engine_cache.os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write(target, b"three")
    assert target.read_bytes() == b"two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.bin"]


def test_store_load_roundtrip_and_sidecar(tmp_path):
    cache, key = EngineCache(tmp_path), make_key()
    path = cache.store(key, b"engine-bytes" * 100)
    assert path == tmp_path / key.filename()
    assert cache.load(key) == b"engine-bytes" * 100
    meta = json.loads(cache.sidecar_path(key).read_text())
    assert meta["key"] == key.to_dict() and meta["size"] == 1200


@pytest.mark.parametrize("damage", ["truncate", "flip", "sidecar", "other_key", "no_sidecar"])
def test_damaged_engine_is_deleted_and_rebuilt_with_warning(tmp_path, caplog, damage):
    cache, key = EngineCache(tmp_path), make_key()
    cache.store(key, bytes(range(256)) * 40)
    path, side = cache.engine_path(key), cache.sidecar_path(key)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:5000])
    elif damage == "flip":
        data = bytearray(path.read_bytes())
        data[100] ^= 0xFF
        path.write_bytes(bytes(data))
    elif damage == "sidecar":
        side.write_text("{not json")
    elif damage == "other_key":
        meta = json.loads(side.read_text())
        meta["key"]["trt_version"] = "0.0"
        side.write_text(json.dumps(meta))
    else:
        side.unlink()
    calls = []
    with caplog.at_level(logging.WARNING, logger="vs_espcn"):
        got_path, data, built = cache.get_or_build(key, lambda: calls.append(1) or b"fresh")
    assert (got_path, data, built, calls) == (path, b"fresh", True, [1])
    assert "discarding cached TensorRT engine" in caplog.text
    assert cache.load(key) == b"fresh"


def test_get_or_build_reuses_valid_engine(tmp_path):
    cache, key = EngineCache(tmp_path), make_key()
    assert cache.get_or_build(key, lambda: b"x")[1:] == (b"x", True)
    assert cache.get_or_build(key, lambda: pytest.fail("must not rebuild"))[1:] == (b"x", False)


def test_entries_and_clear(tmp_path):
    cache = EngineCache(tmp_path / "c")
    assert cache.entries() == [] and cache.clear() == 0
    for level in (1, 2, 3):
        cache.store(make_key(opt_level=level), b"e%d" % level)
    key = make_key(opt_level=1)
    with cache.lock(key):  # leaves a .lock file behind
        pass
    d = tmp_path / "c"
    timing = timing_cache_path(cache, key).name  # the name the TensorRT builder's timing cache gets
    (d / timing).write_bytes(b"t")
    cache.engine_path(key).with_suffix(".rtcache").write_bytes(b"r")
    (d / f".{key.filename()}.abc_123.tmp").write_bytes(b"half")  # a killed writer's temp file
    (d / f".{timing}.q1w2.tmp").write_bytes(b"half")
    (d / "keep.txt").write_text("not ours")
    (d / ".keep.txt.x1.tmp").write_text("not ours either")
    entries = cache.entries()
    assert len(entries) == 3 and {e["key"]["opt_level"] for e in entries} == {1, 2, 3}
    assert cache.clear() == 3
    assert sorted(p.name for p in d.iterdir()) == [".keep.txt.x1.tmp", "keep.txt"]


def test_clear_skips_an_engine_being_built(tmp_path, caplog):
    """`engines clear` takes each engine's lock: one held by a build is skipped, not torn apart."""
    cache = EngineCache(tmp_path)
    busy, idle = make_key(opt_level=1), make_key(opt_level=2)
    cache.store(busy, b"busy")
    cache.store(idle, b"idle")
    with cache.lock(busy), caplog.at_level(logging.WARNING, logger="vs_espcn"):
        assert cache.clear(lock_timeout=0.1) == 1
    assert "skipped" in caplog.text and busy.filename()[:-7] in caplog.text
    assert cache.load(busy) == b"busy" and cache.load(idle) is None


def test_clear_waits_for_a_short_build_then_deletes(tmp_path):
    cache, key = EngineCache(tmp_path), make_key()
    started = threading.Event()

    def build():
        started.set()
        time.sleep(0.3)
        return b"built"

    t = threading.Thread(target=cache.get_or_build, args=(key, build))
    t.start()
    started.wait(10)
    assert cache.clear(lock_timeout=30) == 1  # waited for the build to store, then deleted it
    t.join()
    assert cache.load(key) is None and not list(tmp_path.iterdir())


@pytest.mark.parametrize("which", ["engine", "sidecar"])
def test_file_deleted_while_checking_counts_as_missing(tmp_path, monkeypatch, caplog, which):
    """`engines clear` (another process) deletes the files between exists() and the read."""
    cache, key = EngineCache(tmp_path), make_key()
    cache.store(key, b"old")
    target = cache.engine_path(key) if which == "engine" else cache.sidecar_path(key)
    method = "read_bytes" if which == "engine" else "read_text"
    orig = getattr(Path, method)

    def vanish(self, *a, **k):
        if self == target:
            cache.engine_path(key).unlink(missing_ok=True)
            cache.sidecar_path(key).unlink(missing_ok=True)
        return orig(self, *a, **k)

    monkeypatch.setattr(Path, method, vanish)
    assert cache.check(key) == (None, "missing")
    with caplog.at_level(logging.WARNING, logger="vs_espcn"):
        assert cache.get_or_build(key, lambda: b"new")[1:] == (b"new", True)
    assert "discarding" not in caplog.text
    monkeypatch.undo()
    assert cache.load(key) == b"new"


WORKER = textwrap.dedent("""
    import sys, time
    from vs_espcn.engine_cache import EngineCache
    from tests.test_engine_cache import make_key
    def build():
        sys.stderr.write("BUILD\\n")
        time.sleep(1.0)  # hold the lock long enough for the other process to arrive
        return b"E" * 100000
    path, data, built = EngineCache(sys.argv[1]).get_or_build(make_key(), build)
    print(path, len(data), built)
""")


def test_two_processes_build_once(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path)], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert sum(err.count("BUILD") for _, err in outs) == 1
    assert sorted(out.split()[2] for out, _ in outs) == ["False", "True"]
    assert EngineCache(tmp_path).load(make_key()) == b"E" * 100000
    assert not list(tmp_path.glob("*.tmp"))
