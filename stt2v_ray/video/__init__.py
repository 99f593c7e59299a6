"""Frame-level output: tensor <-> uint8 conversion, frame interpolation, MP4 encode/decode."""

from stt2v_ray.video.decode import count_frames, read_video
from stt2v_ray.video.encode import Mp4Writer, ffmpeg_exe
from stt2v_ray.video.frames import center_crop_resize, from_uint8, load_image, resize_frames, to_uint8
from stt2v_ray.video.interpolate import FlowInterpolator, Interpolator, StreamingInterpolator, interpolate_video

__all__ = [
    "FlowInterpolator",
    "Interpolator",
    "Mp4Writer",
    "StreamingInterpolator",
    "center_crop_resize",
    "count_frames",
    "ffmpeg_exe",
    "from_uint8",
    "interpolate_video",
    "load_image",
    "read_video",
    "resize_frames",
    "to_uint8",
]
