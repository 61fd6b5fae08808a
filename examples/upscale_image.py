"""Plain Python, no vspipe: upscale a still image x2 and save it as PNG.

    python examples/upscale_image.py photo.png photo_x2.png [scale]

The image goes RGB -> YUV444P16 (BT.601, limited range: the luma convention the network was
trained on) so the network sees its luma, then back to RGB.
"""
import sys

import numpy as np
import vapoursynth as vs
from PIL import Image

core = vs.core


def image_clip(path: str) -> vs.VideoNode:
    """An RGB24 one-frame clip holding the image."""
    rgb = np.asarray(Image.open(path).convert("RGB"))
    h, w = rgb.shape[:2]
    blank = core.std.BlankClip(width=w, height=h, format=vs.RGB24, length=1)

    def fill(n: int, f: vs.VideoFrame) -> vs.VideoFrame:
        out = f.copy()
        for p in range(3):
            np.asarray(out[p])[:] = rgb[..., p]
        return out

    return core.std.ModifyFrame(blank, blank, fill)


def main(src: str, dst: str, scale: int) -> None:
    yuv = core.resize.Bicubic(image_clip(src), format=vs.YUV444P16, matrix_s="170m")
    up = core.espcn.Upscale(yuv, scale)  # autoloaded: no import of vs_espcn needed
    rgb = core.resize.Bicubic(up, format=vs.RGB24, matrix_in_s="170m").get_frame(0)
    Image.fromarray(np.dstack([np.asarray(rgb[p]) for p in range(3)])).save(dst)
    print(f"wrote {dst} ({up.width}x{up.height})", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 2)
