"""Physiological recordings from NeuroKit2's own simulators, for tests, benchmarks and the learnability task:
signal files of known heart rate, breathing rate and skin-conductance responses, and small WESAD and DEAP
subject files in each release's exact layout (pickle keys, array shapes, rates)."""
from __future__ import annotations

import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class State:
    """What the simulators are asked for."""

    heart_rate: float = 70.0  # bpm
    breathing: float = 15.0  # breaths per minute
    responses: int = 2  # skin-conductance responses in the window
    temp_slope: float = 0.0  # degrees per minute


CALM, AROUSED = State(62, 12, 1, 0.0), State(110, 24, 8, -0.3)
# WESAD's protocol states as the simulators' settings (1 baseline, 2 stress, 3 amusement, 4 meditation).
WESAD_STATES = {1: State(68, 14, 2), 2: State(105, 22, 9, -0.2), 3: State(82, 17, 4), 4: State(60, 8, 0, 0.1)}


def simulate(state: State, seconds: float, rate: float, seed: int = 0, ecg_method: str = "ecgsyn"
             ) -> dict[str, np.ndarray]:
    """ECG, PPG, EDA, respiration and skin temperature of `seconds` at `rate` Hz (`ecg_method="simple"`:
    NeuroKit2's fast ECG, 70x quicker than its ECGSYN model, for tasks that need many recordings)."""
    import neurokit2 as nk

    seconds, rate = int(round(seconds)), int(round(rate))  # NeuroKit2's simulators size arrays from these
    n = seconds * rate
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = {"ECG": nk.ecg_simulate(duration=seconds, sampling_rate=rate, heart_rate=state.heart_rate,
                                      random_state=seed, method=ecg_method),
               "PPG": nk.ppg_simulate(duration=seconds, sampling_rate=rate, heart_rate=state.heart_rate,
                                      random_state=seed),
               "EDA": nk.eda_simulate(duration=seconds, sampling_rate=rate, scr_number=state.responses,
                                      random_state=seed),
               "RESP": nk.rsp_simulate(duration=seconds, sampling_rate=rate, respiratory_rate=state.breathing,
                                       random_state=seed)}
    out["TEMP"] = 33.0 + state.temp_slope * np.arange(n) / rate / 60.0
    return {k: np.asarray(v, dtype=np.float64)[:n] for k, v in out.items()}


def write_csv(path: str | Path, channels: dict[str, np.ndarray], rate: float, time_column: bool = True) -> Path:
    import pandas as pd

    n = min(v.size for v in channels.values())
    frame = pd.DataFrame({k: v[:n] for k, v in channels.items()})
    if time_column:
        frame.insert(0, "time", np.arange(n) / rate)
    path = Path(path)
    frame.to_csv(path, index=False, sep="\t" if path.suffix == ".tsv" else ",", float_format="%.6g")
    return path


def write_wesad_subject(root: str | Path, number: int, states: tuple[tuple[int, float], ...], seed: int = 0) -> Path:
    """`SX/SX.pkl` with the protocol `states` ((label, seconds), in order) at the release's rates and shapes."""
    chest: dict[str, list] = {k: [] for k in ("ACC", "ECG", "EMG", "EDA", "Temp", "Resp")}
    wrist: dict[str, list] = {k: [] for k in ("ACC", "BVP", "EDA", "TEMP")}
    labels = []
    rng = np.random.default_rng(seed)
    for i, (label, seconds) in enumerate(states):
        state = WESAD_STATES.get(label, State())
        at_700 = simulate(state, seconds, 700.0, seed + i)
        n = at_700["ECG"].size
        chest["ACC"].append(rng.normal(0, 0.02, (n, 3)) + [0.9, 0.0, -0.3])
        chest["EMG"].append(rng.normal(0, 0.01, (n, 1)))
        for ours, theirs in (("ECG", "ECG"), ("EDA", "EDA"), ("TEMP", "Temp"), ("RESP", "Resp")):
            chest[theirs].append(at_700[ours].reshape(-1, 1))
        labels.append(np.full(n, label, dtype=np.int32))
        at_64, at_4 = simulate(state, seconds, 64.0, seed + i), simulate(state, seconds, 4.0, seed + i)
        wrist["BVP"].append(at_64["PPG"].reshape(-1, 1))
        wrist["ACC"].append(rng.normal(0, 2, (int(seconds * 32), 3)) + [60, 0, -20])
        wrist["EDA"].append(at_4["EDA"].reshape(-1, 1))
        wrist["TEMP"].append(at_4["TEMP"].reshape(-1, 1))
    data = {"subject": f"S{number}", "label": np.concatenate(labels),
            "signal": {"chest": {k: np.concatenate(v) for k, v in chest.items()},
                       "wrist": {k: np.concatenate(v) for k, v in wrist.items()}}}
    folder = Path(root) / f"S{number}"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"S{number}.pkl", "wb") as f:
        pickle.dump(data, f, protocol=2)  # the release is a Python 2 pickle
    return folder / f"S{number}.pkl"


def write_deap_subject(root: str | Path, number: int, ratings: np.ndarray, seed: int = 0) -> Path:
    """`sXX.dat`: `data` 40 x 40 x 8064 at 128 Hz (EEG as noise, peripheral channels simulated from the
    arousal rating) and `labels` 40 x 4, as the preprocessed Python release has them."""
    rng = np.random.default_rng(seed)
    trials = ratings.shape[0]
    data = rng.normal(0, 10, (trials, 40, 8064)).astype(np.float32)
    simulated = {s: simulate(s, 63.0, 128.0, seed) for s in (CALM, AROUSED)}  # once each: 40 trials stay fast
    for t in range(trials):
        signals = simulated[AROUSED if ratings[t, 1] > 5 else CALM]
        data[t, 36] = 1e6 / (2.0 + signals["EDA"])  # the release stores skin resistance in ohms
        data[t, 37], data[t, 38], data[t, 39] = signals["RESP"], signals["PPG"], signals["TEMP"]
    Path(root).mkdir(parents=True, exist_ok=True)
    path = Path(root) / f"s{number:02d}.dat"
    with open(path, "wb") as f:
        pickle.dump({"data": data, "labels": ratings.astype(np.float64)}, f, protocol=2)
    return path
