import pytest

from mllm_mer.core.labels import available, load_label_scheme
from mllm_mer.core.types import LabelSet

EXPECTED = {
    "meld": {"emotion": 7, "sentiment": 3},
    "iemocap6": {"emotion": 6},
    "iemocap4": {"emotion": 4},
    "mer2024": {"emotion": 6},
    "ravdess": {"emotion": 8},
    "mosi2": {"sentiment": 2},
    "mosi7": {"sentiment": 7},
    "wesad": {"state": 4},
    "wesad3": {"state": 3},
    "deap": {"valence": 2, "arousal": 2},
    "deap4": {"quadrant": 4},
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bundled_label_sets_load_with_their_sizes(name):
    spec = load_label_scheme(name)
    assert {ls.task: len(ls.labels) for ls in spec.label_sets} == EXPECTED[name]
    for ls in spec.label_sets:
        assert set(ls.descriptions) == set(ls.labels)


def test_every_bundled_file_is_known():
    assert set(available()) == set(EXPECTED)


def test_synonyms_and_case_normalise_to_labels():
    emotion = load_label_scheme("meld").task("emotion")
    assert emotion.normalise("happy") == "joy"
    assert emotion.normalise(" Anger. ") == "anger"
    assert emotion.normalise("banana") is None


def test_label_set_rejects_synonym_to_unknown_label():
    with pytest.raises(ValueError, match="unknown labels"):
        LabelSet(task="t", labels=("a", "b"), synonyms={"x": "c"})


def test_unknown_label_set_names_the_bundled_ones():
    with pytest.raises(FileNotFoundError, match="meld"):
        load_label_scheme("nope")
