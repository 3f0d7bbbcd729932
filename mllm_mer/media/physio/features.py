"""NeuroKit2's features of a window of signals, one function per family of channels.

Heart rate and HRV (RMSSD, SDNN) from R peaks (ECG, preferred) or pulse peaks (PPG); EDA's tonic level and
its phasic skin-conductance responses (count, amplitude); breathing rate; skin temperature's level and
slope; EEG's relative band powers (theta, alpha, beta, gamma) over every EEG channel; movement from the
accelerometer. A channel too short or too slow for its feature is skipped with a note; numbers no body
makes (a heart at 300 bpm) are the sample's error, since they mean a wrong rate or the wrong channel.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from mllm_mer.media.errors import MediaError
from mllm_mer.media.physio.signals import Channel, Recording

FEATURES_VERSION = 1  # raise when the numbers computed for the same window change (the disk cache's key)
MIN_RATE = {"ecg": 50.0, "ppg": 16.0, "eda": 2.0, "resp": 10.0, "temp": 0.5, "acc": 1.0, "eeg": 32.0}
MIN_SECONDS = {"ecg": 3.0, "ppg": 3.0, "eda": 3.0, "resp": 10.0, "temp": 2.0, "acc": 1.0, "eeg": 2.0}
# Responses smaller than this are sensor noise, not skin-conductance responses (the field's 0.01-0.05 uS).
SCR_MIN_AMPLITUDE_US = 0.03
HRV_MIN_SECONDS = 15.0  # shorter windows give a heart rate but no variability worth stating
# What a body can do, per minute: a number outside means a wrong rate or the wrong channel.
PLAUSIBLE = {"hr_bpm": ("heart rate", "hr_channel", 30.0, 220.0),
             "resp_rate": ("breathing rate", "resp_channel", 3.0, 60.0)}
EEG_BANDS = {"theta": (4.0, 8.0), "alpha": (8.0, 13.0), "beta": (13.0, 30.0), "gamma": (30.0, 45.0)}


def extract(recording: Recording, notes: list[str]) -> dict:
    """The window's numbers (JSON-safe); notes say which channels gave none and why."""
    usable = [c for c in recording.channels if _usable(recording.path, c, notes)]
    found: dict = {"seconds": round(recording.duration, 2)}
    cardiac = [c for c in usable if c.type == "ecg"] or [c for c in usable if c.type == "ppg"]
    steps: list[tuple[list[Channel], Callable]] = [
        (cardiac, _cardiac), ([c for c in usable if c.type == "eda"], _eda),
        ([c for c in usable if c.type == "resp"], _resp), ([c for c in usable if c.type == "temp"], _temp),
        ([c for c in usable if c.type == "eeg"], _eeg), ([c for c in usable if c.type == "acc"], _movement)]
    with warnings.catch_warnings():  # NeuroKit2 warns about its own choices (filters, methods): not the user's
        warnings.simplefilter("ignore")
        for channels, step in steps:
            if channels:
                _run(step, recording.path, channels, found, notes)
    for key, (what, channel, low, high) in PLAUSIBLE.items():
        if key in found and not low <= found[key] <= high:
            raise MediaError(recording.path, f"channel {found[channel]}: {what} {found[key]:.0f}/min is outside "
                                             f"{low:.0f}-{high:.0f}/min; is its sampling rate right?")
    return found


def _usable(path: str, channel: Channel, notes: list[str]) -> bool:
    if channel.rate < MIN_RATE[channel.type]:
        notes.append(f"{channel.name}: {channel.rate:g} Hz is below the {MIN_RATE[channel.type]:g} Hz its "
                     f"{channel.type.upper()} features need; not used")
        return False
    if channel.seconds < MIN_SECONDS[channel.type]:
        notes.append(f"{channel.name}: {channel.seconds:.1f} s is too short for {channel.type.upper()} features "
                     f"(at least {MIN_SECONDS[channel.type]:g} s); not used")
        return False
    if np.ptp(channel.values) == 0:
        notes.append(f"{channel.name}: a flat signal (no variation); not used")
        return False
    return True


def _run(step: Callable, path: str, channels: list[Channel], found: dict, notes: list[str]) -> None:
    """One family's features; NeuroKit2 refusing a signal (too few peaks, a filter it cannot build) is a note."""
    try:
        found.update(step(channels))
    except (ValueError, TypeError, IndexError, ZeroDivisionError, np.linalg.LinAlgError, KeyError) as error:
        notes.append(f"{channels[0].name}: NeuroKit2 found no {channels[0].type.upper()} features "
                     f"({error.__class__.__name__}: {str(error)[:80]})")


