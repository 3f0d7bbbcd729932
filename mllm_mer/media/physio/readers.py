"""Signal files -> a Recording: CSV/TSV (a time column, or a declared rate), NumPy .npy/.npz, EDF/BDF
(pyedflib), and the WESAD and DEAP pickles their loaders point to. A file that cannot be read is a
MediaError naming it (and the channel, where one is at fault)."""
from __future__ import annotations

import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np

from mllm_mer.media.decode import check_regular_file, file_key
from mllm_mer.media.errors import MediaError
from mllm_mer.media.physio.signals import TIME_NAMES, Channel, Recording, check_rate, parse_declarations, type_of

TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".txt": None}
SUFFIXES = (*TABLE_SUFFIXES, ".npy", ".npz", ".edf", ".bdf", ".pkl", ".dat")
# The rate a time column gives may differ from a declared one by this share before the file is refused.
RATE_TOLERANCE = 0.02
_RECENT: OrderedDict = OrderedDict()  # the last recordings read: one long file serves many windows in turn
_RECENT_SIZE = 2


def read(path: str, rate: float | None = None, declared: tuple[str, ...] = (), part: str | None = None
         ) -> Recording:
    """The recording at `path`. `rate`: Hz of files that carry none; `declared`: NAME=TYPE items or types in
    column order; `part`: which recording of a multi-recording file (a WESAD device, a DEAP trial)."""
    check_regular_file(path)
    key = (file_key(path), rate, declared, part)
    if key in _RECENT:
        _RECENT.move_to_end(key)
        return _RECENT[key]
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise MediaError(path, f"not a signal file this reader knows ({', '.join(SUFFIXES)})")
    named, ordered = parse_declarations(declared)
    try:
        recording = _READERS[suffix](path, rate, named, ordered, part)
    except MediaError:
        raise
    except (OSError, ValueError, KeyError, IndexError, TypeError, EOFError, pickle.UnpicklingError) as error:
        raise MediaError(path, f"not a readable signal file ({error.__class__.__name__}: {error})") from None
    _RECENT[key] = recording
    while len(_RECENT) > _RECENT_SIZE:
        _RECENT.popitem(last=False)
    return recording


def _typed(path: str, columns: list[tuple[str, np.ndarray, float]], named: dict[str, str], ordered: list[str]
           ) -> Recording:
    """Channels from (name, values, rate) columns: typed by declaration or name; unnamed ones by `ordered`."""
    missing = [n for n in named if n not in {c[0] for c in columns}]
    if missing:
        raise MediaError(path, f"channel {missing[0]} is declared but not in the file (channels: "
                               f"{', '.join(c[0] for c in columns) or 'none'})")
    channels, untyped = [], []
    for name, values, rate in columns:
        kind = type_of(name, named)
        if kind is None and ordered:
            kind = ordered.pop(0)
        if kind is None:
            untyped.append(name)
            continue
        channels.append(Channel(name, kind, check_rate(path, name, rate), np.asarray(values, dtype=np.float64)))
    if not channels:
        raise MediaError(path, f"no channel of a known type (columns: {', '.join(untyped) or 'none'}); name them "
                               "ECG, PPG, EDA, RESP, TEMP, ACC or EEG, or declare them: --physio-channels NAME=TYPE")
    return Recording(path, tuple(channels))


def _table(path: str, rate: float | None, named: dict[str, str], ordered: list[str], part: str | None) -> Recording:
    import pandas as pd

    sep = TABLE_SUFFIXES[Path(path).suffix.lower()]
    try:
        frame = pd.read_csv(path, sep=sep, engine="python" if sep is None else "c")
    except pd.errors.EmptyDataError:
        raise MediaError(path, "empty file (0-length signal)") from None
    if frame.empty:
        raise MediaError(path, "no rows (0-length signal)")
    time_col = next((c for c in frame.columns if str(c).strip().lower() in TIME_NAMES and c not in named), None)
    if time_col is not None:
        rate = _rate_from_times(path, frame[time_col].to_numpy(dtype=float), rate)
    elif rate is None:
        raise MediaError(path, "no time column (time, t, timestamp) and no rate: give --physio-rate HZ")
    columns = [(str(c), pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=float), rate)
               for c in frame.columns if c != time_col]
    return _typed(path, columns, named, ordered)


