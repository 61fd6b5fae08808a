"""On-disk cache of serialized TensorRT engines: where it lives, what names a file, safe writes.

An engine is only valid for the exact ONNX, shape/profile, precision, TensorRT package+version,
GPU and builder options it was built with, so every one of those goes into an `EngineKey`; the
file name carries a digest of the key and a JSON sidecar records the full key plus the engine's
size and sha256. A file whose sidecar is missing, differs from the wanted key or does not match
the engine bytes (truncated, corrupt, half-written by a killed process) is deleted and rebuilt
with a warning. Writes go to a temp file in the same directory and are renamed into place, and
builds of one key are serialized with a `filelock` lock, so two vspipe processes starting at once
leave one valid engine (the second one waits and then loads it).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("vs_espcn")

ENV_VAR = "VS_ESPCN_CACHE_DIR"
SCHEMA = 1  # bump when the meaning of a key field or the engine I/O contract changes
ENGINE_SUFFIX = ".engine"
SIDECAR_SUFFIX = ".json"
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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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

    def lock(self, key: EngineKey):
        """A `filelock.FileLock` that serializes building/writing this key across processes."""
        import filelock

        self.directory.mkdir(parents=True, exist_ok=True)
        return filelock.FileLock(str(self.engine_path(key).with_suffix(".lock")), timeout=LOCK_TIMEOUT_S)

    def invalidate(self, key: EngineKey, reason: str) -> None:
        """Delete the engine and sidecar of `key`, warning why (they will be rebuilt)."""
        path = self.engine_path(key)
        if path.exists() or self.sidecar_path(key).exists():
            log.warning("espcn: discarding cached TensorRT engine %s (%s); it will be rebuilt", path, reason)
        path.unlink(missing_ok=True)
        self.sidecar_path(key).unlink(missing_ok=True)

    def check(self, key: EngineKey) -> tuple[bytes | None, str]:
        """(engine bytes, "") when the cached engine is complete and was built for `key`,
        else (None, why). Does not delete anything."""
        path, side = self.engine_path(key), self.sidecar_path(key)
        if not path.exists():
            return None, "missing"
        try:
            meta = json.loads(side.read_text())
        except (OSError, ValueError) as e:
            return None, f"sidecar unreadable: {e}"
        if meta.get("key") != key.to_dict():
            return None, "recorded key differs from the wanted one"
        data = path.read_bytes()
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

    def get_or_build(self, key: EngineKey, build: Callable[[], bytes]) -> tuple[Path, bytes, bool]:
        """Return (path, engine bytes, built_now). Under the key's lock: load a valid engine, or
        call `build()` and store its result. A second process waits for the first one's build."""
        with self.lock(key):
            data = self.load(key)
            if data is not None:
                return self.engine_path(key), data, False
            data = build()
            return self.store(key, data), data, True

    def entries(self) -> list[dict]:
        """One dict per cached engine: path, size, and the recorded key (None if unreadable)."""
        if not self.directory.is_dir():
            return []
        out = []
        for path in sorted(self.directory.glob(f"*{ENGINE_SUFFIX}")):
            try:
                meta = json.loads(path.with_suffix(SIDECAR_SUFFIX).read_text())
            except (OSError, ValueError):
                meta = {}
            out.append({"path": path, "size": path.stat().st_size, "key": meta.get("key")})
        return out

    def clear(self) -> int:
        """Delete every engine, sidecar, lock, temp file and timing cache here; returns the
        number of engines deleted."""
        if not self.directory.is_dir():
            return 0
        n = 0
        for path in self.directory.iterdir():
            if not path.is_file():
                continue
            if path.suffix == ENGINE_SUFFIX:
                n += 1
            if path.suffix in (ENGINE_SUFFIX, SIDECAR_SUFFIX, ".lock", ".tmp", ".cache", ".rtcache"):
                path.unlink(missing_ok=True)
        return n
