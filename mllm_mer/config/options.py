"""The sections only one verb has: each names what that verb works on (a run, a file, a folder)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mllm_mer.config.tree import Section, option
from mllm_mer.core.registry import BACKENDS


@dataclass
class TinyConfig(Section):
    """A random-weight checkpoint of a real architecture, built offline."""

    dir: str | None = option(None, "where to write it", positional=True)
    arch: Literal["qwen2_vl", "qwen2_5_vl", "qwen2_5_omni"] = option(
        "qwen2_vl", "architecture (qwen2_5_omni: the Omni thinker, which hears audio)")
    size: Literal["tiny", "small"] = option("tiny", "tiny: 0.8 M parameters; small: Qwen2-0.5B text dimensions")
    seed: int = option(0, "weight seed")
    whisper: bool = option(False, "also build a tiny Whisper in DIR/whisper")
    thinking: bool = option(False, "a thinking checkpoint: <think> and </think> tokens and a chat template that "
                                   "opens the think block (qwen2_vl, qwen2_5_vl)")
    task: str | None = option(None, "also write the synthetic colour x wording task to this folder")
    agent_task: str | None = option(None, "also write the synthetic hidden-window task (with scripted agent "
                                          "traces) to this folder")
    tone_task: str | None = option(None, "also write the synthetic sine-or-square task (its label lives only in "
                                         "the sound's timbre) to this folder")
    physio_task: str | None = option(None, "also write the synthetic calm-or-aroused task (its label lives only "
                                           "in the physiological signals) to this folder")
    parity_task: str | None = option(None, "also write the synthetic cue-parity task (its label needs an "
                                           "intermediate count; a reasoning column holds it) to this folder")


@dataclass
class MergeOptions(Section):
    """Folding an adapter into the base weights."""

    out: str | None = option(None, "directory of the merged model")


@dataclass
class CompareOptions(Section):
    """Finished runs side by side; with --judge-model, a judge's pairwise preference between their descriptions."""

    runs: list[str] = option([], "run directories", positional=True)
    mixed_judges: bool = option(False, "show numbers made by different judges side by side (refused otherwise)")
    preference_pairs: str | None = option(None, "JSONL/JSON/CSV of human preference pairs (description_a, "
                                                "description_b, preferred: A|B|tie): the judge's agreement with "
                                                "people, instead of run directories (needs --judge-model)")
    out: str | None = option(None, "with --judge-model: folder for preference.json and the verdict cache "
                                   "(default: verdicts cached in the user cache)")


@dataclass
class DialogueOptions(Section):
    """A recorded conversation, utterance by utterance."""

    video: str | None = option(None, "the recording (video)")
    audio: str | None = option(None, "the recording's sound, if separate (or the only recording)")
    transcript: str | None = option(None, "utterances with speakers and times: .srt, .vtt (<v Name> or 'Name:') "
                                          "or .jsonl {speaker, start, end, text}")
    out: str | None = option(None, "where timeline.jsonl, timeline.png and timeline.md go")
    split: str | None = option(None, "with --dataset: the split holding the dialogue")
    dialogue: str | None = option(None, "with --dataset: the dialogue id (e.g. 17 for MELD's Dialogue_ID 17)")


@dataclass
class DistillOptions(Section):
    """Distillation: which teacher answers become training targets."""

    filter: Literal["agree", "rationalise", "all"] = option(
        "rationalise", "agree: keep rows where the teacher matches gold; rationalise: also re-ask wrong rows with "
                       "the gold label as a hint and keep them when the hinted answer is gold (STaR); all: keep "
                       "every answer (no gold needed)")
    dev_split: str | None = option("dev", "copy this split with its gold labels into the manifest, for choosing "
                                          "the student's checkpoint (never trained on); null: none")


@dataclass
class CalibrateOptions(Section):
    """Fitting on a finished dev run (calibration, a fusion gate)."""

    run_dir: str | None = option(None, "a finished evaluate run (with label probabilities) on a dev split",
                                 positional=True)
    out: str | None = option(None, "where to write the fitted file (calibration.json, fusion.json)")