def _rate_from_times(path: str, times: np.ndarray, declared: float | None) -> float:
    steps = np.diff(times[np.isfinite(times)])
    if steps.size == 0 or np.median(steps) <= 0:
        raise MediaError(path, "the time column does not increase (need seconds, one row per sample)")
    rate = 1.0 / float(np.median(steps))
    if declared is not None and abs(rate - declared) > RATE_TOLERANCE * declared:
        raise MediaError(path, f"the time column says {rate:.4g} Hz but the rate given is {declared:g} Hz")
    return rate


def _npy(path: str, rate: float | None, named: dict[str, str], ordered: list[str], part: str | None) -> Recording:
    array = np.load(path, allow_pickle=False)
    if array.ndim not in (1, 2) or array.size == 0:
        raise MediaError(path, f"an array of shape {array.shape}: need samples x channels (0-length or wrong shape)")
    if rate is None:
        raise MediaError(path, "a .npy file carries no rate: give --physio-rate HZ")
    array = array.reshape(array.shape[0], -1)
    if not ordered and not named:
        raise MediaError(path, f"{array.shape[1]} unnamed columns: give their types with --physio-channels "
                               "(e.g. ecg,eda,resp)")
    if len(ordered) > array.shape[1]:
        raise MediaError(path, f"channel {ordered[array.shape[1]]} (column {array.shape[1]}) is declared but "
                               f"the array has {array.shape[1]} columns")
    return _typed(path, [(str(i), array[:, i], rate) for i in range(array.shape[1])], named, list(ordered))


def _npz(path: str, rate: float | None, named: dict[str, str], ordered: list[str], part: str | None) -> Recording:
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    shared = next((float(arrays.pop(k)) for k in ("rate", "fs", "sampling_rate") if k in arrays), rate)
    rates = {k[: -len("_rate")]: float(arrays.pop(k)) for k in list(arrays) if k.endswith("_rate")}
    columns = []
    for name, values in arrays.items():
        values = np.asarray(values, dtype=np.float64)
        for i, column in enumerate(values.reshape(values.shape[0], -1).T if values.ndim > 1 else [values]):
            label = name if values.ndim == 1 or values.shape[1] == 1 else f"{name}_{i}"
            columns.append((label, column, rates.get(name, shared)))
    if any(r is None for _, _, r in columns):
        raise MediaError(path, "no rate for its arrays: store `rate` (or NAME_rate) in the file, or give --physio-rate")
    return _typed(path, columns, named, ordered)


def _edf(path: str, rate: float | None, named: dict[str, str], ordered: list[str], part: str | None) -> Recording:
    import pyedflib

    try:
        reader = pyedflib.EdfReader(path)
    except OSError as error:
        raise MediaError(path, f"not a readable EDF/BDF file ({error})") from None
    try:
        columns = [(reader.getLabel(i).strip(), reader.readSignal(i), float(reader.getSampleFrequency(i)))
                   for i in range(reader.signals_in_file)]
    finally:
        reader.close()
    return _typed(path, [c for c in columns if c[0].lower() not in ("edf annotations", "bdf annotations")],
                  named, ordered)


def _release_pickle(path: str, rate: float | None, named: dict[str, str], ordered: list[str], part: str | None
                    ) -> Recording:
    """WESAD (`SX.pkl`) and DEAP (`sXX.dat`): their own layouts, read by their loaders' rules."""
    from mllm_mer.media.physio import releases

    return releases.read(path, part)


_READERS = {".csv": _table, ".tsv": _table, ".txt": _table, ".npy": _npy, ".npz": _npz, ".edf": _edf,
            ".bdf": _edf, ".pkl": _release_pickle, ".dat": _release_pickle}
