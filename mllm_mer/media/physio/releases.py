"""The two released pickle layouts, read as Recordings.

WESAD (`SX/SX.pkl`, Schmidt et al. 2018): a Python 2 pickle (read with latin1) holding `subject`, `label`
(700 Hz) and `signal` with `chest` (RespiBAN, 700 Hz: ACC, ECG, EMG, EDA, Temp, Resp) and `wrist`
(Empatica E4: ACC 32 Hz, BVP 64 Hz, EDA 4 Hz, TEMP 4 Hz). DEAP preprocessed (`sXX.dat`, Koelstra et al.
2012): `data` 40 trials x 40 channels x 8064 samples at 128 Hz (3 s pre-trial baseline, then 60 s), and
`labels` 40 x 4 (valence, arousal, dominance, liking on 1-9).

Pickles can run code when loaded: these are read by an unpickler that builds NumPy arrays, lists, dicts
and strings only, and refuses anything else.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from mllm_mer.media.errors import MediaError
from mllm_mer.media.physio.signals import Channel, Recording

WESAD_RATES = {"chest": {"ACC": 700.0, "ECG": 700.0, "EMG": 700.0, "EDA": 700.0, "Temp": 700.0, "Resp": 700.0},
               "wrist": {"ACC": 32.0, "BVP": 64.0, "EDA": 4.0, "TEMP": 4.0}}
WESAD_TYPES = {"ECG": "ecg", "BVP": "ppg", "EDA": "eda", "Resp": "resp", "Temp": "temp", "TEMP": "temp", "ACC": "acc"}
WESAD_LABEL_RATE = 700.0
DEAP_RATE = 128.0
DEAP_BASELINE_S = 3.0  # each preprocessed trial starts with 3 s of pre-trial baseline
DEAP_EEG = ("Fp1", "AF3", "F3", "F7", "FC5", "FC1", "C3", "T7", "CP5", "CP1", "P3", "P7", "PO3", "O1", "Oz", "Pz",
            "Fp2", "AF4", "Fz", "F4", "F8", "FC6", "FC2", "Cz", "C4", "T8", "CP6", "CP2", "P4", "P8", "PO4", "O2")
# Channels 32-39: hEOG, vEOG, zEMG, tEMG (not used), then GSR, respiration belt, plethysmograph, temperature.
DEAP_PERIPHERAL = {36: ("GSR", "eda"), 37: ("Respiration", "resp"), 38: ("Plethysmograph", "ppg"),
                   39: ("Temperature", "temp")}
_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
            ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
            ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name} (only arrays are read from a release pickle)")


def load_pickle(path: str | Path) -> Any:
    with open(path, "rb") as f:
        return _ArraysOnly(f, encoding="latin1").load()


def read(path: str, part: str | None) -> Recording:
    data = load_pickle(path)
    if not isinstance(data, dict):
        raise MediaError(path, "not a WESAD or DEAP pickle (no dictionary at its top)")
    if "signal" in data:
        return wesad(path, data, part)
    if "data" in data:
        return deap(path, data, part)
    raise MediaError(path, f"not a WESAD or DEAP pickle (keys: {', '.join(map(str, data))})")


def wesad(path: str, data: dict, part: str | None) -> Recording:
    """The devices `part` names ("chest", "wrist", or both by default) as typed channels."""
    devices = ("chest", "wrist") if part in (None, "", "both") else (part,)
    channels = []
    for device in devices:
        signals = data["signal"].get(device)
        if signals is None:
            raise MediaError(path, f"no {device} signals in this WESAD file")
        for name, rate in WESAD_RATES[device].items():
            if name not in signals or name not in WESAD_TYPES:
                continue
            values = np.asarray(signals[name], dtype=np.float64)
            values = values.reshape(values.shape[0], -1)
            for i in range(values.shape[1]):
                label = f"{device} {name}" + (f" {'xyz'[i]}" if values.shape[1] == 3 else "")
                channels.append(Channel(label, WESAD_TYPES[name], rate, values[:, i]))
    return Recording(path, tuple(channels))


def deap(path: str, data: dict, part: str | None) -> Recording:
    """Trial `part` (0-based) of a DEAP subject: its 32 EEG channels and the peripheral ones (GSR as
    conductance in microsiemens: the release stores skin resistance in ohms)."""
    array = np.asarray(data["data"])
    if array.ndim != 3 or array.shape[1] < 40:
        raise MediaError(path, f"DEAP data of shape {array.shape}: need trials x 40 channels x samples")
    trial = int(part or 0)
    if not 0 <= trial < array.shape[0]:
        raise MediaError(path, f"trial {trial} is outside its {array.shape[0]} trials")
    rows = array[trial].astype(np.float64)
    channels = [Channel(name, "eeg", DEAP_RATE, rows[i]) for i, name in enumerate(DEAP_EEG)]
    for index, (name, kind) in DEAP_PERIPHERAL.items():
        values = rows[index]
        if kind == "eda":
            values = np.where(values > 0, 1e6 / np.maximum(values, 1e-9), np.nan)
        channels.append(Channel(name, kind, DEAP_RATE, values))
    return Recording(path, tuple(channels))
