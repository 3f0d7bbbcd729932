"""Third-party lines that say nothing about the user's input stay off our paths: each is searched for by its
own words in a fresh process (the library prints each once per process), with a control showing the check
would see it."""
import subprocess
import sys
import textwrap

OMNI = """
import transformers
transformers.Qwen2_5OmniConfig(talker_config={"tts_text_start_token_id": 5}, enable_audio_output=False)
"""
QWEN3_VIDEO = """
import numpy as np, transformers
from mllm_mer.core.families import FAMILIES
processor = transformers.Qwen3VLVideoProcessor()
if {apply}:
    for name, value in FAMILIES["qwen3_vl"].video_processor_kwargs:
        setattr(processor, name, value)
frames = np.zeros((4, 64, 64, 3), dtype=np.uint8)
processor(videos=[frames], do_sample_frames=False, return_tensors="pt")
"""


def _stderr(code: str) -> str:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300, check=True).stderr


def test_the_omni_talkers_default_token_ids_are_not_reported_on_our_path():
    assert "tts_text_start_token_id must be" in _stderr(OMNI)  # the library's own line, without our package
    said = _stderr("import mllm_mer" + OMNI)
    assert "tts_text_start_token_id must be" not in said and "audio_end_token_id must be" not in said


def test_the_video_processors_pixel_cap_is_chosen_so_the_library_does_not_ask():
    assert "cap_pixels_per_frame" in _stderr(QWEN3_VIDEO.format(apply=False))
    assert "cap_pixels_per_frame" not in _stderr(QWEN3_VIDEO.format(apply=True))
