"""Hostile and odd model files: size limit checked before reading, non-regular files, NUL bytes,
non-UTF-8 file names, MemoryError while parsing (all without using real disk or RAM)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import vapoursynth as vs

from onnx_models import make_espcn_onnx
from vs_espcn import models


def _sparse(path: Path, size: int) -> Path:
    """A file of `size` bytes that occupies no disk blocks (a hole)."""
    with open(path, "wb") as f:
        f.truncate(size)
    return path


@pytest.mark.parametrize("gib", [2, 10])
def test_huge_model_file_is_refused_before_reading(tmp_path, monkeypatch, gib):
    big = _sparse(tmp_path / "video.onnx", gib * 2**30)
    opened = []
    real_open = open

    def spy(file, *a, **k):
        opened.append(os.fspath(file))
        return real_open(file, *a, **k)

    monkeypatch.setattr("builtins.open", spy)
    t0 = time.perf_counter()
    with pytest.raises(vs.Error) as info:
        models.resolve(str(big), None)
    assert time.perf_counter() - t0 < 1.0
    text = str(info.value)
    assert text.startswith(f"espcn.Upscale: model file {str(big)!r} is {gib * 2**30} bytes ({gib * 1024}.0 MiB), "
                           f"larger than the {models.MAX_MODEL_MIB} MiB limit; ")
    assert str(big) not in opened  # refused on its size, never read


def test_file_at_the_limit_is_read_and_one_byte_more_is_not(tmp_path, monkeypatch):
    """The limit is checked on the bytes read too (a file growing after the stat)."""
    monkeypatch.setattr(models, "MAX_MODEL_MIB", 1)
    at = _sparse(tmp_path / "at.onnx", 2**20)
    with pytest.raises(vs.Error, match="not a valid ONNX file|no nodes|scale"):  # read, then rejected as ONNX
        models.load(at)
    over = _sparse(tmp_path / "over.onnx", 2**20 + 1)
    with pytest.raises(vs.Error, match=r"is 1048577 bytes \(1.0 MiB\), larger than the 1 MiB limit"):
        models.load(over)
    grows = _sparse(tmp_path / "grows.onnx", 100)
    real_stat = Path.stat

    def grown_after_stat(self, *a, **k):
        st = real_stat(self, *a, **k)
        if self.name == "grows.onnx":
            _sparse(self, 2**20 + 10)
        return st

    monkeypatch.setattr(Path, "stat", grown_after_stat)
    with pytest.raises(vs.Error, match=r"is 10485\d\d bytes \(1.0 MiB\), larger than the 1 MiB limit"):
        models.load(grows)


@pytest.mark.parametrize("kind,shown", [("fifo", "a pipe"), ("dir", "a directory"), ("devnull", "a device")])
def test_non_regular_file_is_refused_before_reading(tmp_path, kind, shown):
    if kind == "fifo":
        path = tmp_path / "m.onnx"
        os.mkfifo(path)  # reading it would block forever
    elif kind == "dir":
        path = tmp_path / "m.onnx"
        path.mkdir()
    else:
        path = Path(os.devnull)
    with pytest.raises(vs.Error, match=rf"^espcn\.Upscale: model path .* is not a file \({shown}\); "):
        models.resolve(str(path), None)


@pytest.mark.parametrize("where", ["read", "parse"])
def test_memory_error_while_reading_has_a_message(tmp_path, monkeypatch, where):
    import onnx

    good = make_espcn_onnx(tmp_path / "m.onnx", 2)

    def no_memory(*a, **k):
        raise MemoryError()

    if where == "parse":
        monkeypatch.setattr(onnx, "load_from_string", no_memory)
    else:
        monkeypatch.setattr(models, "open", no_memory, raising=False)
    with pytest.raises(vs.Error, match=r"^espcn\.Upscale: out of memory while reading model file .*m\.onnx.*; "):
        models.load(good)


@pytest.mark.parametrize("path", ["model\0.onnx", b"/tmp/a\0b.onnx"])
def test_nul_byte_in_model_path(path):
    with pytest.raises(vs.Error, match=r"^espcn\.Upscale: model path .* contains a NUL byte; pass the path"):
        models.resolve(path, None)


def test_model_with_a_non_utf8_file_name_loads(tmp_path):
    """The shim hands data args over as str with surrogate escapes; bytes paths work too."""
    raw = os.fsencode(tmp_path) + b"/mod\xffel.onnx"
    good = make_espcn_onnx(tmp_path / "good.onnx", 3)
    os.rename(good, raw)
    as_str = os.fsdecode(raw)
    for path in (as_str, raw, Path(as_str)):
        info = models.load(path)
        assert (info.scale, info.radius) == (3, 4)
        assert os.fsencode(info.path) == raw
    assert models.resolve(as_str, 3).scale == 3
    info.name.encode("utf-8")  # printable in logs, errors and engine file names


def test_errors_on_a_non_utf8_file_name_are_printable(tmp_path):
    raw = os.fsencode(tmp_path) + b"/bad\xfe.onnx"
    with open(raw, "wb") as f:
        f.write(b"not onnx")
    for target in (raw, os.fsencode(tmp_path) + b"/missing\xfe.onnx"):
        with pytest.raises(vs.Error) as info:
            models.resolve(os.fsdecode(target), None)
        text = str(info.value)
        assert text.startswith("espcn.Upscale: ") and "\\udcfe" in text
        text.encode("utf-8")  # VapourSynth hands error texts on as UTF-8
