"""The Python side of the native shim (`vs_espcn/_shim/espcn_shim.c`).

The shim registers the `espcn` namespace; on every `espcn.Upscale(...)` call it imports this module
and calls `install()`, which hands `_handle` to the shim as a VapourSynth function on the current
core. The shim then calls `_handle` with the original argument map; `_handle` converts the VSMap
values (data args arrive as bytes, arrays of one as scalars) into `graph.upscale` keywords.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("vs_espcn")

_DATA_ARGS = ("model", "backend", "kernel", "cache_dir", "precision")


def install() -> None:
    """Register `_handle` with the current core; called by the shim with the GIL held."""
    import vapoursynth as vs

    vs.core.espcn.RegisterHandler(func=_handle)


def _target() -> Callable[..., Any]:
    """The function that builds the filter graph (a seam the shim tests patch)."""
    from vs_espcn.graph import upscale

    return upscale


def convert_args(args: dict[str, Any]) -> dict[str, Any]:
    """Turn VSMap values into `graph.upscale` keywords: bytes -> str, tilesize -> tuple. The 0/1
    switches stay ints: `graph.upscale` refuses any other number (clamp=2 must not pass as "on")."""
    kwargs = dict(args)
    for key in _DATA_ARGS:
        if isinstance(kwargs.get(key), (bytes, bytearray)):
            kwargs[key] = bytes(kwargs[key]).decode("utf-8", errors="surrogateescape")
    if "tilesize" in kwargs:
        value = kwargs["tilesize"]
        kwargs["tilesize"] = tuple(int(v) for v in value) if isinstance(value, (list, tuple)) else (int(value),)
    return kwargs


def _handle(**args: Any) -> dict[str, Any]:
    """Called by the shim with Upscale's arguments.

    Returns {"val": clip}, or {"error": message} so the shim can raise the message as it is
    (an exception would reach VapourSynth as a whole traceback). Tracebacks of unexpected
    exceptions go to the `vs_espcn` logger.
    """
    import vapoursynth as vs

    try:
        return {"val": _target()(**convert_args(args))}
    except vs.Error as exc:
        return {"error": _named(str(exc))}
    except Exception as exc:
        log.debug("espcn.Upscale failed", exc_info=True)
        return {"error": _named(f"{type(exc).__name__}: {exc}")}


def _named(message: str) -> str:
    """Prefix `espcn.Upscale: ` unless the message already names the filter."""
    return message if message.startswith("espcn.Upscale") else f"espcn.Upscale: {message}"
