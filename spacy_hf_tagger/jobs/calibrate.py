"""The `calibrate` command's work: fit `temperature` on a dev set, write the
pipeline with it, measure ECE before and after, draw the diagram.

    python -m spacy_hf_tagger calibrate PIPELINE DEV.spacy OUTPUT_DIR
        [--per-label] [--eval TEST.spacy] [--plot reliability.png]

The fit runs on the pipeline's raw probabilities (whatever temperature it
has now) over DEV's texts; "before" is the pipeline as given, "after" the
written one. With `--eval`, both pipelines run over TEST: its ECE before and
after are the scores each pipeline itself wrote, and the docs whose decoded
or written entities differ between them are counted (calibration changes
scores only, so decoded entities never differ; written ones can only where a
`threshold` reads the new scores).
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
from spacy.language import Language
from spacy.tokens import Doc, DocBin

from ..calibration.collect import Collected, collect
from ..calibration.fitting import OBJECTIVES, entity_nll, entity_scores, fit_setting, token_nll
from ..calibration.reliability import Reliability, reliability
from ..calibration.temperature import Temperature, label_temperatures
from ..errors import JobError
from .pipelines import load_pipeline, tagger_names

EXTRA_HINT = "pip install 'spacy-hf-tagger[calibrate]'"


@dataclass(frozen=True)
class SetResult:
    """One gold set through the pipeline before and after calibration."""

    path: Path
    n_docs: int
    n_gold: int
    n_entities: int
    n_right: int
    before: Reliability
    after: Reliability
    # --eval only: docs whose decoded / written entities differ between the
    # pipelines, and the largest difference between the scores the calibrated
    # pipeline wrote and those the fit computed for it.
    decoded_changed: Optional[int] = None
    written_changed: Optional[int] = None
    score_gap: Optional[float] = None


@dataclass(frozen=True)
class CalibrationResult:
    component: str
    objective: str
    previous: Temperature
    temperature: Temperature
    # (token NLL, entity NLL) on DEV, before and after.
    losses_before: Tuple[float, float]
    losses_after: Tuple[float, float]
    tokens: int
    tokens_left_out: int
    dev: SetResult
    test: Optional[SetResult]
    output: Path
    plot: Optional[Path]


def _require(module: str, what: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise JobError(f"{what} needs {module}, which is not installed: {EXTRA_HINT}.")


def read_gold(path: Path, nlp: Language) -> List[Doc]:
    """The docs of a .spacy file, which must hold gold entities."""
    if not path.is_file():
        raise JobError(f"{path} is not a file: give a .spacy file (DocBin) with gold entities.")
    try:
        docs = list(DocBin().from_disk(path).get_docs(nlp.vocab))
    except Exception as err:  # msgpack, zlib and spaCy all raise their own kinds
        raise JobError(
            f"{path} could not be read as a .spacy file (DocBin): {type(err).__name__}. "
            "Convert CoNLL/IOB data with `python -m spacy_hf_tagger convert iob`."
        ) from err
    if not any(doc.ents for doc in docs):
        raise JobError(
            f"{path} holds {len(docs)} docs and no gold entities: calibration needs "
            "annotated data."
        )
    return docs


def _component(nlp: Language, name: Optional[str]) -> str:
    names = tagger_names(nlp)
    if name is not None:
        if name not in names:
            raise JobError(
                f"--component {name!r} is not an hf_token_tagger of this pipeline: use one of "
                f"{names}."
            )
        return name
    if len(names) != 1:
        raise JobError(
            f"The pipeline has {len(names)} hf_token_tagger components ({names}): "
            "name one with --component."
        )
    return names[0]


def _set_result(
    path: Path, before: Collected, after_scores: np.ndarray, after: Optional[Collected] = None
) -> SetResult:
    correct = before.entities.correct
    extra = {}
    if after is not None:
        extra = dict(
            decoded_changed=sum(a != b for a, b in zip(before.decoded, after.decoded)),
            written_changed=sum(a != b for a, b in zip(before.written, after.written)),
            score_gap=float(np.abs(after.pipeline_scores - after_scores).max(initial=0.0)),
        )
        after_scores = after.pipeline_scores
    return SetResult(
        path,
        before.n_docs,
        before.n_gold,
        len(correct),
        int(correct.sum()),
        reliability(before.pipeline_scores, correct),
        reliability(after_scores, correct),
        **extra,
    )


def calibrate(
    pipeline: str,
    dev_path: Path,
    output: Path,
    *,
    per_label: bool = False,
    objective: str = "entity",
    component: Optional[str] = None,
    eval_path: Optional[Path] = None,
    plot: Optional[Path] = None,
    lang: str = "en",
) -> CalibrationResult:
    """Fit, write OUTPUT, measure; see the module's docstring."""
    if objective not in OBJECTIVES:
        raise JobError(f"--objective {objective!r}: use one of {', '.join(OBJECTIVES)}.")
    _require("scipy", "Fitting a temperature")
    if plot is not None:
        _require("matplotlib", "--plot")
    if Path(output).resolve() == Path(pipeline).expanduser().resolve():
        raise JobError(f"OUTPUT_DIR {output} is the pipeline itself: write to another folder.")
    nlp = load_pipeline(pipeline, lang)
    name = _component(nlp, component)
    tagger = nlp.get_pipe(name)
    scheme = tagger.label_scheme
    if not scheme.is_entity:
        raise JobError(
            f"{name} is a tagging model (labels {list(scheme.labels)[:6]}): calibrate measures "
            "entity scores, for entity models."
        )
    dev_docs = read_gold(dev_path, nlp)
    eval_docs = read_gold(eval_path, nlp) if eval_path is not None else None
    dev = collect(nlp, name, dev_docs)
    if not len(dev.entities) or not len(dev.tokens):
        raise JobError(
            f"{dev_path}: the pipeline found {len(dev.entities)} entities and "
            f"{len(dev.tokens)} scorable tokens there: nothing to fit on."
        )
    setting, per_label_t = fit_setting(scheme, dev.tokens, dev.entities, objective, per_label)
    previous_t = label_temperatures(scheme, tagger.settings.temperature)

    def losses(t: Optional[np.ndarray]) -> Tuple[float, float]:
        return token_nll(dev.tokens, t), entity_nll(dev.entities, t)

    dev_result = _set_result(dev_path, dev, entity_scores(dev.entities, per_label_t))
    before_test = collect(nlp, name, eval_docs) if eval_docs is not None else None
    previous = tagger.settings.temperature
    del nlp, tagger  # one model in memory at a time

    calibrated = load_pipeline(pipeline, lang, {f"components.{name}.temperature": setting})
    calibrated.to_disk(output)
    test_result = None
    if eval_path is not None and eval_docs is not None and before_test is not None:
        after_test = collect(calibrated, name, eval_docs)
        expected = entity_scores(before_test.entities, per_label_t)
        test_result = _set_result(eval_path, before_test, expected, after_test)
    if plot is not None:
        from ..calibration.diagram import write_reliability_diagram

        rows = [dev_result] + ([test_result] if test_result is not None else [])
        write_reliability_diagram(
            plot,
            [
                [
                    (r.path.name, f"before (temperature {_short(previous)})", r.before),
                    (r.path.name, f"after (temperature {_short(setting)})", r.after),
                ]
                for r in rows
            ],
        )
    return CalibrationResult(
        name,
        objective,
        previous,
        setting,
        losses(previous_t),
        losses(per_label_t),
        len(dev.tokens),
        dev.tokens_left_out,
        dev_result,
        test_result,
        Path(output),
        plot,
    )


