"""Planned media, named: the shared decoding passes and audio tracks a run has planned, by file.

This is the one piece of mutable module state in the media stage besides the caches, and it is a
rendezvous: `windows.shared_windows` (and `audio.shared_tracks`) register what a run will read
while its block runs; `video.read_frames` and `audio.load_audio` take from here what was planned
for them and decode alone otherwise. Registering and taking are the only ways in.
"""
from __future__ import annotations

import threading
from typing import Any

PLANNED_PASSES: dict[tuple, Any] = {}  # (file key, window, max_pixels) -> the windows.SharedPass serving it
PLANNED_TRACKS: dict[tuple, Any] = {}  # file key -> its audio.SharedTrack
_LOCK = threading.Lock()


def plan_passes(entries: dict[tuple, Any]) -> None:
    with _LOCK:
        PLANNED_PASSES.update(entries)


def take_pass(key: tuple) -> Any:
    """The pass planned for this window (once: a window is read by one sample), or None."""
    with _LOCK:
        return PLANNED_PASSES.pop(key, None)


def drop_passes(passes: list[Any]) -> None:
    with _LOCK:
        for key in [k for k, v in PLANNED_PASSES.items() if v in passes]:
            del PLANNED_PASSES[key]


def plan_tracks(tracks: dict[tuple, Any]) -> None:
    with _LOCK:
        PLANNED_TRACKS.update(tracks)


def planned_track(key: tuple) -> Any:
    with _LOCK:
        return PLANNED_TRACKS.get(key)


def drop_tracks(tracks: dict[tuple, Any]) -> None:
    with _LOCK:
        for key, track in tracks.items():
            if PLANNED_TRACKS.get(key) is track:
                del PLANNED_TRACKS[key]
