#!/usr/bin/env bash
# vspipe -> ffmpeg: upscale a video x2 with ESPCN and encode it with x264.
#   examples/vspipe_ffmpeg.sh input.mp4 output.mkv [scale]
# vspipe writes y4m to stdout (progress goes to stderr); ffmpeg reads it from the pipe.
# vspipe: $VSPIPE, else `vspipe` on PATH, else the repository's .venv/bin/vspipe.
# ffmpeg: $FFMPEG, else `ffmpeg` on PATH, else the binary of the imageio-ffmpeg package
#         (pip install imageio-ffmpeg) in the Python that vspipe sits beside.
set -euo pipefail
src=${1:?usage: $0 input output.mkv [scale]}
out=${2:?usage: $0 input output.mkv [scale]}
here=$(cd "$(dirname "$0")" && pwd)
vspipe=${VSPIPE:-$(command -v vspipe || echo "$here/../.venv/bin/vspipe")}
ffmpeg=${FFMPEG:-$(command -v ffmpeg || "$(dirname "$vspipe")/python" -c \
  'import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())')}
"$vspipe" -c y4m -a "src=$src" -a "scale=${3:-2}" "$here/upscale.vpy" - \
  | "$ffmpeg" -hide_banner -loglevel error -y -i - -c:v libx264 -crf 16 -preset veryfast "$out"
