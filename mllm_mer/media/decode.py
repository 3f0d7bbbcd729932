"""Decoding primitives shared by per-window reading (`video`), the shared pass (`windows`) and audio:
opening a file, a video's index (keyframes, readable length), the times a window samples, frame sizes."""
from __future__ import annotations

import bisect
import math
import os
import stat
import threading
from collections import OrderedDict
from dataclasses import dataclass

import av

from mllm_mer.core.types import MediaSettings, Sample
from mllm_mer.media.errors import MediaError, WindowOutside

MAX_SOURCE_PIXELS = 3840 * 2160  # larger sources are refused (decoding cost, decompression bombs)
MAX_DECODE_THREADS = 4  # per clip; batches of clips gain more from parallel clips than from more threads


def decoders() -> int:
    """Threads one clip's independent GOP runs decode on."""
    return min(os.cpu_count() or 1, MAX_DECODE_THREADS)


def decode_cheaply(stream) -> None:
    """Approximate mode: skip the in-loop deblocking filter, before the codec opens.

    It is about a fifth of H.264/HEVC decoding at usual bitrates. The frames drift slightly from
    the exact ones (37 dB PSNR or more at the model's resolution on a crf 28 encode with 250-frame
    GOPs, see benchmarks.long_media); codecs without the option ignore it.
    """
    stream.codec_context.options = {"skip_loop_filter": "all"}


@dataclass(frozen=True)
class Frames:
    images: tuple  # PIL images, RGB, time order
    times: tuple[float, ...]  # seconds from the start of the file
    fps: float
    duration: float  # seconds of the file that can be read
    declared: float | None = None  # seconds the container says it holds (more when the file was cut short)
    missing: tuple[float, ...] = ()  # sampled times no frame could be decoded for (a damaged stream)

    def damage_note(self, name: str) -> str | None:
        """What a damaged stream cost this window, for the sample's notes (None when every frame decoded)."""
        if not self.missing:
            return None
        got, wanted = len(self.images), len(self.images) + len(self.missing)
        return (f"{name}: damaged, read {self.missing[0]:.1f} s of {self.duration:.1f} s, "
                f"{got} frame{'s' if got != 1 else ''} of {wanted}")


def sample_times(duration: float, n: int, fps: float | None = None, start: float | None = None,
                 end: float | None = None) -> list[float]:
    """Times to sample: n uniform (centres of n equal spans), or every 1/fps s (at most n)."""
    if fps is not None and not (math.isfinite(fps) and fps >= 0):
        raise ValueError(f"fps must be a finite number of frames a second, not {fps}")
    lo = max(0.0, start or 0.0)
    hi = min(duration, end) if end is not None else duration
    if hi <= lo:
        return []
    if fps:
        step = 1.0 / fps
        count = min(n, max(1, int((hi - lo) * fps)))
        return [lo + (i + 0.5) * step for i in range(count)]
    span = (hi - lo) / n
    return [lo + (i + 0.5) * span for i in range(n)]


def check_regular_file(path: str) -> None:
    """A MediaError saying what the path is when it is not a readable regular file (a folder, a FIFO or a
    device would block or never end when read)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise MediaError(path, "file not found") from None
    except OSError as error:
        raise MediaError(path, f"cannot be read ({error.strerror})") from None
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    for test, kind in kinds:
        if test(mode):
            raise MediaError(path, f"is {kind}, not a media file")


def open_media(path: str):
    check_regular_file(path)
    if os.path.getsize(path) == 0:
        raise MediaError(path, "empty file (0 bytes)")
    try:
        return av.open(path)
    except (av.error.InvalidDataError, av.error.FFmpegError, UnicodeDecodeError) as error:
        raise MediaError(path, f"not a readable media file ({error.__class__.__name__}: {error})") from None


def fit_size(width: int, height: int, max_pixels: int | None) -> tuple[int, int]:
    if not max_pixels or width * height <= max_pixels:
        return width, height
    scale = math.sqrt(max_pixels / (width * height))
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def file_key(path: str) -> tuple[str, int, int]:
    """A file version: (absolute path, mtime, size); an edited file is another key."""
    stat = os.stat(path) if os.path.exists(path) else None
    return os.path.abspath(path), stat.st_mtime_ns if stat else 0, stat.st_size if stat else -1


def snap_to_keyframes(targets: list[float], keyframes: list[float], tolerance: float) -> list[float]:
    """Move each target onto the nearest keyframe within `tolerance` s, never onto one already used."""
    used: set[float] = set()
    snapped = []
    for t in targets:
        i = bisect.bisect_left(keyframes, t)
        near = [k for k in keyframes[max(0, i - 1):i + 1] if abs(k - t) <= tolerance and k not in used]
        best = min(near, key=lambda k: abs(k - t)) if near else t
        if near:
            used.add(best)
        snapped.append(best)
    return snapped


@dataclass(frozen=True)
class VideoInfo:
    """What one demux pass learns about a file's video stream (no frame decoded)."""

    width: int
    height: int
    rate: float
    duration: float  # seconds that can be read
    declared: float | None  # seconds the container says it holds
    keyframes: tuple[float, ...]


