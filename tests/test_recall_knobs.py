"""The recall knobs through spaCy: `o_bias` and a `threshold` table as settings,
in configs and saved pipelines, checked against the model's labels when it
loads, and scored by `nlp.evaluate` (what `spacy evaluate` and `spacy train`
run) from the same decode as inference.

Why: the knob is for users who tune a PII tagger for recall with `spacy
evaluate`; a setting the scorer did not see, or a table lost on `to_disk`,
would make the figures they tune by lie. Each test pins the model's output
(the classifier's bias only, so every piece reads the same probabilities),
so the expected entities and scores are computed by hand.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import pytest
import spacy
import torch
from spacy.tokens import Doc
from spacy.training import Example
from spacy.training.loop import create_evaluation_callback

from spacy_hf_tagger.errors import ConfigError

TinyModelFactory = Callable[..., Path]

# Every piece reads these (tiny_models' NER_LABELS): O is the best label, B-PER
# the best other one; a bias above log(0.5 / 0.3) = 0.51 makes each token PER.
PROBS = {
    "O": 0.50,
    "B-PER": 0.30,
    "I-PER": 0.10,
    "B-LOC": 0.04,
    "I-LOC": 0.02,
    "B-ORG": 0.02,
    "I-ORG": 0.02,
}
PER_SCORE = 0.40  # P(B-PER) + P(I-PER): the model's, not the biased probability
TEXT = "Sarah met John"
TOL = 1e-4  # the float32 forward of log-probability biases


@pytest.fixture(scope="module")
def model(tiny_models: TinyModelFactory) -> Path:
    return tiny_models("wordpiece-cased")


def _pinned(model: Path, **cfg: Any) -> spacy.Language:
    """A pipeline whose model gives every piece the probabilities `PROBS` (in
    float32: they are the point, not the precision)."""
    nlp = spacy.blank("en")
    nlp.add_pipe("hf_token_tagger", config={"model": str(model), "dtype": "float32", **cfg})
    _pin(nlp)
    return nlp


def _pin(nlp: spacy.Language) -> None:
    hf_model = nlp.get_pipe("hf_token_tagger").hf_model
    id_of = {label: int(i) for i, label in hf_model.config.id2label.items()}
    with torch.no_grad():
        hf_model.classifier.weight.zero_()
        for label, p in PROBS.items():
            hf_model.classifier.bias[id_of[label]] = math.log(p)


def _ents(doc: Doc) -> List[Tuple[str, str, float]]:
    return [(e.text, e.label_, e._.hf_score) for e in doc.ents]


def test_o_bias_writes_the_likely_entities_with_the_models_scores(model: Path) -> None:
    assert _pinned(model)(TEXT).ents == ()
    assert _pinned(model, o_bias=0.5)(TEXT).ents == ()  # 0.5 * e^-0.5 = 0.303 > 0.3
    doc = _pinned(model, o_bias=1.0)(TEXT)
    # B-PER on each token: three one-token entities (B- after B- begins a new one).
    assert [(t, label) for t, label, _ in _ents(doc)] == [
        ("Sarah", "PER"),
        ("met", "PER"),
        ("John", "PER"),
    ]
    assert [score for _, _, score in _ents(doc)] == pytest.approx([PER_SCORE] * 3, abs=TOL)
    assert [t._.hf_score for t in doc] == pytest.approx([PER_SCORE] * 3, abs=TOL)
    assert [t._.hf_bio for t in doc] == ["B-PER", "B-PER", "B-PER"]
    assert doc.spans["hf_ents"].attrs["scores"] == pytest.approx([PER_SCORE] * 3, abs=TOL)
    # Viterbi reads the same biased probabilities (a new PER after PER reads
    # P(B-PER) = 0.3 against P(I-PER) = 0.1 to continue).
    viterbi = _pinned(model, o_bias=1.0, decoding="viterbi")(TEXT)
    assert [(e.text, e.label_) for e in viterbi.ents] == [(e.text, e.label_) for e in doc.ents]
    # O tokens score the model's P(O), however large the bias was short of turning them.
    doc = _pinned(model, o_bias=0.5)(TEXT)
    assert [t._.hf_score for t in doc] == pytest.approx([PROBS["O"]] * 3, abs=TOL)


@pytest.mark.parametrize(
    ("threshold", "label_map", "kept"),
    [
        ({"PER": 0.5}, {}, 0),  # PER's own entry: 0.4 < 0.5
        ({"LOC": 0.9}, {}, 3),  # another type's entry leaves PER alone
        ({"*": 0.5}, {}, 0),  # "*": every type the table does not name
        ({"*": 0.5, "PER": 0.39}, {}, 3),  # a named type beats "*"
        ({"PERSON": 0.5}, {"PER": "PERSON"}, 0),  # by the mapped name
        (0.5, {}, 0),  # a number, as before
    ],
)
def test_a_threshold_table_drops_its_types_and_counts_them(
    model: Path, threshold: Any, label_map: Dict[str, str], kept: int
) -> None:
    nlp = _pinned(model, o_bias=1.0, threshold=threshold, label_map=label_map)
    doc = nlp(TEXT)
    assert len(doc.ents) == kept
    assert nlp.get_pipe("hf_token_tagger").counters["ents_below_threshold"] == 3 - kept
    assert [t._.hf_bio for t in doc] == ["B-" + label_map.get("PER", "PER")] * kept + ["O"] * (
        3 - kept
    )


def test_a_table_naming_labels_the_model_lacks_fails_when_it_loads(model: Path) -> None:
    nlp = spacy.blank("en")
    tagger = nlp.add_pipe(
        "hf_token_tagger",
        config={"model": str(model), "threshold": {"PERSON": 0.5, "PER": 0.2}},
    )  # the labels are not known before the model loads
    with pytest.raises(ConfigError) as info:
        nlp("Sarah lives in Paris.")
    assert str(info.value) == (
        "threshold names labels the model does not have: ['PERSON']. The model's "
        "entity types are ['LOC', 'ORG', 'PER']. Name those, or use \"*\" for every "
        "type the table does not name."
    )
    assert "Sarah" not in str(info.value)
    assert not tagger.is_loaded  # it fails again on the next use, not silently


def test_o_bias_on_a_tagging_model_fails_when_it_loads(tiny_models: TinyModelFactory) -> None:
    path = tiny_models("wordpiece-cased", labels=["NOUN", "VERB", "PROPN", "PUNCT"])
    nlp = spacy.blank("en")
    nlp.add_pipe("hf_token_tagger", config={"model": str(path), "o_bias": 1.0})
    with pytest.raises(ConfigError, match=r"o_bias=1.0 .* this is a tagging model"):
        nlp("Sarah lives in Paris.")
    # The default is fine there, and so is a table of "*" alone.
    plain = spacy.blank("en")
    plain.add_pipe("hf_token_tagger", config={"model": str(path), "threshold": {"*": 0.5}})
    assert len(plain("Sarah lives in Paris.")) == 5


CONFIG = """
[nlp]
lang = "en"
pipeline = ["hf_token_tagger"]

