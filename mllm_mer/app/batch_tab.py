"""The Batch tab: an uploaded manifest (or a zip of manifest + clips) evaluated as one run, with its
columns mapped as the command line's `--id-col` and friends map them."""
from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from pathlib import Path

import gradio as gr

from mllm_mer.app.components import (
    BATCH_TYPES,
    MODALITY_CHOICES,
    NO_ADAPTER,
    REASONING_CHOICES,
    REASONING_INFO,
    check_type,
    user_error,
)
from mllm_mer.app.service import BatchOptions, Service
from mllm_mer.core.labels import available as available_label_sets
from mllm_mer.core.nesting import check_text_depth
from mllm_mer.prompting import available_templates

# (role, the option it sets, its default column, words that suggest it in a header, required)
ROLES = (("id", "id_col", "id", ("id", "key", "name"), True),
         ("text", "text_col", "text", ("text", "utterance", "transcript", "sentence"), False),
         ("label", "label_col", "label", ("label", "emotion", "gold", "class"), False),
         ("video", "video_col", "video", ("video", "clip", "mp4"), False),
         ("audio", "audio_col", "audio", ("audio", "wav", "sound"), False),
         ("image", "image_col", "image", ("image", "face", "png", "jpg"), False))
NONE = "(none)"
EXPECTED = ("**Expected columns:** `id` (unique per row), `text` (what is said), `label` (the gold label, for "
            "metrics) and any of `video`, `audio`, `image` (paths relative to the manifest). Other names: map them "
            "under *Columns* once the file is uploaded.")
HEAD_BYTES = 1 << 16  # enough for any header line; the file is read in full only by the run
_PATH = re.compile(r"(?<![\w.:/~])(?:/|~/)(?:[^\s/'\"`(),;:]+/)+([^\s/'\"`(),;:]*)")


def public_message(text: str, *roots: str | Path) -> str:
    """A message fit for the page: the given server folders cut away, and any other absolute path
    shortened to its last part (server folders are not the user's to read)."""
    for root in sorted((str(r) for r in roots if r), key=len, reverse=True):
        text = text.replace(root.rstrip("/") + "/", "").replace(root, "")
    return _PATH.sub(lambda m: m.group(1) or "(folder)", text)


def _head_lines(upload: Path) -> tuple[str, list[str]]:
    """(the manifest's name, its first lines), from the file itself or the one manifest inside a zip."""
    if upload.suffix.lower() != ".zip":
        with upload.open("rb") as f:
            return upload.name, f.read(HEAD_BYTES).decode("utf-8-sig", errors="replace").splitlines()
    with zipfile.ZipFile(upload) as z:
        inside = [i for i in z.infolist() if Path(i.filename).suffix.lower() in (".csv", ".jsonl")
                  and not i.is_dir()]
        if len(inside) != 1:
            raise ValueError(f"{upload.name}: the zip must hold exactly one .csv or .jsonl manifest "
                             f"(found {len(inside)})")
        with z.open(inside[0]) as f:
            head = f.read(HEAD_BYTES).decode("utf-8-sig", errors="replace")
        return Path(inside[0].filename).name, head.splitlines()


def manifest_columns(upload: str | Path) -> tuple[str, list[str]]:
    """(the manifest's name, its column names): a CSV's header, or the fields of a JSONL's first record."""
    upload = Path(upload)
    try:
        name, lines = _head_lines(upload)
    except zipfile.BadZipFile:
        raise ValueError(f"{upload.name}: not a readable zip file") from None
    lines = [line for line in lines if line.strip()]
    if not lines:
        raise ValueError(f"{name}: the manifest is empty")
    if name.lower().endswith(".jsonl"):
        check_text_depth(lines[0], name)  # a ValueError naming the file, before the parser recurses
        try:
            record = json.loads(lines[0])
        except json.JSONDecodeError:
            raise ValueError(f"{name}: line 1 is not a JSON object") from None
        if not isinstance(record, dict):
            raise ValueError(f"{name}: line 1 is not a JSON object")
        return name, [str(k) for k in record]
    return name, [c.strip() for c in next(csv.reader(io.StringIO(lines[0])))]


