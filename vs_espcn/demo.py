"""`python -m vs_espcn demo`: upscale a bundled real photo with `core.espcn.Upscale`.

The photo (scikit-image's `astronaut`) is the ground truth. It is downscaled by the scale factor
with Catmull-Rom (the trainer's protocol), converted to YUV420P8 (BT.601 matrix), upscaled by the
autoloaded `espcn` namespace, and compared with Catmull-Rom bicubic on BT.601 Y (PSNR, border of
`scale` pixels shaved). Writes `<out>/demo_x<scale>.png` (the ESPCN result) and
`<out>/demo_compare.png` (crop: bicubic | ESPCN | original). Reports go to stderr, never stdout.

Beyond the runtime it needs pillow and scikit-image (the `demo` extra); without them it says which to
`pip install` in one sentence and exits 1.
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("vs_espcn")

CATMULL_ROM = {"filter_param_a": 0.0, "filter_param_b": 0.5}
CROP = (176, 48, 160, 160)  # x, y, w, h of the comparison crop (the astronaut's face), in HR pixels
ZOOM = 2  # nearest-neighbour enlargement of the crop panels so the difference is visible


# What the demo imports beyond the runtime: import name -> pip package (the `demo` extra).
DEMO_PACKAGES = {"PIL": "pillow", "skimage": "scikit-image"}


class DemoError(Exception):
    """A condition the user can fix; its message is printed instead of a traceback."""


def check_packages() -> None:
    """Raise DemoError naming the pip packages to install when any of DEMO_PACKAGES is missing."""
    missing = [pip for name, pip in DEMO_PACKAGES.items() if importlib.util.find_spec(name) is None]
    if missing:
        raise DemoError(f"needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not "
                        f"installed; install {'it' if len(missing) == 1 else 'them'} with: "
                        f"pip install {' '.join(missing)}")


def check_model(model: str, scale: int) -> str:
    """Return the `model` argument for Upscale after `models.resolve` accepted it (the shipped
    weights for `scale` when `model` is empty); a missing or unusable model is a DemoError."""
    import vapoursynth as vs

    from vs_espcn import models

    try:
        models.resolve(model, scale)
    except vs.Error as exc:
        hint = ("pass --model PATH to an ONNX exported by `python -m trainer.export`, or train the "
                f"shipped weights first (see {models.MODEL_DIR / 'MODEL_CARD.md'})")
        raise DemoError(f"{str(exc).removeprefix('espcn.Upscale: ')}; {hint}") from None
    return model


def sample_photo(scale: int) -> np.ndarray:
    """scikit-image's astronaut photo (RGB uint8), cropped to a multiple of `scale`."""
    from skimage import data

    photo = data.astronaut()
    h, w = (photo.shape[0] // scale) * scale, (photo.shape[1] // scale) * scale
    return np.ascontiguousarray(photo[:h, :w, :3])


def rgb_clip(core: Any, photo: np.ndarray) -> Any:
    """A one-frame RGB24 clip holding `photo`."""
    import vapoursynth as vs

    h, w, _ = photo.shape
    blank = core.std.BlankClip(format=vs.RGB24, width=w, height=h, length=1)

    def fill(n: int, f: vs.VideoFrame) -> vs.VideoFrame:
        out = f.copy()
        for p in range(3):
            np.copyto(np.asarray(out[p]), photo[:, :, p])
        return out

    return core.std.ModifyFrame(blank, blank, fill)


def planes(clip: Any) -> np.ndarray:
    """Frame 0 of `clip` as an (H, W, planes) array (all planes must share a size)."""
    frame = clip.get_frame(0)
    return np.stack([np.asarray(frame[p]) for p in range(frame.format.num_planes)], axis=-1)


def y_psnr(a: np.ndarray, b: np.ndarray, shave: int) -> float:
    """PSNR (peak 255) of two 8-bit Y planes with `shave` border pixels left out."""
    a = a[shave:-shave, shave:-shave].astype(np.float64)
    b = b[shave:-shave, shave:-shave].astype(np.float64)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def upscale_photo(core: Any, photo: np.ndarray, scale: int, model: str) -> dict[str, Any]:
    """Run the protocol; returns RGB results and Y planes of ESPCN, bicubic and the original."""
    import vapoursynth as vs

    h, w, _ = photo.shape
    original = rgb_clip(core, photo)
    lr = original.resize.Bicubic(w // scale, h // scale, **CATMULL_ROM)
    lr = lr.resize.Bicubic(format=vs.YUV420P8, matrix_s="170m")
    sr = core.espcn.Upscale(lr, scale, model=model)
    bicubic = lr.resize.Bicubic(w, h, **CATMULL_ROM)
    to_rgb = {"format": vs.RGB24, "matrix_in_s": "170m"}
    truth_y = original.resize.Bicubic(format=vs.YUV444P8, matrix_s="170m").std.ShufflePlanes(0, vs.GRAY)
    return {
        "espcn_rgb": planes(sr.resize.Bicubic(**to_rgb)),
        "bicubic_rgb": planes(bicubic.resize.Bicubic(**to_rgb)),
        "espcn_y": planes(sr.std.ShufflePlanes(0, vs.GRAY))[..., 0],
        "bicubic_y": planes(bicubic.std.ShufflePlanes(0, vs.GRAY))[..., 0],
        "truth_y": planes(truth_y)[..., 0],
    }


def comparison(bicubic: np.ndarray, espcn: np.ndarray, original: np.ndarray, scale: int) -> Any:
    """Side-by-side labelled crops (bicubic | ESPCN | original) as a PIL image."""
    from PIL import Image, ImageDraw

    x, y, w, h = CROP
    gap, label_h = 6, 22
    labels = ["bicubic (Catmull-Rom)", f"ESPCN x{scale}", "original"]
    canvas = Image.new("RGB", (3 * w * ZOOM + 2 * gap, h * ZOOM + label_h), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (img, label) in enumerate(zip((bicubic, espcn, original), labels)):
        panel = Image.fromarray(img[y:y + h, x:x + w]).resize((w * ZOOM, h * ZOOM), Image.Resampling.NEAREST)
        left = i * (w * ZOOM + gap)
        canvas.paste(panel, (left, label_h))
        draw.text((left + 4, 4), label, fill="black")
    return canvas


def run(scale: int, model: str, out_dir: Path) -> dict[str, float]:
    """The whole demo; returns the two Y-PSNRs."""
    check_packages()
    import vapoursynth as vs
    from PIL import Image

    core = vs.core
    if not hasattr(core, "espcn"):
        raise DemoError("the espcn plugin is not autoloaded: install the package non-editable "
                        f"(`make demo` or `pip install .`); plugin folder: {vs.get_plugin_dir()}")
    model = check_model(model, scale)
    photo = sample_photo(scale)
    res = upscale_photo(core, photo, scale, model)
    out_dir.mkdir(parents=True, exist_ok=True)
    Image.fromarray(res["espcn_rgb"]).save(out_dir / f"demo_x{scale}.png")
    comparison(res["bicubic_rgb"], res["espcn_rgb"], photo, scale).save(out_dir / "demo_compare.png")
    return {"espcn": y_psnr(res["espcn_y"], res["truth_y"], scale),
            "bicubic": y_psnr(res["bicubic_y"], res["truth_y"], scale)}


def main(argv: list[str] | None = None) -> int:
    """CLI entry: `python -m vs_espcn demo [--scale N] [--model PATH] [--out DIR]`."""
    parser = argparse.ArgumentParser(prog="python -m vs_espcn demo", description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, choices=(2, 3, 4), default=2)
    parser.add_argument("--model", default="", help="ONNX path (default: the shipped natural model)")
    parser.add_argument("--out", type=Path, default=Path("out"), help="output folder (default: out)")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
    try:
        psnr = run(args.scale, args.model, args.out)
    except DemoError as exc:
        log.error("demo: %s", exc)
        return 1
    log.info("wrote %s and %s", args.out / f"demo_x{args.scale}.png", args.out / "demo_compare.png")
    log.info("Y-PSNR vs original (astronaut, x%d, %d px border shaved): ESPCN %.2f dB, bicubic %.2f dB (%+.2f dB)",
             args.scale, args.scale, psnr["espcn"], psnr["bicubic"], psnr["espcn"] - psnr["bicubic"])
    return 0
