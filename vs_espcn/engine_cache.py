"""On-disk cache of serialized TensorRT engines: where it lives, what names a file, safe writes.

An engine is only valid for the exact ONNX, shape/profile, precision, TensorRT package+version,
GPU and builder options it was built with, so every one of those goes into an `EngineKey`; the
file name carries a digest of the key and a JSON sidecar records the full key plus the engine's
size and sha256. A file whose sidecar is missing, differs from the wanted key or does not match
the engine bytes (truncated, corrupt, half-written by a killed process) is deleted and rebuilt
with a warning. Writes go to a temp file in the same directory and are renamed into place, and
builds of one key are serialized with a `filelock` lock, so two vspipe processes starting at once
leave one valid engine (the second one waits and then loads it). A valid engine is read without
the lock (the lock file is only created to build), so a cache prebuilt and then shipped read-only
(containers, network drives, CI images) serves. `clear` deletes only files this cache wrote (names
matching `OWNED`: engines, their sidecars, locks and runtime caches, timing caches, and temp files
of them), each engine's under that same lock, and reports the rest; a file that disappears between
the existence check and the read is treated as missing (rebuilt), not as an error.
"""
from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("vs_espcn")

ENV_VAR = "VS_ESPCN_CACHE_DIR"
SCHEMA = 1  # bump when the meaning of a key field or the engine I/O contract changes
ENGINE_SUFFIX = ".engine"
SIDECAR_SUFFIX = ".json"
LOCK_SUFFIX = ".lock"
TMP_SUFFIX = ".tmp"
RTCACHE_SUFFIX = ".rtcache"  # TensorRT-RTX runtime cache, beside its engine (backends/trt.py)
KEYED_SUFFIXES = (ENGINE_SUFFIX, SIDECAR_SUFFIX, LOCK_SUFFIX, RTCACHE_SUFFIX)
PACKAGES = ("tensorrt", "tensorrt_rtx")  # EngineKey.trt_package
# The names this cache writes, and nothing else (`clear` deletes only these):
#  - `EngineKey.filename()` stems (model-xS-shape-static|dyn-fp16|fp32-package-16hex) + KEYED_SUFFIXES;
#  - `timing-<package>-<slug>.cache`, the timing cache of backends/trt.timing_cache_path;
#  - `atomic_write` temp files `.<one of those>.<random>.tmp` left by a killed writer.
_SHAPE = r"\d+(?:x\d+)*"
ENGINE_STEM = re.compile(rf"[A-Za-z0-9_.-]{{1,40}}-x\d+-{_SHAPE}(?:-{_SHAPE})?-(?:static|dyn)-fp(?:16|32)-"
                         rf"(?:{'|'.join(PACKAGES)})-[0-9a-f]{{16}}")
TIMING_NAME = re.compile(rf"timing-(?:{'|'.join(PACKAGES)})-[A-Za-z0-9_.-]+\.cache")
TMP_NAME = re.compile(r"\.(?P<name>.+)\.[A-Za-z0-9_]+\.tmp")
CLEAR_LOCK_TIMEOUT_S = 5.0  # `engines clear` skips an engine whose build holds the lock longer
LOCK_TIMEOUT_S = 3600.0  # a build can take minutes; a stuck lock holder beyond an hour is an error


def cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """Engine cache directory: `override` if given, else $VS_ESPCN_CACHE_DIR, else the
    platformdirs user cache dir for vs-espcn (plus `/engines`). Not created here."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get(ENV_VAR, "")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("vs-espcn", appauthor=False)) / "engines"


@dataclass(frozen=True)
class EngineKey:
    """Everything that changes a serialized engine. `profile` is ((min), (opt), (max)) NCHW shapes;
    a static engine has min == opt == max."""

    onnx_sha256: str
    model_name: str
    scale: int
    profile: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
    precision: str  # "fp16" | "fp32"
    precision_mode: str  # "flag" (TensorRT < 11 builder flag) | "onnx" (fp16-converted network) | "none"
    trt_package: str  # "tensorrt" | "tensorrt_rtx"
    trt_version: str
    gpu_name: str
    compute_capability: str
    opt_level: int
    workspace_mib: int
    schema: int = SCHEMA

    @property
    def static(self) -> bool:
        """True when the profile pins one shape."""
        return self.profile[0] == self.profile[1] == self.profile[2]

    def to_dict(self) -> dict:
        """JSON-able form (tuples become lists), as stored in the sidecar."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def digest(self) -> str:
        """Stable 16-hex digest of the whole key."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def shape_label(self) -> str:
        """`1x1x360x640` for a static engine, `1x1x1x1-1x1x360x640` for a dynamic one."""
        fmt = lambda s: "x".join(str(d) for d in s)  # noqa: E731
        return fmt(self.profile[2]) if self.static else f"{fmt(self.profile[0])}-{fmt(self.profile[2])}"

    def filename(self) -> str:
        """Readable and unique: model, scale, shape, precision, package, key digest."""
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.model_name)[:40] or "model"
        kind = "static" if self.static else "dyn"
        return (f"{name}-x{self.scale}-{self.shape_label()}-{kind}-{self.precision}-"
                f"{self.trt_package}-{self.digest()}{ENGINE_SUFFIX}")


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so readers see either the old file or the complete new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; cache files are not secret
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _file_lock(path: Path, timeout: float):
    """A `filelock.FileLock` at `path` (directory created). filelock >= 3.13 notices a lock file
    unlinked by a previous holder and retries on the new one, so deleting it under the lock is safe."""
    import filelock

    path.parent.mkdir(parents=True, exist_ok=True)
    return filelock.FileLock(str(path), timeout=timeout)


def owned(name: str) -> tuple[str, str] | None:
    """(group, suffix) when a file called `name` is one this cache writes, else None. `group` is the
    engine stem its keyed files share (or the timing cache's own name); a temp file of
    `atomic_write` belongs to the file it was going to become."""
    m = TMP_NAME.fullmatch(name)
    target = m["name"] if m else name
    if TIMING_NAME.fullmatch(target):
        return target, ".cache"
    stem, dot, suffix = target.rpartition(".")
    if dot and "." + suffix in KEYED_SUFFIXES and ENGINE_STEM.fullmatch(stem):
        return stem, "." + suffix
    return None


class CacheDirError(OSError):
    """The cache directory cannot be used: it is a file, unreadable, or read-only where an engine
    must be built. The text is the `<problem>; <what is supported>` part of the user's error."""

    def __str__(self) -> str:
        return str(self.strerror)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class EngineCache:
    """Engines of one cache directory, keyed by `EngineKey`."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = cache_dir(directory)

    def engine_path(self, key: EngineKey) -> Path:
        """Where the engine of `key` lives (whether or not it exists)."""
        return self.directory / key.filename()

    def sidecar_path(self, key: EngineKey) -> Path:
        """The JSON next to the engine: key, size, sha256."""
        return self.engine_path(key).with_suffix(SIDECAR_SUFFIX)

    def lock(self, key: EngineKey, timeout: float = LOCK_TIMEOUT_S):
        """A `filelock.FileLock` that serializes building/writing this key across processes."""
        return _file_lock(self.engine_path(key).with_suffix(LOCK_SUFFIX), timeout)

    def invalidate(self, key: EngineKey, reason: str) -> None:
        """Delete the engine and sidecar of `key`, warning why (they will be rebuilt)."""
        path = self.engine_path(key)
        if path.exists() or self.sidecar_path(key).exists():
            log.warning("espcn: discarding cached TensorRT engine %s (%s); it will be rebuilt", path, reason)
        path.unlink(missing_ok=True)
        self.sidecar_path(key).unlink(missing_ok=True)

    def check(self, key: EngineKey) -> tuple[bytes | None, str]:
        """(engine bytes, "") when the cached engine is complete and was built for `key`,
        else (None, why). Does not delete anything. A file that vanishes while being read
        (`engines clear` in another process) counts as "missing", not as an error."""
        path, side = self.engine_path(key), self.sidecar_path(key)
        if not path.exists():
            return None, "missing"
        try:
            meta = json.loads(side.read_text())
        except FileNotFoundError as e:
            return (None, "missing") if not path.exists() else (None, f"sidecar unreadable: {e}")
        except (OSError, ValueError) as e:
            return None, f"sidecar unreadable: {e}"
        if meta.get("key") != key.to_dict():
            return None, "recorded key differs from the wanted one"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None, "missing"
        if len(data) != meta.get("size") or _sha256(data) != meta.get("sha256"):
            return None, f"engine file truncated or corrupt ({len(data)} bytes, expected {meta.get('size')})"
        return data, ""

    def load(self, key: EngineKey) -> bytes | None:
        """The valid cached engine of `key`, or None (an invalid one is deleted with a warning)."""
        data, why = self.check(key)
        if data is None and why != "missing":
            self.invalidate(key, why)
        return data

    def store(self, key: EngineKey, data: bytes) -> Path:
        """Atomically write engine then sidecar; returns the engine path."""
        path = self.engine_path(key)
        atomic_write(path, data)
        meta = {"key": key.to_dict(), "size": len(data), "sha256": _sha256(data), "created": time.time()}
        atomic_write(self.sidecar_path(key), json.dumps(meta, indent=1).encode())
        return path

    def _check_dir(self) -> None:
        """Raise CacheDirError when the cache path exists but is not a directory."""
        if self.directory.exists() and not self.directory.is_dir():
            raise CacheDirError(errno.ENOTDIR, f"cache_dir {str(self.directory)!r} is a file; pass a directory "
                                "(created when missing) or leave cache_dir empty for the user cache")

    def get_or_build(self, key: EngineKey, build: Callable[[], bytes]) -> tuple[Path, bytes, bool]:
        """Return (path, engine bytes, built_now). A valid engine is returned without taking the
        lock (nothing is written, so a read-only cache serves); otherwise, under the key's lock:
        load a valid engine (another process may have built it meanwhile), or discard an invalid
        one, call `build()` and store its result. A second process waits for the first one's build."""
        self._check_dir()
        data, _ = self.check(key)  # only a complete, matching engine is taken here; the rest is decided locked
        if data is not None:
            return self.engine_path(key), data, False
        import filelock

        try:
            lock = self.lock(key)
            lock.acquire()
        except filelock.Timeout:  # a TimeoutError, so an OSError too: another build holds it, not the directory
            raise
        except OSError as e:
            raise CacheDirError(e.errno, f"cannot build the missing TensorRT engine in cache_dir "
                                f"{str(self.directory)!r} ({e.strerror or e}); pass a writable cache_dir, or "
                                "prebuild the engine there with `python -m vs_espcn engines build`") from e
        try:
            data = self.load(key)
            if data is not None:
                return self.engine_path(key), data, False
            data = build()
            return self.store(key, data), data, True
        finally:
            lock.release()

    def _names(self) -> list[str]:
        """Names in the cache directory ([] when it does not exist). Raises CacheDirError when the
        path is a file or cannot be read, so `engines list` never reports an unreadable directory
        as empty."""
        self._check_dir()
        try:
            with os.scandir(self.directory) as it:
                return sorted(e.name for e in it)
        except FileNotFoundError:
            return []
        except OSError as e:
            raise CacheDirError(e.errno, f"cannot read engine cache directory {str(self.directory)!r} "
                                f"({e.strerror or e}); make it readable or pass another cache_dir") from e

    def entries(self) -> list[dict]:
        """One dict per cached engine (files this cache wrote; a user's own `.engine` is not
        listed): path, size, and the recorded key (None if unreadable)."""
        out = []
        for name in self._names():
            if owned(name) is None or not name.endswith(ENGINE_SUFFIX) or name.startswith("."):
                continue
            path = self.directory / name
            try:
                size = path.stat().st_size
            except FileNotFoundError:  # deleted meanwhile by another process
                continue
            try:
                meta = json.loads(path.with_suffix(SIDECAR_SUFFIX).read_text())
            except (OSError, ValueError):
                meta = {}
            out.append({"path": path, "size": size, "key": meta.get("key")})
        return out

    def _files_by_group(self) -> dict[str, list[Path]]:
        """This cache's files here, grouped (an engine with its sidecar, runtime cache, lock and
        temp files share one group; a timing cache and its temp files another). Anything else,
        including sub-folders and links, is left out."""
        groups: dict[str, list[Path]] = {}
        for name in self._names():
            hit, path = owned(name), self.directory / name
            if hit is not None and path.is_file() and not path.is_symlink():
                groups.setdefault(hit[0], []).append(path)
        return groups

    def foreign(self) -> list[str]:
        """Names in the cache directory that this cache did not write (what `clear` leaves)."""
        return [n + ("/" if (self.directory / n).is_dir() else "") for n in self._names()
                if owned(n) is None or (self.directory / n).is_symlink() or not (self.directory / n).is_file()]

    def clear(self, lock_timeout: float = CLEAR_LOCK_TIMEOUT_S) -> int:
        """Delete this cache's own files (see `owned`): engines, sidecars, locks, runtime and timing
        caches, temp files; returns the number of engines deleted. Any other file stays (see
        `foreign`). Each engine's files are deleted under its build lock, so a concurrent build or
        load never sees half of them; an engine whose lock stays taken for `lock_timeout` s (being
        built right now) is skipped with a warning."""
        import filelock

        n = 0
        for group, paths in sorted(self._files_by_group().items()):
            if TIMING_NAME.fullmatch(group):  # timing caches: written atomically, no lock to take
                n += _delete(paths)
                continue
            try:
                with _file_lock(self.directory / f"{group}{LOCK_SUFFIX}", lock_timeout):
                    n += _delete(self._files_by_group().get(group, []))  # as they are now, lock file included
            except filelock.Timeout:
                log.warning("espcn: skipped %s (locked: another process is building it)", group)
        return n


def _delete(paths: list[Path]) -> int:
    """Delete `paths` (already gone is fine); returns how many were engines. The lock file goes
    last, while still held."""
    n = 0
    for path in sorted(paths, key=lambda p: p.suffix == LOCK_SUFFIX):
        try:
            path.unlink()
            n += path.name.endswith(ENGINE_SUFFIX) and not path.name.startswith(".")
        except FileNotFoundError:
            pass
        except OSError as e:  # e.g. Windows refuses to delete an open lock file
            log.warning("espcn: could not delete %s (%s)", path, e)
    return n
