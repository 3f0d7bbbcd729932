"""One place builds a run (mllm_mer.pipeline.build): no verb, app path, training step or benchmark loads a
backend or chains prompt -> strategy -> resources itself, and backends close as context managers."""
import re
from pathlib import Path

import pytest

from mllm_mer.backends.base import Backend, BackendBase
from mllm_mer.config import ModelConfig, PredictConfig, build
from mllm_mer.pipeline.build import build_run, chosen_adapter

ROOT = Path(__file__).resolve().parents[2]
BUILDER = ROOT / "mllm_mer" / "pipeline" / "build.py"
# Where each step is defined (a definition is not a use).
DEFINED = {"load_backend": ROOT / "mllm_mer" / "backends" / "__init__.py",
           "resolve_prompt": ROOT / "mllm_mer" / "pipeline" / "resolve.py",
           "resolve_strategy": ROOT / "mllm_mer" / "pipeline" / "resolve.py",
           "build_resources": ROOT / "mllm_mer" / "pipeline" / "resources.py"}
ASSEMBLY = re.compile(r"(?<!def )\b(load_backend|resolve_prompt|resolve_strategy|build_resources)\(")
FIRST_ADAPTER = re.compile(r"next\(iter\([^)]*adapters\)")


def sources():
    for folder in ("mllm_mer", "benchmarks"):
        yield from sorted((ROOT / folder).rglob("*.py"))


def test_runs_are_assembled_only_by_the_builder():
    found = []
    for path in sources():
        if path == BUILDER:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for match in ASSEMBLY.finditer(line):
                if DEFINED[match.group(1)] != path:
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
            if FIRST_ADAPTER.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()} (the builder picks the adapter)")
    assert not found, "run assembled outside mllm_mer/pipeline/build.py:\n" + "\n".join(found)


def test_optional_backend_abilities_are_declared_not_probed():
    for path in sources():
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"hasattr\((self\.)?_?backend\b", text), path


def test_a_backend_closes_when_its_block_ends_even_on_error():
    class ClosingStandIn(BackendBase):
        name = "stand-in"
        closed = 0

        def close(self):
            self.closed += 1

    backend = ClosingStandIn()
    with pytest.raises(RuntimeError), backend as opened:
        assert opened is backend
        raise RuntimeError("mid-run")
    assert backend.closed == 1
    assert backend.can_stream is False and backend.max_images is None and backend.adapters == {}
    with pytest.raises(NotImplementedError, match="batches only"):
        backend.stream()
    assert {"stream", "__enter__", "__exit__"} <= set(dir(Backend))
    assert {"can_stream", "adapters", "max_images", "max_audios", "tokenizer"} <= set(Backend.__annotations__)


def test_the_first_adapter_given_is_the_one_a_run_uses():
    assert chosen_adapter(ModelConfig(model="m", adapter=["b=/x", "a=/y"])) == "b"
    assert chosen_adapter(ModelConfig(model="m")) is None


def test_build_run_gives_the_context_a_verb_answers_with():
    cfg = build(PredictConfig, model="m", labels="meld", template="label_only", modalities=["text"],
                adapter=["tuned=/nowhere"])
    run = build_run(cfg, probabilities=False, media_roots=("/data",))
    assert run.context.setup is run.setup and run.context.strategy is run.strategy
    assert run.setup.scheme.name == "meld" and run.setup.modalities == ("text",)
    assert run.setup.media.allowed_roots == ("/data",) and run.context.adapter == "tuned"
    assert run.context.probabilities is False and run.strategy.name == "single"
    assert run.context.resources.index is None
    assert run.for_adapter(None).adapter is None and run.context.adapter == "tuned"


def test_an_adapters_saved_prompt_fills_what_the_flags_leave_and_a_differing_flag_wins_with_a_warning(
        tmp_path, caplog):
    from mllm_mer.config import MediaConfig, PromptConfig
    from mllm_mer.core.labels import LABELS_DIR
    from mllm_mer.core.paths import ADAPTER_PROMPT
    from mllm_mer.pipeline.resolve import resolve_prompt

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / ADAPTER_PROMPT).write_text("labels: meld\ntemplate: label_only\nmodalities: [text]\n"
                                          "media: {max_frames: 4}\nreasoning: {order: before, max_tokens: 64}\n")
    model = ModelConfig(model="m", adapter=[f"tuned={adapter}"])
    with caplog.at_level("WARNING", logger="mllm_mer.pipeline.resolve"):
        setup = resolve_prompt(model, PromptConfig(labels=str(LABELS_DIR / "meld.yaml")), MediaConfig())
    assert (setup.scheme.name, setup.template, setup.modalities) == ("meld", "label_only", ("text",))
    assert setup.media.max_frames == 4 and (setup.reasoning.order, setup.reasoning.max_tokens) == ("before", 64)
    assert not caplog.records  # the bundled set named by its file is the set the adapter was trained with
    with caplog.at_level("WARNING", logger="mllm_mer.pipeline.resolve"):
        setup = resolve_prompt(model, PromptConfig(labels="ravdess", modalities=["text,video"]), MediaConfig())
    assert setup.scheme.name == "ravdess" and setup.modalities == ("text", "video")
    assert sorted(r.getMessage().split(":")[0] for r in caplog.records) == ["labels", "modalities"]
