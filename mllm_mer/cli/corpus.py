"""`mllm-mer inspect`: what a loader makes of a corpus, checked in seconds before a long run (no model)."""
from __future__ import annotations

import os
import statistics
from collections import Counter
from collections.abc import Sequence

from mllm_mer import config as C  # noqa: N812
from mllm_mer.core.types import LabelScheme, Sample


def label_lines(samples: Sequence[Sample], scheme: LabelScheme) -> list[str]:
    """Per task: the gold distribution (after aliases) and the gold labels that map to no label, by name."""
    from mllm_mer.core.labels import aliases_applied
    from mllm_mer.prompting import as_list

    lines = []
    for ls in scheme.label_sets:
        counts, unmapped, missing = Counter(), Counter(), 0
        for sample in samples:
            value = sample.gold.get(ls.task)
            if value in (None, ""):
                missing += 1
                continue
            for word in as_list(value) if ls.list_answer else [value]:
                label = ls.normalise(str(word))
                (counts if label else unmapped)[label or str(word)] += 1
        lines.append(f"{ls.task}: " + (", ".join(f"{k} {n}" for k, n in counts.most_common())
                                       or ("none in the label set" if unmapped else "no gold labels"))
                     + (f"; {missing} without one" if missing else ""))
        words = [w for s in samples if s.gold.get(ls.task) not in (None, "")
                 for w in (as_list(s.gold[ls.task]) if ls.list_answer else [s.gold[ls.task]])]
        if not ls.open and (aliased := aliases_applied(ls, words)):
            lines.append(f"{ls.task}: {sum(aliased.values())} gold labels read through aliases of {scheme.name!r}: "
                         + ", ".join(f"{k} {n}" for k, n in aliased.items()))
        if unmapped:
            lines.append(f"{ls.task}: {sum(unmapped.values())} gold labels outside {scheme.name!r}: "
                         + ", ".join(f"{k} {n}" for k, n in unmapped.most_common(10))
                         + " (add aliases to the label YAML, or --label-map FROM=TO)")
    return lines


def media_lines(samples: Sequence[Sample]) -> list[str]:
    lines = []
    for kind in ("video", "audio", "image", "physio"):
        paths = [getattr(s, kind) for s in samples if isinstance(getattr(s, kind), str)]
        if not paths:
            continue
        missing = [p for p in paths if not os.path.isfile(p)]
        lines.append(f"{kind}: {len(paths) - len(missing)} found, {len(missing)} missing"
                     + (f" (first: {missing[0]})" if missing else ""))
    return (lines + physio_lines(samples)) or ["media: none named (text only)"]


def physio_lines(samples: Sequence[Sample]) -> list[str]:
    """Signal windows: how many, how long, over how many subjects (the unit splits keep apart)."""
    windows = [s for s in samples if s.physio]
    if not windows:
        return []
    lengths = sorted(s.end - s.start for s in windows if isinstance(s.start, float) and isinstance(s.end, float))
    subjects = {s.metadata.get("subject") or s.speaker for s in windows}
    based = sum(s.metadata.get("physio_baseline") not in (None, "") for s in windows)
    span = f"windows {lengths[0]:g}-{lengths[-1]:g} s" if lengths else "whole recordings"
    return [f"physio: {len(windows)} signal windows ({span}) from {len(subjects)} subjects; {based} with a "
            "baseline to compare against"]


def dialogue_line(samples: Sequence[Sample]) -> str:
    sizes = Counter(str(s.metadata.get("dialogue")) for s in samples if s.metadata.get("dialogue") is not None)
    with_context = sum(bool(s.context) for s in samples)
    if not sizes:
        return f"dialogues: none named; {with_context} samples with earlier turns as context"
    per = sorted(sizes.values())
    return (f"dialogues: {len(sizes)}, turns per dialogue {per[0]}-{per[-1]} (median {statistics.median(per):g}); "
            f"{with_context} samples with earlier turns as context")


def inspect_corpus(cfg: C.InspectConfig) -> int:
    from mllm_mer.datasets import load_configured
    from mllm_mer.datasets.tables import UNREADABLE_ROW
    from mllm_mer.pipeline.build import prompt_setup
    from mllm_mer.stages.prepare import prepare, prompt_text

    if not cfg.data.dataset or not cfg.data.data_dir:
        raise ValueError("inspect needs --dataset and --data-dir")
    split = load_configured(cfg.data, cfg.inspect.split, cfg.prompt.labels)
    setup = prompt_setup(cfg, default_labels=split.labels)
    samples = split.samples
    texts = sum(bool(s.transcript) for s in samples)
    print(f"{split.name}: {len(samples)} samples; {texts} with text; label set {setup.scheme.name!r} "
          f"(tasks: {', '.join(setup.scheme.tasks)})")
    for line in label_lines(samples, setup.scheme) + [dialogue_line(samples)] + media_lines(samples):
        print(line)
    unreadable = [s.metadata[UNREADABLE_ROW] for s in samples if UNREADABLE_ROW in s.metadata]
    if unreadable:  # each fails alone in a run; the others are answered
        print(f"unreadable rows: {len(unreadable)}, each a failure of its own in a run:")
        print("\n".join(f"  {message}" for message in unreadable))
    for prepared in prepare([s for s in samples if UNREADABLE_ROW not in s.metadata][:cfg.inspect.show], setup):
        print(f"\n=== sample {prepared.sample.id} (as prompted) ===\n{prompt_text(prepared)}")
    return 0


def label_set_lines(name: str) -> list[str]:
    from mllm_mer.core.labels import load_label_scheme

    scheme = load_label_scheme(name)
    lines = [f"{scheme.name}" + (f" ({scheme.source})" if scheme.source else "")]
    for ls in scheme.label_sets:
        kind = "open vocabulary" if ls.open else "multi-label" if ls.multi_label else "one label"
        lines.append(f"{ls.task} ({kind}):")
        for label in ls.labels:
            aliases = sorted(k for k, v in ls.synonyms.items() if v == label and k != label)
            lines.append(f"  {label}" + (f"  (aliases: {', '.join(aliases)})" if aliases else ""))
    return lines
