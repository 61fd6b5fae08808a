"""Engine cache safety: `clear` deletes only what the cache wrote; a read-only cache serves its
engines without a lock; a cache path that is a file or unreadable is a clear error (no TensorRT)."""
from __future__ import annotations

import errno
import os
import tempfile
import threading

import pytest
import vapoursynth as vs

from test_engine_cache import make_key
from test_trt_backend import fake_backend_env, new_backend  # noqa: F401 (fixture)
from vs_espcn import engine_cache, engines_cli
from vs_espcn.backends import trt as trt_mod
from vs_espcn.engine_cache import CacheDirError, EngineCache, atomic_write

FOREIGN = ["package.json", "settings.json", "photo.engine", "my.cache", "data.lock", "thumbnails.rtcache",
           "notes.txt", ".photo.engine.abcd1234.tmp", "timing.cache", "model.onnx"]


def _populate(d):
    """Real cache entries, written the way the cache and the TensorRT backend write them: two
    engines with sidecars, a lock, a runtime cache, a timing cache and a killed writer's temp files."""
    cache = EngineCache(d)
    keys = [make_key(opt_level=1), make_key(opt_level=2, profile=((1, 1, 1, 1), (1, 1, 36, 64), (1, 1, 36, 64)))]
    for k in keys:
        cache.store(k, b"engine %d" % k.opt_level)
    with cache.lock(keys[0]):  # leaves the .lock file behind
        pass
    atomic_write(cache.engine_path(keys[0]).with_suffix(".rtcache"), b"r")  # as TrtBackend saves it
    atomic_write(trt_mod.timing_cache_path(cache, keys[0]), b"t")  # as trt_build saves it
    for target in (cache.engine_path(keys[1]), trt_mod.timing_cache_path(cache, keys[0])):
        fd, _ = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=d)  # as atomic_write names it
        os.close(fd)
    return cache, keys


def test_clear_deletes_only_what_the_cache_wrote(tmp_path, capsys):
    d = tmp_path / "shared"
    d.mkdir()
    for name in FOREIGN:
        (d / name).write_text("the user's")
    (d / "sub").mkdir()
    (d / "sub" / "inner.engine").write_text("the user's")
    cache, keys = _populate(d)
    link = make_key(opt_level=3).filename()
    (d / link).symlink_to(d / "photo.engine")  # an engine's name, but a link the cache never makes
    (d / keys[0].filename().replace(".engine", ".bak")).write_text("the user's")
    ours = {n for n in os.listdir(d) if engine_cache.owned(n)} - {link}
    assert len(ours) == 9, sorted(ours)  # 2 engines, 2 sidecars, a lock, a runtime and a timing cache, 2 temps
    before_foreign = sorted(set(os.listdir(d)) - ours)

    assert engines_cli.main(["clear", "--cache-dir", str(d)]) == 0
    err = capsys.readouterr().err
    assert sorted(os.listdir(d)) == before_foreign
    assert all((d / n).read_text() == "the user's" for n in FOREIGN)
    assert (d / "sub" / "inner.engine").exists()
    assert "deleted 2 engine(s)" in err
    assert f"left {len(before_foreign)} file(s) it did not write: " in err
    assert "package.json" in err and "sub/" in err


def test_list_shows_only_cache_engines(tmp_path, capsys):
    (tmp_path / "photo.engine").write_text("the user's")
    cache, keys = _populate(tmp_path)
    assert {e["path"].name for e in cache.entries()} == {k.filename() for k in keys}
    assert engines_cli.main(["list", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "photo.engine" not in out and all(k.filename() in out for k in keys)


@pytest.mark.parametrize("change", [{}, {"model_name": "a-b.c d/é" * 9}, {"precision": "fp32"},
                                    {"trt_package": "tensorrt"}, {"scale": 4},
                                    {"profile": ((1, 1, 1, 1), (1, 1, 8, 8), (2, 1, 720, 1280))}])
def test_every_name_the_cache_writes_is_recognised(tmp_path, change):
    key = make_key(**change)
    cache = EngineCache(tmp_path)
    stem = key.filename().removesuffix(".engine")
    for name in (key.filename(), cache.sidecar_path(key).name, cache.lock(key).lock_file.rsplit("/", 1)[1],
                 stem + ".rtcache", trt_mod.timing_cache_path(cache, key).name, f".{key.filename()}.k2_x9abc.tmp"):
        assert engine_cache.owned(name) is not None, name


# ----------------------------------------------------------------------------- read-only cache
@pytest.fixture
def read_only(monkeypatch):
    """Make directories read-only the way a read-only mount is (tests run as root, where chmod
    does not stop writes): any os.open/mkdir/mkstemp that would create or write under one of the
    given directories fails with EROFS. Returns the set to add directories to."""
    dirs: set[str] = set()
    real_open, real_mkdir, real_mkstemp = os.open, os.mkdir, tempfile.mkstemp
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def inside(path) -> bool:
        p = os.path.abspath(os.fsdecode(path))
        return any(p == d or p.startswith(d + os.sep) for d in dirs)

    def erofs(path):
        return OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))

    def ro_open(path, flags, *a, **k):
        if flags & writing and inside(path):
            raise erofs(path)
        return real_open(path, flags, *a, **k)

    def ro_mkdir(path, *a, **k):
        if inside(path):
            raise FileExistsError(errno.EEXIST, "File exists", os.fsdecode(path)) if os.path.exists(path) \
                else erofs(path)
        return real_mkdir(path, *a, **k)

    def ro_mkstemp(*a, dir=None, **k):
        if dir is not None and inside(dir):
            raise erofs(dir)
        return real_mkstemp(*a, dir=dir, **k)

    monkeypatch.setattr(os, "open", ro_open)
    monkeypatch.setattr(os, "mkdir", ro_mkdir)
    monkeypatch.setattr(tempfile, "mkstemp", ro_mkstemp)
    return dirs


