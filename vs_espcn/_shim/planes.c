/*
 * planes.c: the per-pixel arithmetic of the frame path for integer planes, called from Python with
 * ctypes (vs_espcn/frames.py), so it runs without the GIL and in one pass instead of numpy's four.
 *
 *   espcn_decode: samples (uint8 / uint16) -> float32 network values, the plane mirrored outward by
 *                 `pad` pixels (numpy's "symmetric": the edge pixel repeated), v = code / divisor - offset
 *   espcn_encode: float32 network values -> samples, s = rint(clamp((v + offset) * divisor, lo, hi))
 *
 * Each step is the float32 operation numpy performs, in the same order (this file is built with
 * -std=c11, so no multiply-add is contracted), so the bytes equal the numpy path's.
 */
#include <stddef.h>
#include <stdint.h>

#define EXPORT __attribute__((visibility("default")))
/* 2^23: adding and subtracting it rounds a float in [0, 2^23) to the nearest integer, ties to even
 * (what np.rint does), in two vectorisable instructions instead of a libm call per pixel. */
#define ROUND_MAGIC 8388608.0f

/* Mirror index of i in [0, n) for numpy's "symmetric" pad (i may lie up to n outside on either side). */
static ptrdiff_t mirror(ptrdiff_t i, ptrdiff_t n) {
    while (i < 0 || i >= n) {
        if (i < 0)
            i = -i - 1;
        if (i >= n)
            i = 2 * n - i - 1;
    }
    return i;
}

/* src: h x w samples of `bytes` (1 or 2) with `stride` bytes per row; dst: (h+2pad) x (w+2pad) floats. */
EXPORT int espcn_decode(const uint8_t *src, ptrdiff_t stride, int w, int h, int bytes, float divisor,
                        float offset, int pad, float *dst) {
    if (w < 1 || h < 1 || pad < 0 || (bytes != 1 && bytes != 2))
        return -1;
    const ptrdiff_t dw = (ptrdiff_t)w + 2 * pad;
    for (ptrdiff_t y = 0; y < (ptrdiff_t)h + 2 * pad; y++) {
        const uint8_t *row = src + mirror(y - pad, h) * stride;
        float *out = dst + y * dw;
        for (ptrdiff_t x = 0; x < dw; x++) {
            ptrdiff_t sx = (x >= pad && x < pad + w) ? x - pad : mirror(x - pad, w);
            float code = bytes == 1 ? (float)row[sx] : (float)((const uint16_t *)row)[sx];
            out[x] = code / divisor - offset;
        }
    }
    return 0;
}

/* One encoded sample: rint(clamp((v + offset) * divisor, lo, hi)) with lo >= 0 and hi <= 65535, inside the
 * magic's range (IEEE float32 arithmetic: the compiler may not fold the two magic steps away). */
static inline uint32_t encode_one(float v, float offset, float divisor, float lo, float hi) {
    v = (v + offset) * divisor;
    v = v < lo ? lo : (v > hi ? hi : v);
    return (uint32_t)((v + ROUND_MAGIC) - ROUND_MAGIC);
}

/* src: h x w floats, `src_stride` floats per row; dst: h x w samples of `bytes`, `dst_stride` bytes per row. */
EXPORT int espcn_encode(const float *src, ptrdiff_t src_stride, int w, int h, float offset, float divisor,
                        float lo, float hi, uint8_t *dst, ptrdiff_t dst_stride, int bytes) {
    if (w < 1 || h < 1 || (bytes != 1 && bytes != 2) || !(lo >= 0.0f) || !(hi <= 65535.0f))
        return -1;
    for (ptrdiff_t y = 0; y < h; y++) {
        const float *row = src + y * src_stride;
        if (bytes == 1) {
            uint8_t *out = dst + y * dst_stride;
            for (ptrdiff_t x = 0; x < w; x++)
                out[x] = (uint8_t)encode_one(row[x], offset, divisor, lo, hi);
        } else {
            uint16_t *out = (uint16_t *)(dst + y * dst_stride);
            for (ptrdiff_t x = 0; x < w; x++)
                out[x] = (uint16_t)encode_one(row[x], offset, divisor, lo, hi);
        }
    }
    return 0;
}
