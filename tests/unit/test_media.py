"""Media stage on clips the tests write: the right frames, audio, cues, and clear errors."""
import os
import wave

import numpy as np
import pytest

from mllm_mer.core.types import Sample
from mllm_mer.media import MediaError, MediaSettings, load_media
from mllm_mer.media.audio import SAMPLE_RATE, load_audio
from mllm_mer.media.cues import vocal_cues
from mllm_mer.media.video import read_frames
from mllm_mer.synthetic.media import frame_index, write_clip, write_wav


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("clips") / "clip.mp4", seconds=4, fps=10, gop=5)


def _indices(frames):
    return [frame_index(np.asarray(im)[2, 2]) for im in frames.images]


def test_uniform_sampling_returns_the_frames_at_their_times(clip):
    frames = read_frames(str(clip), n=8)
    assert len(frames.images) == 8 and frames.fps == 10 and frames.duration == pytest.approx(4.0)
    assert _indices(frames) == [round(t * 10) for t in frames.times]
    assert list(frames.times) == sorted(frames.times)
    # one frame from each eighth of the clip
    assert [int(t // 0.5) for t in frames.times] == list(range(8))


def test_window_sampling_stays_inside_the_window(clip):
    frames = read_frames(str(clip), n=5, start=1.0, end=2.0)
    assert len(frames.images) == 5
    assert all(1.0 <= t < 2.0 for t in frames.times)
    assert _indices(frames) == [round(t * 10) for t in frames.times]


def test_fps_sampling(clip):
    frames = read_frames(str(clip), n=100, fps=2)
    assert len(frames.images) == 8
    assert np.allclose(np.diff(frames.times), 0.5, atol=0.11)


def test_frames_are_downscaled_to_the_pixel_budget(tmp_path):
    path = write_clip(tmp_path / "big.mp4", seconds=1, fps=5, size=(640, 480), audio=False)
    frames = read_frames(str(path), n=2, max_pixels=160 * 120)
    assert frames.images[0].size[0] * frames.images[0].size[1] <= 160 * 120


def test_a_clip_is_decoded_once_per_settings(clip):
    assert read_frames(str(clip), n=3) is read_frames(str(clip), n=3)
    assert read_frames(str(clip), n=3) is not read_frames(str(clip), n=4)


def test_audio_track_is_extracted_at_16k_mono(clip):
    audio = load_audio(str(clip))
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.size / SAMPLE_RATE - 4.0) < 0.1
    window = load_audio(str(clip), 1.0, 2.0)
    assert abs(window.size / SAMPLE_RATE - 1.0) < 0.02


def test_cues_follow_the_signal(tmp_path):
    quiet = vocal_cues(load_audio(str(write_wav(tmp_path / "q.wav", tone_hz=200, amplitude=0.02))))
    loud = vocal_cues(load_audio(str(write_wav(tmp_path / "l.wav", tone_hz=200, amplitude=0.5))))
    high = vocal_cues(load_audio(str(write_wav(tmp_path / "h.wav", tone_hz=400, amplitude=0.5))))
    assert loud.loudness_db > quiet.loudness_db + 20
    assert loud.pitch_median_hz == pytest.approx(200, rel=0.03)
    assert high.pitch_median_hz == pytest.approx(400, rel=0.03)
    half_silent = np.concatenate([load_audio(str(tmp_path / "l.wav")), np.zeros(SAMPLE_RATE, np.float32)])
    assert vocal_cues(half_silent).pause_ratio == pytest.approx(0.5, abs=0.05)
    rated = vocal_cues(load_audio(str(tmp_path / "l.wav")), transcript="one two three four")
    assert rated.speech_rate_wps == pytest.approx(4.0, rel=0.1)
    assert "400 Hz" in high.describe()


def test_load_media_for_a_clip_gives_frames_and_vocal_cues(clip):
    media = load_media(Sample(id="c", video=str(clip), transcript="hi"), MediaSettings(max_frames=4))
    assert len(media.frames) == 4 and len(media.frame_times) == 4
    assert media.vocal_cues and media.fps == 10  # a tone is no speech: the cues say so (test_frontend has speech)


def test_video_without_audio_still_gives_frames(tmp_path):
    path = write_clip(tmp_path / "mute.mp4", seconds=1, audio=False)
    media = load_media(Sample(id="m", video=str(path)), MediaSettings(max_frames=2))
    assert len(media.frames) == 2 and media.vocal_cues is None


def test_audio_only_input_gives_cues_and_no_frames(tmp_path):
    path = write_wav(tmp_path / "a.wav", seconds=1)
    media = load_media(Sample(id="a", audio=str(path)), MediaSettings())
    assert media.frames == () and media.vocal_cues


def _expect_media_error(sample, fragment):
    with pytest.raises(MediaError) as info:
        load_media(sample, MediaSettings())
    message = str(info.value)
    assert fragment in message
    assert (sample.video or sample.audio or sample.image) in message  # names the file
    return message


def test_missing_file(tmp_path):
    _expect_media_error(Sample(id="x", video=str(tmp_path / "nope.mp4")), "file not found")


def test_zero_byte_file(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    _expect_media_error(Sample(id="x", video=str(tmp_path / "empty.mp4")), "empty file")


def test_corrupt_file(tmp_path):
    (tmp_path / "bad.mp4").write_bytes(os.urandom(4096))
    _expect_media_error(Sample(id="x", video=str(tmp_path / "bad.mp4")), "not a readable media file")


def test_unsupported_container(tmp_path):
    (tmp_path / "notes.mkv").write_text("this is just text, not a container\n" * 50)
    _expect_media_error(Sample(id="x", video=str(tmp_path / "notes.mkv")), "not a readable media file")


def test_huge_resolution_is_refused(tmp_path):
    path = write_clip(tmp_path / "huge.mp4", seconds=0.2, fps=5, size=(4096, 2160), audio=False)
    _expect_media_error(Sample(id="x", video=str(path)), "exceeds the limit")


def test_zero_length_clip(tmp_path):
    path = write_clip(tmp_path / "zero.mp4", seconds=0, audio=False)
    _expect_media_error(Sample(id="x", video=str(path)), "zero-length")


def test_missing_audio_file(tmp_path):
    _expect_media_error(Sample(id="x", audio=str(tmp_path / "nope.wav")), "file not found")


def test_keyframe_snapping_takes_distinct_nearby_keyframes(clip):
    from mllm_mer.media.decode import snap_to_keyframes

    assert snap_to_keyframes([0.9, 1.1, 3.0], [0.0, 1.0, 2.0], tolerance=0.2) == [1.0, 1.1, 3.0]
    snapped = read_frames(str(clip), n=4, keyframe_snap=0.5)  # keyframes every 0.5 s (gop 5 at 10 fps)
    assert len(set(snapped.times)) == 4
    assert all(round(t * 10) % 5 == 0 for t in snapped.times)
    assert _indices(snapped) == [round(t * 10) for t in snapped.times]


def test_exact_frames_with_b_frames_decode_inparallel_runs(tmp_path):
    # x264 "veryfast" uses B-frames (reordered, some skipped on the run-up); 1 s GOPs give
    # the sampled times separate runs, which decode on separate threads.
    from mllm_mer.media.video import parallel_runs

    path = write_clip(tmp_path / "bframes.mp4", seconds=6, fps=10, gop=10, audio=False, preset="veryfast")
    frames = read_frames(str(path), n=6)
    assert _indices(frames) == [round(t * 10) for t in frames.times] == [5, 15, 25, 35, 45, 55]
    runs = parallel_runs([float(k) for k in range(6)], [0.5 + k for k in range(6)], rate=10.0, workers=2)
    assert len(runs) == 2 and sorted(t for run in runs for t in run) == [0.5 + k for k in range(6)]
    assert parallel_runs([0.0], [0.2, 0.4, 0.6], rate=10.0, workers=2) == [[0.2, 0.4, 0.6]]  # one GOP, one run


def test_the_pipeline_snaps_to_nearby_keyframes_by_default(tmp_path):
    path = write_clip(tmp_path / "long.mp4", seconds=8, fps=10, gop=12, audio=False)  # keyframes every 1.2 s
    # sampled at 1, 3, 5, 7 s; a keyframe within 0.5 s (a quarter of the interval) is taken instead
    media = load_media(Sample(id="s", video=str(path)), MediaSettings(max_frames=4))
    assert tuple(media.frame_times) == (1.2, 3.0, 4.8, 7.2)
    exact = load_media(Sample(id="s", video=str(path)), MediaSettings(max_frames=4, keyframe_snap=0))
    assert tuple(exact.frame_times) == (1.0, 3.0, 5.0, 7.0)


def test_one_pass_over_many_windows_gives_the_frames_of_per_window_decoding(tmp_path):
    """A long-GOP clip with moving content: every window served by the shared pass (on one thread or on
    two) equals, pixel for pixel, the same window decoded on its own (exact times); windows past the end
    fail as they would alone."""
    from mllm_mer.media.decode import Window
    from mllm_mer.media.video import decode_window, file_key
    from mllm_mer.media.windows import decode_windows

    clip = str(write_clip(tmp_path / "talk.mp4", seconds=12.0, fps=25, size=(160, 96), texture=True, gop=250,
                          audio=False))
    windows = [Window(8, None, 0.0, 2.0), Window(8, None, 1.5, 2.5), Window(4, None, 3.0, 7.0),
               Window(8, None, 3.0, 7.0), Window(8, 2.0, 6.9, 9.0), Window(8, None, 10.0, 15.0),
               Window(8, None, 20.0, 22.0), Window(8, None, 0.0, 12.0)]
    one_thread = dict(decode_windows(clip, windows, 64 * 64, workers=1))
    shared = dict(decode_windows(clip, windows, 64 * 64, workers=2))  # the two GOPs on two threads
    assert sorted(shared) == sorted(one_thread) == list(range(len(windows)))
    for i in shared:
        if not isinstance(shared[i], Exception):
            assert shared[i].times == one_thread[i].times
            assert all(np.array_equal(np.asarray(a), np.asarray(b))
                       for a, b in zip(shared[i].images, one_thread[i].images, strict=True))
    for i, w in enumerate(windows):
        try:
            alone = decode_window(file_key(clip), w.n, w.fps, w.start, w.end, 64 * 64, 0.0)
        except MediaError as error:
            assert type(shared[i]) is type(error), (w, shared[i])
            continue
        got = shared[i]
        assert got.times == alone.times and len(got.images) == len(alone.images) > 0, w
        for a, b in zip(got.images, alone.images, strict=True):
            assert np.array_equal(np.asarray(a), np.asarray(b)), (w, got.times)


def test_load_media_serves_every_window_of_a_file_from_one_open(tmp_path, monkeypatch):
    from mllm_mer.media import video
    from mllm_mer.media.windows import shared_windows

    clip = str(write_clip(tmp_path / "episode.mp4", seconds=8.0, fps=20, size=(96, 64), texture=True, gop=250,
                          audio=False))
    samples = [Sample(id=f"u{i}", transcript="hi", video=clip, start=i * 0.9, end=i * 0.9 + 1.2) for i in range(8)]
    settings = MediaSettings(max_frames=4, keyframe_snap=0.0, vocal_cues=False)
    expected = [load_media(s, settings).frames for s in samples]
    video.decode_window.cache_clear()
    opened = []
    real_open = video.av.open
    monkeypatch.setattr(video.av, "open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    with shared_windows(samples, settings):
        got = [load_media(s, settings).frames for s in samples]
    decoders = len(opened) - len(samples)  # each sample still probes its file once (header only)
    assert decoders == 1, opened
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for g, e in zip(got, expected, strict=True)
               for a, b in zip(g, e, strict=True))


def test_utterance_sound_of_one_recording_opens_it_once_and_decodes_only_the_windows(tmp_path, monkeypatch):
    """A long recording's windows (a dialogue's turns): one open file, each window decoded alone, sample for
    sample what the whole track holds there (AAC too: the window's first frame gets its pre-roll)."""
    from mllm_mer.media import audio
    from mllm_mer.media.errors import WindowOutside

    pcm = np.random.default_rng(0).integers(-2**15, 2**15, 120 * SAMPLE_RATE, dtype=np.int16)  # each offset differs
    with wave.open(str(tmp_path / "two-minutes.wav"), "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(SAMPLE_RATE)
        out.writeframes(pcm.tobytes())
    wav = str(tmp_path / "two-minutes.wav")
    clip = str(write_clip(tmp_path / "talk.mp4", seconds=6.0, fps=10, tone_hz=220.0))
    opened, decoded = [], []
    real_open, real_decode = audio.open_media, audio._decode_until
    monkeypatch.setattr(audio, "open_media", lambda path: opened.append(path) or real_open(path))
    monkeypatch.setattr(audio, "_decode_until", lambda *a: decoded.append(got := real_decode(*a)) or got)
    with audio.shared_tracks([wav, clip]):
        for path, windows in ((wav, [(60.0, 62.0), (110.5, 111.0)]), (clip, [(0.5, 1.7), (3.33, 4.0)])):
            whole = pcm / np.float32(2**15) if path == wav else audio.decode_audio(path, None, None)
            opened.clear(), decoded.clear()
            for start, end in windows:
                window = audio.load_audio(path, start, end)
                assert np.array_equal(window, whole[round(start * SAMPLE_RATE):round(end * SAMPLE_RATE)])
            seconds = sum(c.size for chunks, _, _ in decoded for c in chunks) / SAMPLE_RATE
            assert opened == [path] and seconds < sum(e - s + 2 * audio.PREROLL for s, e in windows) + 0.2
        with pytest.raises(WindowOutside):
            audio.load_audio(clip, 8.0, 9.0)


def test_windows_read_one_at_a_time_demux_a_recording_once(tmp_path, monkeypatch):
    """The agent's looks and the app read windows of one long file one by one: the file's index is
    demuxed once per file version, and an edited file is indexed again."""
    from mllm_mer.media import decode

    clip = write_clip(tmp_path / "episode.mp4", seconds=6.0, fps=10, size=(64, 48), gop=250, audio=False)
    demuxed = []
    real = decode.keyframe_times
    monkeypatch.setattr(decode, "keyframe_times", lambda *a: demuxed.append(a[2]) or real(*a))
    for start in (0.0, 1.5, 3.0, 4.5):
        frames = read_frames(str(clip), n=4, start=start, end=start + 1.5, keyframe_snap=0.0)
        assert all(start <= t < start + 1.5 for t in frames.times)
    assert demuxed == [str(clip)]
    write_clip(clip, seconds=3.0, fps=10, size=(64, 48), gop=250, audio=False)  # edited in place: shorter
    assert read_frames(str(clip), n=4, keyframe_snap=0.0).duration == pytest.approx(3.0)
    assert len(demuxed) == 2


def test_approximate_mode_decodes_cheaply_and_stays_close_to_the_exact_frames(tmp_path):
    """Approximate times also skip the deblocking filter: at a time both modes sample, the frame is not
    bit-exact but stays within a few grey levels of it (PSNR > 30 dB)."""
    from mllm_mer.media.decode import Window
    from mllm_mer.media.windows import decode_windows

    clip = str(write_clip(tmp_path / "talk.mp4", seconds=8.0, fps=25, size=(320, 192), texture=True, gop=100,
                          audio=False, preset="veryfast", crf=30))

    def decoded(snap, workers):
        windows = [Window(4, None, 2.0 * i, 2.0 * i + 2.0, snap) for i in range(4)]
        return {t: np.asarray(im, float) for _, frames in decode_windows(clip, windows, None, workers)
                for im, t in zip(frames.images, frames.times, strict=True)}

    exact, approximate = decoded(0.0, 1), decoded(0.25, 1)
    on_two_threads = decoded(0.25, 2)  # two GOPs, one per thread: the same approximate frames
    assert on_two_threads.keys() == approximate.keys()
    assert all(np.array_equal(on_two_threads[t], approximate[t]) for t in approximate)
    errors = [((approximate[t] - exact[t]) ** 2).mean() for t in approximate if t in exact and t > 0.5]
    assert errors, "no time sampled by both modes"
    assert all(0 < e < 255 ** 2 / 10 ** 3 for e in errors), errors


def test_a_shared_pass_runs_only_a_few_windows_ahead_of_its_readers(tmp_path):
    """Memory follows the readers: a slow in-order reader finds at most `held` windows waiting (a few GOPs'
    more with two decoding threads); readers in reverse order still get every window; closing with
    windows unread ends the pass."""
    from mllm_mer.media.decode import Window
    from mllm_mer.media.windows import SharedPass

    clip = str(write_clip(tmp_path / "talk.mp4", seconds=12.0, fps=10, size=(64, 48), gop=15, audio=False))
    windows = [Window(2, None, i * 0.25, i * 0.25 + 0.25) for i in range(48)]  # 8 GOPs of 6 windows
    for workers, bound in ((1, 3), (2, 3 + 2 * 6)):
        shared = SharedPass(clip, windows, None, held=3, workers=workers)
        most = 0
        for w in windows[:24]:
            assert len(shared.frames(w).images) == 2
            # A slow reader (inference): the decoder runs ahead until `held` windows wait, then pauses. Waiting
            # on its condition for that state (not for a time) makes the reader as slow as it gets.
            with shared._changed:
                assert shared._changed.wait_for(lambda s=shared: len(s._results) >= 3, timeout=60)
            most = max(most, len(shared._results))
        assert 3 <= most <= bound, (workers, most)
        for w in reversed(windows[24:]):
            assert [round(t * 4 - 0.5) for t in shared.frames(w).times] == [windows.index(w)] * 2
        with pytest.raises(RuntimeError, match="read twice"):
            shared.frames(windows[0])
        shared.close()

    unread = SharedPass(clip, windows, None, held=2, workers=2)
    unread.frames(windows[0])
    unread.close()
    assert not unread._thread.is_alive() and len(unread._results) < len(windows) - 1
    assert unread.frames(windows[-1]) is None  # closed first: the caller decodes it alone

    import threading

    late = SharedPass(clip, windows, None, held=2, workers=1)  # readers still waiting when the plan closes
    got = []
    readers = [threading.Thread(target=lambda w=w: got.append(late.frames(w))) for w in windows[40:]]
    for reader in readers:
        reader.start()
    late.close()
    for reader in readers:
        reader.join(timeout=30)
    assert not any(reader.is_alive() for reader in readers) and len(got) == 8


def test_a_sample_that_fails_before_its_frames_leaves_no_window_held(tmp_path):
    """A sample whose companion audio is missing fails before reading its planned frames: the shared pass
    drops that window instead of holding it for a reader that never comes."""
    from mllm_mer.media import plans, windows

    clip = str(write_clip(tmp_path / "episode.mp4", seconds=6.0, fps=10, size=(64, 48), gop=250, audio=False))
    missing = str(tmp_path / "missing.wav")
    samples = [Sample(id=f"u{i}", transcript="hi", video=clip, start=i * 0.5, end=i * 0.5 + 0.5,
                      audio=missing if i % 2 == 0 else None) for i in range(12)]
    settings = MediaSettings(max_frames=2, keyframe_snap=0.0, vocal_cues=False)
    with windows.shared_windows(samples, settings):
        (shared,) = set(plans.PLANNED_PASSES.values())
        for s in samples:
            if s.audio:
                with pytest.raises(MediaError, match="not found"):
                    load_media(s, settings)
            else:
                assert len(load_media(s, settings).frames) == 2
        assert shared._results == {}