def test_read_only_cache_with_a_valid_engine_serves_without_a_lock(tmp_path, read_only):
    cache, key = EngineCache(tmp_path), make_key()
    cache.store(key, b"prebuilt")
    before = sorted(os.listdir(tmp_path))
    read_only.add(str(tmp_path))
    path, data, built = cache.get_or_build(key, lambda: pytest.fail("must not build"))
    assert (path, data, built) == (cache.engine_path(key), b"prebuilt", False)
    assert sorted(os.listdir(tmp_path)) == before  # no lock file was created


def test_read_only_cache_without_the_engine_says_so(tmp_path, read_only):
    cache = EngineCache(tmp_path)
    cache.store(make_key(opt_level=1), b"another one")
    read_only.add(str(tmp_path))
    with pytest.raises(CacheDirError, match=r"cannot build the missing TensorRT engine in cache_dir .*"
                                            r"Read-only file system.*engines build"):
        cache.get_or_build(make_key(opt_level=2), lambda: pytest.fail("must not build"))


def test_lock_timeout_is_not_reported_as_a_cache_dir_problem(tmp_path, monkeypatch):
    import filelock

    cache, key = EngineCache(tmp_path), make_key()
    real_lock = EngineCache.lock
    monkeypatch.setattr(EngineCache, "lock", lambda self, k, timeout=0.2: real_lock(self, k, timeout))
    held, done = threading.Event(), threading.Event()

    def hold():
        with real_lock(cache, key):
            held.set()
            done.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(10)
    try:
        with pytest.raises(filelock.Timeout):
            cache.get_or_build(key, lambda: pytest.fail("must not build"))
    finally:
        done.set()
        t.join()


def test_read_only_cache_serves_the_trt_backend(fake_backend_env, read_only, caplog):  # noqa: F811
    """End to end with the fake TensorRT: prebuild, make the cache read-only, a new backend loads it."""
    env = fake_backend_env
    new_backend(env)
    trt_mod.clear_runners()
    read_only.add(env["options"].cache_dir)
    new_backend(env)
    assert env["builds"] == 1 and env["loads"] == [b"GOOD engine"] * 2


# ----------------------------------------------------------------------------- path is a file / unreadable
def test_cache_dir_that_is_a_file_is_a_clear_error(tmp_path, fake_backend_env, caplog):  # noqa: F811
    f = tmp_path / "not-a-dir"
    f.write_text("x")
    with pytest.raises(CacheDirError, match="is a file"):
        EngineCache(f).get_or_build(make_key(), lambda: b"e")
    env = fake_backend_env
    with pytest.raises(vs.Error, match=rf"^espcn\.Upscale: cache_dir '{f}' is a file; pass a directory"):
        new_backend(env, cache_dir=str(f))
    assert engines_cli.main(["list", "--cache-dir", str(f)]) == 1
    assert "espcn engines list: cache_dir" in caplog.text and "is a file" in caplog.text


def test_unreadable_cache_dir_is_not_reported_empty(tmp_path, monkeypatch, capsys, caplog):
    """As root a chmod 000 directory stays readable, so the refusal is simulated at os.scandir."""
    cache, _ = _populate(tmp_path)
    real = os.scandir

    def denied(path="."):
        if os.path.abspath(os.fsdecode(path)) == str(tmp_path):
            raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", denied)
    assert engines_cli.main(["list", "--cache-dir", str(tmp_path)]) == 1
    assert "cannot read engine cache directory" in caplog.text and "Permission denied" in caplog.text
    assert "0 engine(s)" not in capsys.readouterr().err
    assert engines_cli.main(["clear", "--cache-dir", str(tmp_path)]) == 1
    monkeypatch.undo()
    assert len(cache.entries()) == 2  # nothing was deleted