@dataclass
class ScoreOptions(Section):
    """Scoring any system's predictions (or a finished run, rescored) against gold; no model runs."""

    predictions: str | None = option(None, "CSV, TSV, JSON or JSONL of predictions, or a run directory to rescore",
                                     positional=True)
    out: str | None = option(None, "run directory for metrics.json, report.md and the plots")
    split: str | None = option(None, "split of --dataset holding the gold labels")
    labels: str | None = option(None, "label set name or YAML file (open: open-vocabulary answers; default: the "
                                      "dataset's own, or the rescored run's)")
    pred_id_col: str = option("id", "column of the sample id, or a template over columns "
                                    "('dia{Dialogue_ID}_utt{Utterance_ID}'); a media file name matches its sample")
    pred_col: str = option("pred", "column of the predicted label (list answers: a JSON list or comma-separated)")
    prob_col: str | None = option(None, "column holding a JSON mapping label -> probability (default: the "
                                        "p_<label> columns, when there are any)")
    label_map: list[str] = option([], "FROM=TO aliases for gold and predictions (e.g. anxiety=fear; repeatable)")
    missing: Literal["skip", "wrong"] = option("skip", "samples without a prediction: skip (metrics over the "
                                                       "predicted rows, said as n of N) or wrong (count as wrong)")
    pred_text_col: str | None = option(None, "column of free-text descriptions: their emotion words are extracted "
                                             "(--extract) and scored as open-vocabulary answers (with --labels open)")
    extract: Literal["lexicon", "judge"] = option("lexicon", "how words leave a description: lexicon (the bundled "
                                                             "vocabulary, inflections, negation) or judge")
    synonym_groups: str | None = option(None, "JSON/JSONL file of per-sample synonym groups ({\"id\", \"groups\"}) "
                                              "for the OV-MERD set metrics (else the judge groups, if one is named)")
    reference_col: str | None = option(None, "column of the gold manifest with a reference description (EMER): the "
                                             "judge rates each description's clue and label overlap with it, 0-10")
    abstain_below: float | None = option(None, "answers whose probability is below this abstain: counted apart "
                                               "from errors, with coverage and selective accuracy", low=0.0, high=1.0)


@dataclass
class JudgeConfig(Section):
    """The judge behind judged numbers: any model the project runs, greedy, its verdicts under a schema."""

    judge_model: str | None = option(None, "judge model: hub id or local checkpoint (every judged number names it)")
    judge_backend: str = option("transformers", "who runs the judge", choices=tuple(BACKENDS))
    judge_base_url: str | None = option(None, "the judge's server, e.g. http://127.0.0.1:8000 (judge backend openai)")


@dataclass
class ListOptions(Section):
    what: Literal["datasets", "labels", "templates", "models", "recipes"] = option(
        "labels", "what to list", positional=True)
    name: str | None = option(None, "with labels: one label set (name or YAML file), shown with its aliases",
                              positional=True)


@dataclass
class DemoOptions(Section):
    """`mllm-mer demo`: the main job on a fresh machine, offline."""

    dir: str | None = option(None, "where the tiny checkpoint and the sample clip go (default: the user cache, "
                                   "~/.cache/mllm-mer/demo)", positional=True)
    app: bool = option(False, "then open the app with the same model and clip")


@dataclass
class InspectOptions(Section):
    """`mllm-mer inspect`: what a loader makes of a corpus, without a model."""

    split: str | None = option(None, "the split to read (a manifest's split column, a dataset's split)")
    show: int = option(3, "samples printed as they would be prompted", low=0)


__all__ = ["CalibrateOptions", "CompareOptions", "DemoOptions", "DialogueOptions", "DistillOptions", "InspectOptions",
           "JudgeConfig", "ListOptions", "MergeOptions", "ScoreOptions", "TinyConfig"]