def guess_mapping(columns: list[str]) -> dict[str, str]:
    """Option -> column for each role: the default name where present, else the first column whose name
    suggests the role (`clip_id` for id, `wav_path` for audio), else none; a column serves one role."""
    mapping, taken = {}, set()
    for _, option, default, words, _ in ROLES:
        lowered = {c: c.lower() for c in columns if c not in taken}
        found = default if default in lowered else next(
            (c for word in words for c, low in lowered.items() if word in re.split(r"[^a-z0-9]+", low)), "")
        mapping[option] = found
        taken.add(found)
    return mapping


def _found_text(name: str, columns: list[str], mapping: dict[str, str]) -> str:
    used = ", ".join(f"{role} ← `{mapping[option]}`" for role, option, *_ in ROLES if mapping[option])
    missing = [role for role, option, _, _, required in ROLES if required and not mapping[option]]
    text = f"**{name}** has columns {', '.join(f'`{c}`' for c in columns)}. Mapped: {used or 'nothing'}."
    if missing:
        text += f" Choose the {' and '.join(missing)} column below."
    return text


def _on_upload(upload):
    """The upload's columns offered for each role, with a guess chosen; unreadable files say why here."""
    if upload is None:
        return (EXPECTED, *(gr.Dropdown(choices=[NONE], value=NONE) for _ in ROLES))
    try:
        check_type(upload, BATCH_TYPES, "upload")
        name, columns = manifest_columns(upload)
    except (ValueError, OSError, UnicodeError, gr.Error) as error:
        message = error.message if isinstance(error, gr.Error) else str(error)
        return (f"{EXPECTED}\n\n**Cannot read the upload:** {public_message(message, Path(upload).parent)}",
                *(gr.Dropdown() for _ in ROLES))
    mapping = guess_mapping(columns)
    return (f"{EXPECTED}\n\n{_found_text(name, columns, mapping)}",
            *(gr.Dropdown(choices=[NONE, *columns], value=mapping[option] or NONE) for _, option, *_ in ROLES))


def column_options(*chosen) -> dict[str, str]:
    """The run's column options from the dropdowns: a role left unchosen reads no column (id must be chosen)."""
    options = {}
    for (role, option, _, _, required), value in zip(ROLES, chosen, strict=True):
        value = str(value or "").strip()
        if value in ("", NONE):
            if required:
                raise user_error(f"Columns: choose the {role} column (each row needs a unique id).")
            value = ""
        options[option] = value
    return options


def _limit(text) -> int | None:
    text = str(text or "").strip()
    if text and not (text.isdigit() and int(text) > 0):
        raise user_error(f"Limit: a whole number of rows (at least 1), or empty for all rows; got {text!r}")
    return int(text) if text else None


def _batch_handler(service: Service):
    """The Batch button's handler: one evaluate run over the upload, its table, plot, zip and failures."""

    def run_batch(upload, labels, template, task, limit, data_folder, adapter=NO_ADAPTER, mode=None, modalities=None,
                  *rest, progress=gr.Progress(track_tqdm=True)):  # noqa: B008
        # The column choices, then the reasoning order (last: earlier API callers leave it out).
        columns, reasoning = rest[:len(ROLES)], (rest[len(ROLES):] or [None])[0]
        if upload is None:
            raise user_error("Upload a .zip of manifest + clips, or a CSV/JSONL manifest (columns: id, text, label, "
                             "and optionally video, audio or image; other names: map them under Columns).")
        check_type(upload, BATCH_TYPES, "upload")
        try:
            options = BatchOptions(None if adapter in (None, NO_ADAPTER) else adapter, mode or None, modalities or None,
                                   column_options(*columns) if columns else None,
                                   None if reasoning in (None, "") else reasoning)
            run = service.run_batch(upload, labels, task or "emotion", _limit(limit), template, data_folder or None,
                                    options)
        except (ValueError, RuntimeError, ConnectionError, OSError) as error:
            raise user_error(public_message(str(error), Path(upload).parent)) from None
        metrics = run.metrics
        rows = [[t, m["n"], *(round(m.get(k, float("nan")), 4) for k in ("accuracy", "weighted_f1", "macro_f1", "uar",
                                                                          "failure_rate"))]
                for t, m in metrics["tasks"].items()]  # list-answer tasks (no accuracy) show NaN there
        from mllm_mer.evaluation.report import summary

        status = "  \n".join(summary(metrics))
        failures = [[f["id"], f["kind"], public_message(str(f["error"]))] for f in metrics["failures"]]
        confusion = run.out / "confusion.png"
        return (rows, str(confusion) if confusion.is_file() else None, str(run.archive), status,
                failures or [["", "", ""]])

    return run_batch


