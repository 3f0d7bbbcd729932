"""Many windows of one recording from one decoding pass.

A conversation video holds hundreds of utterance windows. Decoding each window on its own
repeats the demux of the whole file, and the run-up from the governing keyframe, for every
window (x264's default GOP is 250 frames). Here the frame times of every window that reads
the same file are gathered, sorted and served by one forward pass per decoding thread: the
GOPs that hold sampled times are dealt to the threads in turn (GOPs decode independently,
and two single-threaded decoders outrun one frame-threaded decoder by about 1.5x on 2
cores), and each thread seeks ahead only over GOPs that are not its own. A decoded frame that
some window samples is resized once and handed to every window that wants it; each window is
delivered as soon as its last frame is decoded, so only the windows in progress are held. The
frames are those a per-window decode in exact mode gives, pixel for pixel.
"""
from __future__ import annotations

import math
import os
import queue
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress

import av

from mllm_mer.core.types import MODALITIES, MediaSettings, Sample
from mllm_mer.media.audio import shared_tracks
from mllm_mer.media.decode import (
    Frames,
    Window,
    decode_cheaply,
    decoders,
    file_key,
    fit_size,
    frames_key,
    governing_keyframe,
    open_video,
    sample_window,
    window_targets,
)
from mllm_mer.media.errors import MediaError
from mllm_mer.media.frame_cache import media_cache
from mllm_mer.media.frontend import active as front_end_active
from mllm_mer.media.plans import drop_passes, plan_passes, take_pass


def decode_windows(path: str, windows: Sequence[Window], max_pixels: int | None, workers: int | None = None
                   ) -> Iterator[tuple[int, Frames | MediaError]]:
    """(index, frames) for each window, in the order they complete; a window with nothing to sample
    (or whose frames could not be decoded) gets its MediaError instead. `workers`: decoding threads
    (default: `video.decoders()`)."""
    container, stream, info = open_video(path)
    with container:
        out_w, out_h = fit_size(info.width, info.height, max_pixels)
        wanted: dict[float, list[tuple[int, int]]] = {}  # time -> (window, slot)
        slots: dict[int, list] = {}
        sampled: dict[int, list[float]] = {}  # window -> the times it samples
        for i, window in enumerate(windows):
            try:
                targets = window_targets(path, info, window.n, window.fps, window.start, window.end,
                                         window.keyframe_snap)
            except MediaError as error:
                yield i, error
                continue
            slots[i] = [None] * len(targets)
            sampled[i] = targets
            for k, t in enumerate(targets):
                wanted.setdefault(t, []).append((i, k))
        remaining = {i: len(s) for i, s in slots.items()}
        approximate = all(w.keyframe_snap > 0 for w in windows)  # as video._decode_at in that mode
        targets = sorted(wanted)
        gops = _gop_runs(targets, info)
        workers = min(workers or decoders(), len(gops))
        if workers <= 1:  # one thread: the codec's own frame threads
            decoded = _decode_forward(container, stream, info, targets, out_w, out_h, approximate)
        else:
            decoded = _decode_in_parallel(path, info, gops, workers, out_w, out_h, approximate)
        for t, image, time in decoded:
            for i, k in wanted[t]:
                slots[i][k] = (image, time)
                remaining[i] -= 1
                if remaining[i] == 0:
                    yield i, _frames(slots.pop(i), info)
    for i, got in slots.items():  # a damaged tail: each window keeps what decoded before it
        decoded = [x for x in got if x is not None]
        missing = tuple(t for t, x in zip(sampled[i], got, strict=True) if x is None)
        yield i, _frames(decoded, info, missing) if decoded else MediaError(path, "no frame could be decoded")


def _frames(decoded: list[tuple], info, missing: tuple[float, ...] = ()) -> Frames:
    return Frames(tuple(image for image, _ in decoded), tuple(t for _, t in decoded), info.rate, info.duration,
                  info.declared, missing)


def _gop_runs(targets: list[float], info) -> list[list[float]]:
    """Sorted targets grouped by the keyframe that governs them, in time order."""
    keyframes, gops = list(info.keyframes), {}
    for t in targets:
        gops.setdefault(governing_keyframe(keyframes, t, info.rate), []).append(t)
    return [gops[key] for key in sorted(gops)]


