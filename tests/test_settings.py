"""Settings written once: the README's table, the configs and the factory all
follow `spacy_hf_tagger.settings.Settings`."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path
from typing import Any, Dict, get_type_hints

import pytest
import spacy
from thinc.api import ConfigValidationError

from spacy_hf_tagger.component import HFTokenTagger, make_hf_token_tagger
from spacy_hf_tagger.errors import ConfigError
from spacy_hf_tagger.settings import SCORER, Settings, default_config, settings_table

REPO = Path(__file__).resolve().parents[1]
SETTING_NAMES = [f.name for f in dataclasses.fields(Settings)]
# What each shipped config sets on purpose, away from the defaults.
CONFIG_CHOICES: Dict[str, Dict[str, Any]] = {
    "ner_inference.cfg": {"annotate": ["ents", "spans"]},
    "tagger_inference.cfg": {"annotate": ["pos"]},
    "train_ner.cfg": {"annotate": ["ents", "spans"], "dtype": "float32"},
    "train_tagger.cfg": {"annotate": ["pos"], "dtype": "float32"},
}


def test_the_readme_table_is_the_settings_table() -> None:
    readme = (REPO / "README.md").read_text("utf8")
    match = re.search(r"^\| key \| default \| meaning \|\n(?:\|.*\|\n)+", readme, flags=re.M)
    assert match, "README.md has no settings table (| key | default | meaning |)"
    assert match.group(0).strip() == settings_table(), (
        "README's settings table differs from spacy_hf_tagger.settings: paste "
        "python -c 'from spacy_hf_tagger.settings import settings_table; "
        "print(settings_table())'"
    )


@pytest.mark.parametrize("name", sorted(CONFIG_CHOICES))
def test_each_config_names_every_setting_with_its_default_or_a_stated_choice(name: str) -> None:
    config = spacy.util.load_config(REPO / "configs" / name, interpolate=False)
    block = dict(config["components"]["hf_token_tagger"])
    assert block.pop("factory") == "hf_token_tagger"
    assert block.pop("scorer") == SCORER
    assert sorted(block) == sorted(SETTING_NAMES)
    defaults = default_config()
    expected = {key: CONFIG_CHOICES[name].get(key, defaults[key]) for key in SETTING_NAMES}
    assert block == expected


def test_the_factory_signature_is_the_settings_and_the_scorer() -> None:
    params = inspect.signature(make_hf_token_tagger).parameters
    assert list(params) == ["nlp", "name", *SETTING_NAMES, "scorer"]
    hints = get_type_hints(Settings)
    assert {name: params[name].annotation for name in SETTING_NAMES} == hints
    meta = spacy.Language.get_factory_meta("hf_token_tagger")
    assert meta.default_config == default_config()


def test_the_defaults_reach_the_component() -> None:
    nlp = spacy.blank("en")
    tagger = nlp.add_pipe("hf_token_tagger", config={"model": "some/model"})
    assert tagger.settings == Settings(model="some/model")
    assert dict(tagger.cfg) == Settings(model="some/model").as_dict()
    filled = nlp.config["components"]["hf_token_tagger"]
    assert {k: filled[k] for k in SETTING_NAMES} == Settings(model="some/model").as_dict()


def test_spacy_validates_setting_types_from_the_settings() -> None:
    nlp = spacy.blank("en")
    with pytest.raises(ConfigValidationError) as info:
        nlp.add_pipe("hf_token_tagger", config={"model": "m", "batch_size": "many"})
    assert "batch_size" in str(info.value)
    with pytest.raises(ConfigValidationError) as info:
        nlp.add_pipe("hf_token_tagger", config={"model": "m", "treshold": 0.5})
    assert "treshold" in str(info.value)


def test_our_own_checks_run_on_every_way_in() -> None:
    with pytest.raises(ConfigError, match="aggregation='last'"):
        Settings(aggregation="last")
    with pytest.raises(ConfigError, match="threshold=2"):
        HFTokenTagger(spacy.blank("en").vocab, model="m", threshold=2)
    with pytest.raises(ConfigError, match="context='page'"):
        spacy.blank("en").add_pipe("hf_token_tagger", config={"model": "m", "context": "page"})
    with pytest.raises(ConfigError, match=r"decoding='beam'.*use \"auto\".*\"greedy\""):
        spacy.blank("en").add_pipe("hf_token_tagger", config={"model": "m", "decoding": "beam"})
    assert Settings(decoding="viterbi-iob2").decoding == "viterbi-iob2"
    assert Settings().decoding == "auto"
    with pytest.raises(ConfigError, match="batch_size=0 must be null"):
        Settings(batch_size=0)
    with pytest.raises(ConfigError, match="batch_size=True"):
        Settings(batch_size=True)
    with pytest.raises(ConfigError, match="overlap='yes'"):
        Settings(overlap="yes")  # type: ignore[arg-type]
    assert Settings(batch_size=None, overlap=None).batch_size is None


def test_threshold_tables_and_o_bias_are_checked_when_the_pipe_is_added() -> None:
    """Values are checked at once; whether a table's labels are the model's, when
    it loads (tests/test_recall_knobs.py)."""
    table = Settings(threshold={"PER": 0.5, "*": 0.25}, o_bias=-2)
    assert table.threshold == {"PER": 0.5, "*": 0.25} and table.o_bias == -2
    assert Settings(threshold={}).threshold == {}
    with pytest.raises(ConfigError) as info:
        Settings(threshold=1.5)
    assert str(info.value) == (
        "threshold=1.5 must be between 0 and 1, or a table of such values by label, e.g. "
        '{"PER": 0.3, "*": 0.6}.'
    )
    with pytest.raises(ConfigError) as info:
        spacy.blank("en").add_pipe(
            "hf_token_tagger", config={"model": "m", "threshold": {"PER": 0.5, "LOC": -0.1}}
        )
    assert str(info.value) == (
        "threshold['LOC']=-0.1 must be a number between 0 and 1 (a span of that type is "
        "kept when its score is at least this)."
    )
    with pytest.raises(ConfigError, match=r"threshold\['PER'\]=True must be a number"):
        Settings(threshold={"PER": True})
    with pytest.raises(ConfigError, match=r"threshold has the key '' *: name entity types"):
        Settings(threshold={"": 0.5})
    # A block key written with quotes keeps them: say how to write it.
    with pytest.raises(ConfigError) as info:
        Settings(threshold={'"*"': 0.5})
    assert str(info.value) == (
        "threshold has the key '\"*\"', quotes included: in a [components.NAME.threshold] "
        "block, write keys without quotes (`* = 0.5`)."
    )
    for bad in (float("nan"), float("inf"), "1"):
        with pytest.raises(ConfigError, match=r"o_bias=.* must be a finite number"):
            HFTokenTagger(spacy.blank("en").vocab, model="m", o_bias=bad)
    with pytest.raises(ConfigValidationError, match="o_bias"):
        spacy.blank("en").add_pipe("hf_token_tagger", config={"model": "m", "o_bias": "high"})


def test_temperature_is_a_number_or_a_table_checked_on_every_way_in() -> None:
    assert Settings(temperature={"PER": 1.5, "O": 0.9}).temperature == {"PER": 1.5, "O": 0.9}
    nlp = spacy.blank("en")
    tagger = nlp.add_pipe("hf_token_tagger", config={"model": "m", "temperature": {"PER": 2}})
    assert tagger.cfg["temperature"] == {"PER": 2}
    assert type(tagger.settings.temperature) is dict  # a plain, owned copy
    with pytest.raises(ConfigError, match=r"temperature=0 is not a temperature\. Use a number"):
        Settings(temperature=0)
    with pytest.raises(ConfigError, match=r"temperature\['PER'\]=-1"):
        spacy.blank("en").add_pipe(
            "hf_token_tagger", config={"model": "m", "temperature": {"PER": -1}}
        )
    with pytest.raises(ConfigValidationError) as info:
        spacy.blank("en").add_pipe("hf_token_tagger", config={"model": "m", "temperature": "hot"})
    assert "temperature" in str(info.value)


def test_cfg_shows_the_settings_only_and_cannot_be_changed_behind_them() -> None:
    tagger = spacy.blank("en").add_pipe("hf_token_tagger", config={"model": "m"})
    assert sorted(tagger.cfg) == sorted(SETTING_NAMES)
    with pytest.raises(TypeError):
        tagger.cfg["threshold"] = 0.5  # type: ignore[index]
    tagger.cfg["label_map"]["PER"] = "PERSON"  # a copy: the settings stay
    assert tagger.settings.label_map == {}


def test_settings_own_their_lists_and_maps() -> None:
    label_map = {"PER": "PERSON"}
    ignore = ["MISC"]
    settings = Settings(label_map=label_map, ignore_labels=ignore)
    label_map["LOC"] = "GPE"
    ignore.append("ORG")
    assert settings.label_map == {"PER": "PERSON"}
    assert settings.ignore_labels == ["MISC"]


def test_the_scorer_learns_what_annotate_resolved_to(tiny_models) -> None:
    """Runtime state is out of `cfg`, but the scorer still gets it: a UPOS model
    with annotate=null is scored on POS, an entity model on entities."""
    from spacy.training import Example

    from spacy_hf_tagger.labels.schemes import UPOS_TAGS

    nlp = spacy.blank("en")
    nlp.add_pipe(
        "hf_token_tagger",
        config={"model": str(tiny_models("wordpiece-cased", labels=sorted(UPOS_TAGS)))},
    )
    doc = nlp("Sarah lives in Paris.")
    gold = spacy.blank("en")("Sarah lives in Paris.")
    for token, tag in zip(gold, ["PROPN", "VERB", "ADP", "PROPN", "PUNCT"]):
        token.pos_ = tag
    scores = nlp.get_pipe("hf_token_tagger").score([Example(doc, gold)])
    assert set(scores) == {"pos_acc"}
    assert 0.0 <= scores["pos_acc"] <= 1.0

    ner = spacy.blank("en")
    ner.add_pipe("hf_token_tagger", config={"model": str(tiny_models("wordpiece-cased"))})
    doc = ner("Sarah lives in Paris.")
    scores = ner.get_pipe("hf_token_tagger").score([Example(doc, doc.copy())])
    assert {"ents_p", "ents_r", "ents_f", "ents_per_type"} <= set(scores)
    assert "pos_acc" not in scores