def _cardiac(channels: list[Channel]) -> dict:
    import neurokit2 as nk

    c = channels[0]
    if c.type == "ecg":
        peaks = nk.ecg_peaks(nk.ecg_clean(c.values, sampling_rate=c.rate), sampling_rate=c.rate)[1]["ECG_R_Peaks"]
    else:
        peaks = nk.ppg_peaks(nk.ppg_clean(c.values, sampling_rate=c.rate), sampling_rate=c.rate)[1]["PPG_Peaks"]
    peaks = np.asarray(peaks)
    if peaks.size < 3:
        raise ValueError(f"{peaks.size} beats found")
    found = {"hr_bpm": round(60.0 * c.rate / float(np.mean(np.diff(peaks))), 1), "hr_channel": c.name,
             "beats": int(peaks.size)}
    if c.seconds >= HRV_MIN_SECONDS and peaks.size >= 10:
        hrv = nk.hrv_time(peaks, sampling_rate=c.rate)
        found.update(rmssd_ms=round(float(hrv["HRV_RMSSD"].iloc[0]), 1),
                     sdnn_ms=round(float(hrv["HRV_SDNN"].iloc[0]), 1))
    return found


def _eda(channels: list[Channel]) -> dict:
    import neurokit2 as nk

    c = max(channels, key=lambda ch: ch.rate)  # a chest sensor at 700 Hz over a wrist one at 4 Hz
    signals, info = nk.eda_process(c.values, sampling_rate=c.rate)
    amplitudes = np.asarray(info.get("SCR_Amplitude", []), dtype=float)
    amplitudes = amplitudes[np.isfinite(amplitudes) & (amplitudes >= SCR_MIN_AMPLITUDE_US)]
    count = int(amplitudes.size)
    return {"eda_tonic_us": round(float(signals["EDA_Tonic"].mean()), 3), "scr_count": count,
            "scr_per_min": round(60.0 * count / c.seconds, 2),
            "scr_amplitude_us": round(float(amplitudes.mean()), 3) if amplitudes.size else 0.0, "eda_channel": c.name}


def _resp(channels: list[Channel]) -> dict:
    import neurokit2 as nk

    c = channels[0]
    signals, _ = nk.rsp_process(c.values, sampling_rate=c.rate)
    rate = float(np.nanmean(signals["RSP_Rate"]))
    if not np.isfinite(rate):
        raise ValueError("no breaths found")
    return {"resp_rate": round(rate, 1), "resp_channel": c.name}


def _temp(channels: list[Channel]) -> dict:
    import neurokit2 as nk

    c = channels[0]
    # Over a second: sensor noise would tilt a short slope.
    smooth = nk.signal_smooth(c.values, size=min(c.values.size, max(3, int(c.rate))))
    minutes = np.arange(c.values.size) / c.rate / 60.0
    slope = float(np.polyfit(minutes, smooth, 1)[0])
    return {"temp_c": round(float(np.mean(c.values)), 2), "temp_slope_c_per_min": round(slope, 3),
            "temp_channel": c.name}


def _eeg(channels: list[Channel]) -> dict:
    import neurokit2 as nk

    shares = []
    for c in channels:
        bands = {k: v for k, v in EEG_BANDS.items() if v[1] < c.rate / 2}
        psd = nk.signal_psd(c.values, sampling_rate=c.rate, method="welch", min_frequency=1.0,
                            max_frequency=max(b[1] for b in bands.values()))
        f, power = psd["Frequency"].to_numpy(), psd["Power"].to_numpy()
        band = {k: float(np.trapezoid(power[(f >= lo) & (f < hi)], f[(f >= lo) & (f < hi)])) for k, (lo, hi) in
                bands.items()}
        total = sum(band.values())
        if total > 0 and np.isfinite(total):
            shares.append({k: v / total for k, v in band.items()})
    if not shares:
        raise ValueError("no EEG channel with power in 4-45 Hz")
    names = shares[0].keys()
    return {**{f"eeg_{k}": round(float(np.mean([s.get(k, 0.0) for s in shares])), 3) for k in names},
            "eeg_channels": len(shares)}


def _movement(channels: list[Channel]) -> dict:
    rate = channels[0].rate
    axes = [c.values for c in channels if c.rate == rate]
    n = min(a.size for a in axes)
    magnitude = np.sqrt(sum(a[:n] ** 2 for a in axes))
    return {"movement": round(float(np.std(magnitude)), 3), "acc_channel": channels[0].name}
