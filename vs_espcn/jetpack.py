"""ESPCN as a vs-jetpack scaler: `ESPCN(model="anime").scale(clip, 1920, 1080)`, `.supersample(clip, 2)`.

For scripts built on vs-jetpack, which pass scalers around as objects (`vskernels.Scaler`). It follows
vsscale's luma scalers: the luma goes through the network (`core.espcn.Upscale` on the Y plane), the chroma
through a kernel on the whole clip at the target size, and the two are joined.

Sizes: a target that is exactly 2x, 3x or 4x the clip (and a scale the model has) runs the network alone,
so the luma of `ESPCN().scale(clip, 2 * w, 2 * h)` equals `core.espcn.Upscale(clip, 2)`. Any other target
larger than the clip runs the smallest network scale that reaches it (the largest one if none does) and
then the kernel to the target. A target no larger than the clip is the kernel alone: a network that adds
detail is of no use to a downscale. The shipped models are natural x2/x3/x4 and anime and manga x2 only.

vs-jetpack is optional: `import vs_espcn` never imports this module, and importing it without vs-jetpack
raises one ImportError sentence that says what to install.
"""
from __future__ import annotations

from typing import Any

import vapoursynth as vs

try:
    from vskernels import Catrom, Kernel, KernelLike, Scaler, ScalerLike
except ImportError as exc:  # one sentence, the original error chained for whoever wants it
    raise ImportError("vs_espcn.jetpack needs vs-jetpack (its vskernels package), which is not installed; "
                      "install it with: pip install vsjetpack") from exc

from vs_espcn import models

__all__ = ["ESPCN"]


def network_scales(model: str) -> tuple[int, ...]:
    """The scales `model` has weights for: (2, 3, 4) for the natural set, (2,) for anime and manga, else the
    scale in the ONNX file's metadata (read by the plugin's own model registry)."""
    if model in ("", "natural"):
        return models.SCALES
    if model in models.X2_ONLY:
        return (2,)
    return (models.load(model).scale,)


def pick_scale(src: tuple[int, int], dst: tuple[int, int], scales: tuple[int, ...]) -> int | None:
    """The network scale for a (width, height) `src` -> `dst` resize: an exact factor the model has,
    else the smallest that reaches `dst` on both axes, else the largest; None when `dst` is no larger
    than `src` on both axes (no network)."""
    (sw, sh), (dw, dh) = src, dst
    if dw <= sw and dh <= sh:
        return None
    for r in sorted(scales):
        if (sw * r, sh * r) == (dw, dh):
            return r
    reaching = [r for r in sorted(scales) if sw * r >= dw and sh * r >= dh]
    return reaching[0] if reaching else max(scales)


class ESPCN(Scaler):
    """ESPCN super-resolution as a `vskernels.Scaler` (luma: the network; chroma: `scaler`).

    Example:
        ```py
        from vs_espcn.jetpack import ESPCN

        doubled = ESPCN().supersample(clip, 2)
        hd = ESPCN(model="anime").scale(clip, 1920, 1080)
        ```
    """

    _static_kernel_radius = 4
    """The shipped networks' receptive radius in LR pixels (Conv kernels 5, 3, 3)."""

    def __init__(
        self,
        *,
        model: str = "",
        kernel: KernelLike = Catrom,
        scaler: ScalerLike | None = None,
        **upscale_args: Any,
    ) -> None:
        """Configure the scaler; every argument is keyword-only, as in vsscale.

        Args:
            model: `""`/`"natural"` (the photo models x2/x3/x4), `"anime"` (line art, x2), `"manga"`
                (screentone manga, x2), or a path to an ONNX exported by the trainer (its own scale only).
            kernel: The kernel for the chroma and for the step from the network's size to the target.
                Defaults to Catrom, as vsscale's scalers do.
            scaler: The scaler for those steps when it should differ from `kernel`.
            **upscale_args: Passed to `core.espcn.Upscale` as they are (`backend`, `threads`,
                `tilesize`, `clamp`, `fp16`, `num_streams`, `cache_dir`, ...).
        """
        self.model = model
        self.kernel = Kernel.ensure_obj(kernel, self.__class__)
        self.scaler = Scaler.ensure_obj(scaler or self.kernel, self.__class__)
        self.upscale_args = dict(upscale_args)
        self.scales = network_scales(model)
        super().__init__()

    def scale(
        self,
        clip: vs.VideoNode,
        width: int | None = None,
        height: int | None = None,
        shift: tuple[float, float] = (0, 0),
        **kwargs: Any,
    ) -> vs.VideoNode:
        """Scale `clip` to `width` x `height` (defaults: the clip's size).

        Args:
            clip: GRAY or YUV, any format `core.espcn.Upscale` takes.
            width: Target width.
            height: Target height.
            shift: (top, left) subpixel shift in source pixels, applied by the kernel steps.
            **kwargs: Passed to `core.espcn.Upscale` for this call, over the constructor's.

        Returns:
            The scaled clip, with the source's frame properties.
        """
        width, height = self._wh_norm(clip, width, height)
        r = pick_scale((clip.width, clip.height), (width, height), self.scales)
        if r is None:
            return self.scaler.scale(clip, width, height, shift)
        yuv = clip.format.color_family == vs.YUV
        y = clip.std.ShufflePlanes(0, vs.GRAY) if yuv else clip  # RGB & co. get Upscale's own error
        args = {"model": self.model} | self.upscale_args | kwargs
        luma = vs.core.espcn.Upscale(y, r, **args)
        if (luma.width, luma.height) != (width, height) or any(shift):
            luma = self.scaler.scale(luma, width, height, (shift[0] * r, shift[1] * r))
        if not yuv:
            return luma
        chroma = self.scaler.scale(clip, width, height, shift)
        return vs.core.std.ShufflePlanes([luma, chroma, chroma], [0, 1, 2], vs.YUV)

    @property
    def pretty_string(self) -> str:
        """`ESPCN(model=..., kernel=..., ...)` for logs and `str()`."""
        return self._pretty_string(model=repr(self.model), kernel=self.kernel, **self.upscale_args)