INDEXES: OrderedDict[tuple, VideoInfo] = OrderedDict()  # file version -> its index, most recent last
INDEX_SIZE = 64
INDEX_LOCK = threading.Lock()


def open_video(path: str):
    """The container, its video stream (frame-threaded) and its `VideoInfo`; MediaError for a file
    without a usable video stream. The caller closes the container.

    The index (keyframes, readable length) needs the whole file demuxed: 0.4 s for 10 minutes of
    720p. It is kept per file version in this process, so windows read one at a time (the agent's
    looks, the app) demux a long recording once.
    """
    container = open_media(path)
    try:
        if not container.streams.video:
            raise MediaError(path, "no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        width, height = stream.codec_context.width, stream.codec_context.height
        if width * height > MAX_SOURCE_PIXELS:
            raise MediaError(path, f"resolution {width}x{height} exceeds the limit of {MAX_SOURCE_PIXELS} pixels")
        key = file_key(path)
        with INDEX_LOCK:
            info = INDEXES.get(key)
            if info is not None:
                INDEXES.move_to_end(key)
        if info is None:
            rate = float(stream.average_rate or stream.guessed_rate or 25)
            declared = container.duration / 1_000_000 if container.duration else None  # AV_TIME_BASE units
            keyframes, last = keyframe_times(container, stream, path)
            duration = last + 1.0 / rate if last is not None else 0.0
            info = VideoInfo(width, height, rate, duration, declared, tuple(keyframes))
            with INDEX_LOCK:
                INDEXES[key] = info
                while len(INDEXES) > INDEX_SIZE:
                    INDEXES.popitem(last=False)
    except BaseException:
        container.close()
        raise
    return container, stream, info


def window_targets(path: str, info: VideoInfo, n: int, fps: float | None, start: float | None, end: float | None,
                   keyframe_snap: float = 0.0) -> list[float]:
    """The times one window samples (snapped onto keyframes when allowed); WindowOutside or MediaError
    when there is nothing to sample."""
    targets = sample_times(info.duration, n, fps, start, end)
    # A window that starts within the last frame's last half (3.3-5.0 s on a 3.303 s clip) holds no frame that
    # decoding would pick (see video.decode_at): it lies past the end as much as one starting after it.
    if targets and start is not None and info.duration and info.rate and targets[0] > info.duration - 0.5 / info.rate:
        targets = []
    if not targets and info.duration and start is not None:
        until = end if end is not None else info.duration
        raise WindowOutside(path, f"no frames in the window {start:.1f}-{until:.1f} s (the video holds "
                                  f"{info.duration:.1f} s)")
    if not targets:
        raise MediaError(path, "no frames in the requested window" if info.duration else "zero-length video")
    if keyframe_snap > 0 and len(targets) > 1:
        targets = snap_to_keyframes(targets, list(info.keyframes), keyframe_snap * (targets[1] - targets[0]))
    return targets


def keyframe_times(container, stream, path) -> tuple[list[float], float | None]:
    keyframes: list[float] = []
    last = None
    try:
        for packet in container.demux(stream):
            if packet.pts is None:
                continue
            t = float(packet.pts * packet.time_base)
            if packet.is_keyframe:
                keyframes.append(t)
            last = t if last is None else max(last, t)
    except av.error.FFmpegError as error:
        raise MediaError(path, f"corrupt video stream ({error})") from None
    return sorted(keyframes) or [0.0], last


def governing_keyframe(keyframes: list[float], t: float, rate: float) -> float:
    return keyframes[max(0, bisect.bisect_right(keyframes, t + 0.5 / rate) - 1)]


def decode_all(path: str) -> int:
    """The naive baseline the media benchmark compares against: every frame decoded to RGB
    (what reading a whole clip into an array and then indexing it does)."""
    with open_media(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return sum(1 for frame in container.decode(stream) if frame.to_ndarray(format="rgb24") is not None)


@dataclass(frozen=True)
class Window:
    """One sample's view of a file: which span, how many frames, how exact."""

    n: int
    fps: float | None = None
    start: float | None = None
    end: float | None = None
    keyframe_snap: float = 0.0


DECODING = 2  # raise when the same settings decode other pixels (2: approximate mode skips deblocking)


def frames_key(path: str, window: Window, max_pixels: int | None) -> tuple:
    """The media cache's key for a window's frames (media.frame_cache)."""
    return ("frames", DECODING, file_key(path), window.n, window.fps, window.start, window.end, max_pixels,
            window.keyframe_snap)


def check_times(sample: Sample) -> None:
    """An utterance window must be seconds from the start, in order: NaN, negative or reversed times
    are the sample's failure, not a silent whole-file read."""
    times = [t for t in (sample.start, sample.end) if t is not None]
    bad = any(isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0 for t in times)
    if bad or (sample.start is not None and sample.end is not None and sample.end <= sample.start):
        raise MediaError(sample.video or sample.audio or sample.physio or sample.id,
                         f"start {sample.start!r} and end {sample.end!r} must be seconds, start before end")


def sample_window(sample: Sample, settings: MediaSettings) -> Window:
    return Window(settings.max_frames, settings.fps, sample.start, sample.end, settings.keyframe_snap)