def _short(temperature: Temperature) -> str:
    if isinstance(temperature, dict):
        return "per label"
    return f"{float(temperature):g}"


def _temperature_text(temperature: Temperature) -> str:
    if isinstance(temperature, dict):
        return ", ".join(f"{key} {t:g}" for key, t in temperature.items())
    return f"{float(temperature):g}"


def _set_lines(label: str, result: SetResult) -> List[str]:
    precision = result.n_right / result.n_entities if result.n_entities else math.nan
    lines = [
        f"{label} {result.path}: {result.n_docs:,} docs, {result.n_gold:,} gold entities, "
        f"{result.n_entities:,} predicted, {result.n_right:,} right (precision {precision:.4f})",
        f"  ECE (10 bins): {result.before.ece:.4f} before -> {result.after.ece:.4f} after",
    ]
    if result.decoded_changed is not None:
        lines.append(
            f"  docs whose entities differ after calibration: {result.decoded_changed} decoded, "
            f"{result.written_changed} written, of {result.n_docs:,}; calibrated scores "
            f"within {result.score_gap:.1e} of the fit's"
        )
    return lines


def report_lines(result: CalibrationResult) -> List[str]:
    """What the command prints."""
    token_before, entity_before = result.losses_before
    token_after, entity_after = result.losses_after
    lines = [
        f"component {result.component}: temperature {_temperature_text(result.previous)} -> "
        f"{_temperature_text(result.temperature)} (fit: {result.objective} objective)",
        f"  dev NLL: tokens {token_before:.4f} -> {token_after:.4f} over {result.tokens:,} "
        f"tokens ({result.tokens_left_out:,} left out: a gold boundary inside them, or a label "
        f"the pipeline does not output); entities {entity_before:.4f} -> {entity_after:.4f}",
    ]
    lines += _set_lines("dev", result.dev)
    if result.test is not None:
        lines += _set_lines("eval", result.test)
    lines.append(f"pipeline with the temperature -> {result.output}")
    if result.plot is not None:
        lines.append(f"reliability diagram -> {result.plot}")
    return lines