def _column_dropdowns() -> list[gr.Dropdown]:
    with gr.Accordion("Columns (as --id-col, --text-col, ... on the command line)", open=True), gr.Row():
        return [gr.Dropdown([NONE, default], value=default, label=f"{role} column", allow_custom_value=True,
                            info="required" if required else None)
                for role, _, default, _, required in ROLES]


def build_batch_tab(service: Service) -> None:
    config = service.config
    run_batch = _batch_handler(service)
    default_labels = config.prompt.labels or "meld"
    with gr.Tab("Batch"):
        expected = gr.Markdown(EXPECTED, elem_id="batch-columns")
        with gr.Row():
            upload = gr.File(label="Manifest + clips (.zip), or a manifest (.csv/.jsonl)", file_types=list(BATCH_TYPES))
            with gr.Column():
                batch_labels = gr.Dropdown(sorted({*available_label_sets(), default_labels}), value=default_labels,
                                           label="Label set")
                batch_template = gr.Dropdown(available_templates(), value=config.prompt.template or "zero_shot",
                                             label="Template")
                task = gr.Textbox(value="emotion", label="Task of the label column")
                # A text box: Gradio's number box shows an empty value as 0.
                limit = gr.Textbox(label="Limit (optional)", placeholder="all rows")
                folders = [str(Path(d)) for d in config.ui.data_dirs]
                data_folder = gr.Dropdown(folders, value=folders[0] if len(folders) == 1 else None,
                                          label="Clips folder on the server (for a plain manifest)",
                                          visible=bool(folders))
                with gr.Row():  # the same choices as Analyse, the same defaults as the command line
                    batch_adapter = gr.Dropdown([NO_ADAPTER, *config.model.adapters], value=NO_ADAPTER,
                                                label="Adapter")
                    batch_mode = gr.Radio(["generate", "score"], value=config.prompt.mode or "generate", label="Mode")
                    batch_modalities = gr.CheckboxGroup(MODALITY_CHOICES, value=MODALITY_CHOICES, label="Modalities")
                    batch_reasoning = gr.Dropdown(REASONING_CHOICES, value=config.prompt.reasoning or "none",
                                                  label="Reasoning", info=REASONING_INFO)
        columns = _column_dropdowns()
        run = gr.Button("Run", variant="primary")
        batch_status = gr.Markdown()
        metrics_table = gr.Dataframe(headers=["task", "n", "accuracy", "weighted F1", "macro F1", "UAR",
                                              "failures"], label="Metrics", interactive=False)
        failures = gr.Dataframe(headers=["id", "kind", "reason"], label="Failures", interactive=False)
        confusion = gr.Image(label="Confusion matrices", type="filepath")
        download = gr.File(label="The whole run (predictions, metrics, report, plots) as a zip")
        upload.change(_on_upload, [upload], [expected, *columns], queue=False, show_progress="hidden")
        # One progress (and error) marker, on the status line, not one per output.
        run.click(run_batch, [upload, batch_labels, batch_template, task, limit, data_folder, batch_adapter, batch_mode,
                              batch_modalities, *columns, batch_reasoning],
                  [metrics_table, confusion, download, batch_status, failures], api_name="batch",
                  show_progress_on=[batch_status])