[components]

[components.hf_token_tagger]
factory = "hf_token_tagger"
model = "{model}"
o_bias = 1.0
{threshold}
"""
INLINE = 'threshold = {"PER": 0.3, "*": 0.9}'
BLOCK = "\n[components.hf_token_tagger.threshold]\nPER = 0.3\n* = 0.9"


@pytest.mark.parametrize("threshold", [INLINE, BLOCK], ids=["inline", "block"])
def test_the_table_in_a_config_and_through_to_disk(
    model: Path, threshold: str, tmp_path: Path
) -> None:
    text = CONFIG.format(model=model, threshold=threshold)
    config = spacy.util.load_config_from_str(text)
    nlp = spacy.util.load_model_from_config(config, auto_fill=True)
    tagger = nlp.get_pipe("hf_token_tagger")
    assert tagger.settings.threshold == {"PER": 0.3, "*": 0.9}
    assert tagger.settings.o_bias == 1.0
    _pin(nlp)
    expected = [("Sarah", "PER"), ("met", "PER"), ("John", "PER")]
    assert [(e.text, e.label_) for e in nlp(TEXT).ents] == expected
    nlp.to_disk(tmp_path / "pipe")
    saved = (tmp_path / "pipe" / "config.cfg").read_text("utf8")
    assert "[components.hf_token_tagger.threshold]\nPER = 0.3\n* = 0.9" in saved
    loaded = spacy.load(tmp_path / "pipe")
    again = loaded.get_pipe("hf_token_tagger")
    assert again.settings.threshold == {"PER": 0.3, "*": 0.9}
    assert again.settings.o_bias == 1.0
    assert [(e.text, e.label_) for e in loaded(TEXT).ents] == expected
    # The same through add_pipe's config and spacy.load's overrides.
    added = spacy.blank("en")
    added.add_pipe(
        "hf_token_tagger",
        config={"model": str(model), "o_bias": 1.0, "threshold": {"PER": 0.3, "*": 0.9}},
    )
    assert added.get_pipe("hf_token_tagger").settings == tagger.settings
    stricter = spacy.load(
        tmp_path / "pipe", config={"components": {"hf_token_tagger": {"threshold": {"PER": 0.5}}}}
    )
    assert stricter(TEXT).ents == ()


def test_evaluate_and_training_scores_come_from_the_same_decode(model: Path) -> None:
    """`spacy evaluate` is `nlp.evaluate`; `spacy train` scores its dev set by
    the callback below, which calls it: both read what the component writes,
    bias and table included."""
    gold = spacy.blank("en").make_doc(TEXT)
    gold.ents = [gold.char_span(0, 5, "PER"), gold.char_span(10, 14, "PER")]

    def scores(**cfg: Any) -> Dict[str, Any]:
        nlp = _pinned(model, **cfg)
        examples = [Example(nlp.make_doc(TEXT), gold)]
        evaluated = nlp.evaluate(examples)
        weighted, trained = create_evaluation_callback(
            nlp, lambda _: [Example(nlp.make_doc(TEXT), gold)], {"ents_f": 1.0}
        )()
        assert trained["ents_f"] == evaluated["ents_f"] == weighted
        assert trained["ents_p"] == evaluated["ents_p"]
        assert trained["ents_r"] == evaluated["ents_r"]
        return evaluated

    plain = scores()
    assert (plain["ents_p"], plain["ents_r"]) == (0.0, 0.0)
    biased = scores(o_bias=1.0)  # Sarah, met, John: two of three right, both found
    assert biased["ents_p"] == pytest.approx(2 / 3)
    assert biased["ents_r"] == pytest.approx(1.0)
    assert biased["ents_f"] == pytest.approx(0.8)
    table = scores(o_bias=1.0, threshold={"PER": 0.5})
    assert (table["ents_p"], table["ents_r"]) == (0.0, 0.0)