class _GopDealer:
    """`_decode_forward` over GOP runs, dealt to `workers` threads in turn, each with its own container
    (PyAV releases the GIL while decoding); the frames come back as they are decoded.

    A thread starts a GOP only when every GOP `2 * workers` before it is done, so the threads move
    through the file side by side: windows complete roughly in time order and few are held half-done.
    """

    def __init__(self, path: str, info, gops: list[list[float]], workers: int, size: tuple[int, int],
                 approximate: bool):
        self.path, self.info, self.gops, self.workers = path, info, gops, workers
        self.size, self.approximate = size, approximate
        self.found: queue.Queue = queue.Queue(maxsize=64)  # bounded: a paused reader pauses the threads
        self.stop = threading.Event()
        self.done = [False] * len(gops)
        self.progress = threading.Condition()

    def finish(self, gop_indices) -> None:
        with self.progress:
            for g in gop_indices:
                self.done[g] = True
            self.progress.notify_all()

    def work(self, first: int) -> None:
        mine = range(first, len(self.gops), self.workers)
        try:
            with av.open(self.path) as container:
                stream = container.streams.video[0]
                stream.thread_type = "NONE"  # the threads are the parallelism
                for g in mine:
                    with self.progress:
                        self.progress.wait_for(lambda g=g: self.stop.is_set()
                                               or all(self.done[:max(0, g - 2 * self.workers + 1)]))
                    if self.stop.is_set():
                        return
                    for item in _decode_forward(container, stream, self.info, self.gops[g], *self.size,
                                                self.approximate):
                        if self.stop.is_set():
                            return
                        self.found.put(item)
                    self.finish([g])
        except Exception as error:  # the reader raises it
            self.found.put(error)
        finally:
            self.finish(mine)  # never leave another thread waiting on this one
            self.found.put(None)

    def results(self):
        threads = [threading.Thread(target=self.work, args=(w,), name="window-decode", daemon=True)
                   for w in range(self.workers)]
        started = []
        try:
            for thread in threads:
                thread.start()
                started.append(thread)
            running = len(threads)
            while running:
                item = self.found.get()
                if item is None:
                    running -= 1
                elif isinstance(item, Exception):
                    raise item
                else:
                    yield item
        finally:
            self.stop.set()
            self.finish([])
            for thread in started:  # drain, so that no thread stays blocked on a full queue
                while thread.is_alive():
                    with suppress(queue.Empty):
                        self.found.get(timeout=0.05)
                thread.join()


def _decode_in_parallel(path: str, info, gops: list[list[float]], workers: int, out_w: int, out_h: int,
                        approximate: bool):
    return _GopDealer(path, info, gops, workers, (out_w, out_h), approximate).results()


def _decode_forward(container, stream, info, targets: list[float], out_w: int, out_h: int,
                    approximate: bool = False):
    """(target, image, frame time) for sorted targets, decoding forward and seeking only to a
    keyframe past the frames decoded so far. The frame for a target is the first one shown at or
    after it (half a frame's tolerance), as `video._decode_at` chooses; frames no other frame
    references are skipped by the decoder while the next target is far ahead (always, when
    `approximate`, which also skips deblocking: `video.decode_cheaply`)."""
    if approximate:
        decode_cheaply(stream)
    keyframes, rate = list(info.keyframes), info.rate
    half, lead = 0.5 / rate, max(8.0 / rate, 0.3)
    codec = stream.codec_context
    position, frames, current, image = -math.inf, None, None, None
    try:
        for t in targets:
            key = governing_keyframe(keyframes, t, rate)
            if frames is None or key > position:
                codec.skip_frame = "NONREF" if approximate or t - key > lead else "DEFAULT"
                container.seek(int(key / stream.time_base), stream=stream, backward=True)
                frames, current = container.decode(stream), None
            while current is None or current.time + half < t:
                frame = next(frames, None)
                if frame is None:
                    return
                if frame.time is None:
                    continue
                position, current, image = frame.time, frame, None
                codec.skip_frame = "NONREF" if approximate or t - frame.time > lead else "DEFAULT"
            if image is None:
                image = current.to_image(width=out_w, height=out_h)
            yield t, image, round(float(current.time), 3)
    except av.error.FFmpegError:
        return  # keep what decoded; a damaged tail loses only its own frames
    finally:
        codec.skip_frame = "DEFAULT"


HELD_WINDOWS = 32  # decoded windows that may wait for their readers before a shared pass pauses


