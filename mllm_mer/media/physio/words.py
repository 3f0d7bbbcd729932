"""A window's physiological numbers put into words for the prompt: the numbers themselves, and, where a
baseline of the same person exists, how far they are from it ("18% above this person's baseline"), as the
vocal cues are speaker-relative. Bodies differ too much for absolute words ("a high heart rate")."""
from __future__ import annotations

from statistics import median

# Relative changes smaller than these are "about this person's baseline".
MARGIN = {"hr_bpm": 0.05, "rmssd_ms": 0.15, "eda_tonic_us": 0.10, "scr_per_min": 0.25, "resp_rate": 0.10}
TEMP_MARGIN_C = 0.2
BASELINE_KEYS = ("hr_bpm", "rmssd_ms", "sdnn_ms", "eda_tonic_us", "scr_per_min", "resp_rate", "temp_c",
                 "eeg_alpha", "eeg_beta", "movement")


def describe(found: dict, baseline: dict | None = None) -> str:
    """The cue text: one clause per family of signals present."""
    base = baseline or {}
    parts = [p for p in (_heart(found, base), _skin(found, base), _breath(found, base), _temperature(found, base),
                         _brain(found, base), _movement(found)) if p]
    head = f"{found.get('seconds', 0):.0f} s of signals"
    return "; ".join([head, *parts]) if parts else f"{head}; no usable channel"


def baseline_of(windows: list[dict]) -> dict:
    """A person's reference: the median of each number over their baseline windows (or other samples)."""
    return {k: round(median(w[k] for w in windows if k in w), 4) for k in BASELINE_KEYS
            if any(k in w for w in windows)}


def relative(value: float, ref: float | None, key: str) -> str:
    """", 18% above this person's baseline (81)" or ", about this person's baseline"; "" without one."""
    if not ref:
        return ""
    change = value / ref - 1.0
    if abs(change) < MARGIN.get(key, 0.10):
        return ", about this person's baseline"
    return f", {100 * abs(change):.0f}% {'above' if change > 0 else 'below'} this person's baseline ({ref:g})"


def _heart(f: dict, base: dict) -> str:
    if "hr_bpm" not in f:
        return ""
    source = "ECG" if "ecg" in str(f.get("hr_channel", "")).lower() else "pulse"
    text = f"heart rate {f['hr_bpm']:.0f} bpm ({source}){relative(f['hr_bpm'], base.get('hr_bpm'), 'hr_bpm')}"
    if "rmssd_ms" in f:
        text += (f"; HRV RMSSD {f['rmssd_ms']:.0f} ms{relative(f['rmssd_ms'], base.get('rmssd_ms'), 'rmssd_ms')}"
                 f", SDNN {f['sdnn_ms']:.0f} ms")
    return text


def _skin(f: dict, base: dict) -> str:
    if "eda_tonic_us" not in f:
        return ""
    count = f["scr_count"]
    text = (f"skin conductance {f['eda_tonic_us']:.2f} uS tonic"
            f"{relative(f['eda_tonic_us'], base.get('eda_tonic_us'), 'eda_tonic_us')}; {count} skin-conductance "
            f"response{'s' if count != 1 else ''} in {f['seconds']:.0f} s")
    if count:
        text += f" (mean amplitude {f['scr_amplitude_us']:.2f} uS)"
    if base.get("scr_per_min") is not None:
        ref = base["scr_per_min"]
        rate = f["scr_per_min"]
        change = "more" if rate > ref * 1.25 + 0.5 else "fewer" if rate < ref * 0.75 - 0.5 else ""
        text += f", {change} than this person's baseline ({ref:g}/min)" if change else ", as at this person's baseline"
    return text


def _breath(f: dict, base: dict) -> str:
    if "resp_rate" not in f:
        return ""
    return f"breathing {f['resp_rate']:.0f}/min{relative(f['resp_rate'], base.get('resp_rate'), 'resp_rate')}"


def _temperature(f: dict, base: dict) -> str:
    if "temp_c" not in f:
        return ""
    slope = f["temp_slope_c_per_min"]
    trend = "rising" if slope > 0.05 else "falling" if slope < -0.05 else "steady"
    text = f"skin temperature {f['temp_c']:.1f} C, {trend} ({slope:+.2f} C/min)"
    if base.get("temp_c") is not None:
        step = f["temp_c"] - base["temp_c"]
        text += (f", {abs(step):.1f} C {'above' if step > 0 else 'below'} this person's baseline"
                 if abs(step) >= TEMP_MARGIN_C else ", about this person's baseline")
    return text


def _brain(f: dict, base: dict) -> str:
    bands = [k for k in ("theta", "alpha", "beta", "gamma") if f"eeg_{k}" in f]
    if not bands:
        return ""
    text = "EEG relative power " + ", ".join(f"{k} {100 * f['eeg_' + k]:.0f}%" for k in bands)
    text += f" ({f.get('eeg_channels', 1)} channel{'s' if f.get('eeg_channels', 1) != 1 else ''})"
    if base.get("eeg_alpha"):
        text += f"; alpha{relative(f['eeg_alpha'], base['eeg_alpha'], 'eeg_alpha')}"
    return text


def _movement(f: dict) -> str:
    if "movement" not in f:
        return ""
    return f"movement {f['movement']:.2f} (accelerometer magnitude s.d.)"