class SharedPass:
    """The planned windows of one file, decoded in one pass (a thread of its own) on first demand.

    Each window's frames wait for their reader and are dropped once read. The pass pauses while
    `held` windows wait unread and no reader waits for a window still to come, so memory follows
    the readers (inference), not the decoder; a waiting reader always lets it go on, so readers in
    any order cannot stall it. With several decoding threads a few GOPs' windows may complete
    ahead of the one a reader waits for, and are held too.
    """

    def __init__(self, path: str, windows: Sequence[Window], max_pixels: int | None, held: int = HELD_WINDOWS,
                 workers: int | None = None):
        self.path, self.windows, self.max_pixels, self.held = path, list(windows), max_pixels, held
        self.workers = workers  # decoding threads (decode_windows)
        self._results: dict[Window, Frames | Exception] = {}  # decoded, not yet read
        self._published: set[Window] = set()
        self._wanted: set[Window] = set()  # windows readers are waiting for
        self._forgotten: set[Window] = set()  # windows whose readers will not come (their sample failed first)
        self._closed = False
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        try:
            for i, result in decode_windows(self.path, self.windows, self.max_pixels, self.workers):
                if not self._publish(self.windows[i], result):
                    return  # closed: nobody reads the rest
        except Exception as error:  # the file itself failed: every window not yet served gets the reason
            self._publish_missing(error)
        self._publish_missing(MediaError(self.path, "no frame could be decoded"))  # never leave a reader waiting

    def _publish(self, window: Window, result) -> bool:
        """Hand a window over, then wait while enough are held and nobody waits; False once closed."""
        with self._changed:
            if window not in self._forgotten:
                self._results[window] = result
            self._published.add(window)
            self._changed.notify_all()
            while (len(self._results) >= self.held and not self._closed
                   and self._wanted <= self._published):
                self._changed.wait()
            return not self._closed

    def _publish_missing(self, error: Exception) -> None:
        with self._changed:
            for w in self.windows:
                if w not in self._published:
                    self._results[w] = error
                    self._published.add(w)
            self._changed.notify_all()

    def frames(self, window: Window) -> Frames | None:
        """The window's frames, once decoded; None when the pass was closed before it decoded them
        (the caller decodes the window alone)."""
        with self._changed:
            if self._thread is None and not self._closed:
                thread = threading.Thread(target=self._run, name="shared-decode", daemon=True)
                thread.start()
                self._thread = thread
            self._wanted.add(window)
            self._changed.notify_all()
            try:
                while window not in self._results:
                    if window in self._published:
                        raise RuntimeError(f"window {window} of {self.path} was read twice")
                    if self._closed:
                        return None
                    self._changed.wait()
            finally:
                self._wanted.discard(window)
            result = self._results.pop(window)
            self._changed.notify_all()
        if isinstance(result, Exception):
            raise result
        return result

    def forget(self, window: Window) -> None:
        """Nobody will read `window`: drop its frames, so that they do not count as held."""
        with self._changed:
            self._forgotten.add(window)
            self._results.pop(window, None)
            self._changed.notify_all()

    def close(self) -> None:
        """Stop decoding windows nobody has read, and wait for the pass to end."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join()


def unplan(path: str, window: Window, max_pixels: int | None) -> None:
    """A sample that failed before reading its frames: its planned window will not be read."""
    shared = take_pass((file_key(path), window, max_pixels))
    if shared is not None:
        shared.forget(window)


@contextmanager
def shared_windows(samples: Sequence[Sample], settings: MediaSettings,
                   modalities: Sequence[str] = MODALITIES):
    """While the block runs, windows of a file that two or more of `samples` read are decoded in one
    pass per file, on first demand (see the module's doc); their sound from one open file."""
    cache = media_cache(settings.media_cache_gb)
    by_file: dict[str, list[Window]] = {}
    if "video" in modalities and not front_end_active(settings):  # the front end decodes its own candidates
        for s in samples:
            if s.video and not s.frames and os.path.isfile(s.video):
                windows = by_file.setdefault(s.video, [])
                window = sample_window(s, settings)
                cached = cache is not None and cache.has(frames_key(s.video, window, settings.max_pixels))
                if window not in windows and not cached:
                    windows.append(window)
    sounds: dict[str, int] = {}  # sound: one open file per recording, as frames come from one pass
    if "audio" in modalities or "text" in modalities:
        for s in samples:
            sound = s.audio or s.video
            if sound and (s.start is not None or s.end is not None):
                sounds[sound] = sounds.get(sound, 0) + 1
    passes = [SharedPass(path, windows, settings.max_pixels) for path, windows in by_file.items() if len(windows) > 1]
    plan_passes({(file_key(shared.path), w, settings.max_pixels): shared for shared in passes
                 for w in shared.windows})
    try:
        with shared_tracks([path for path, n in sounds.items() if n > 1]):
            yield
    finally:
        drop_passes(passes)
        for shared in passes:
            shared.close()
