"""Calibrated entity scores on CoNLL-2003: temperatures fitted on dev
(``eng.testa``), entity-level ECE (10 bins) measured on test (``eng.testb``).

The pipeline runs once over each set (through ``calibration.collect``, as the
``calibrate`` command does); then every fit the command offers is made on dev
and measured on both sets:

* ``entity`` / ``token`` objective (``--objective``), one temperature or one
  per label (``--per-label``);
* ``oracle``: one temperature fitted on **test** itself, the best temperature
  scaling of these scores can do there;
* ``dev bins``: each score replaced by the accuracy of its bin on dev (a
  calibrator with no shape of its own, exact on dev by construction): what
  any recalibration fitted on dev can hope for on test.

ECE is never below |mean score - share right| (the bins' gaps, summed
without their signs), so a calibrator that matches dev's precision cannot
reach a small ECE on a test set whose precision is lower: the table shows each
fit's mean score on test beside test's precision.

The bar (issue 26): ECE on test after ≤ 0.03 and below before. That calibration
leaves entities unchanged is checked by the command itself (``--eval``), which
runs the written pipeline.

    python benchmarks/calibration.py              # about 2 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np

from spacy_hf_tagger.calibration.collect import Collected, collect
from spacy_hf_tagger.calibration.fitting import entity_scores, fit_setting, token_nll
from spacy_hf_tagger.calibration.reliability import bin_index, reliability
from spacy_hf_tagger.jobs.calibrate import read_gold
from spacy_hf_tagger.jobs.pipelines import load_pipeline
from spacy_hf_tagger.training.convert import convert_file

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DATA = SHARED / "data" / "conll2003"
DEFAULT_MODEL = SHARED / "models" / "minilm-conll03"
BAR = 0.03


def _dev_bins(dev: Collected, scores: np.ndarray) -> np.ndarray:
    """Each score replaced by the accuracy of its bin on dev (the bin's mean
    dev score where dev has none)."""
    table = reliability(dev.pipeline_scores, dev.entities.correct)
    middle = (np.arange(table.n_bins) + 0.5) / table.n_bins
    accuracy = np.where(table.counts > 0, table.accuracy, middle)
    return accuracy[bin_index(scores, table.n_bins)]


def _row(
    label: str, temperature: str, dev: Collected, test: Collected, t: Optional[np.ndarray]
) -> Tuple[str, str, float, float, float, float]:
    """Dev and test ECE, test's mean score and token NLL under temperatures `t`."""
    eces = [reliability(entity_scores(c.entities, t), c.entities.correct).ece for c in (dev, test)]
    mean = float(entity_scores(test.entities, t).mean())
    return (label, temperature, *eces, mean, token_nll(test.tokens, t))


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dev", default=str(DATA / "eng.testa"), help="CoNLL file to fit on")
    ap.add_argument("--test", default=str(DATA / "eng.testb"), help="CoNLL file to measure on")
    ap.add_argument("--model", default=str(DEFAULT_MODEL), help="HF model or pipeline")
    args = ap.parse_args(argv)

    started = time.perf_counter()
    nlp = load_pipeline(args.model)
    tagger = nlp.get_pipe("hf_token_tagger")
    with tempfile.TemporaryDirectory() as tmp:
        sets = {}
        for name, source in (("dev", args.dev), ("test", args.test)):
            path = Path(tmp) / f"{name}.spacy"
            convert_file("iob", Path(source), path)
            sets[name] = collect(nlp, "hf_token_tagger", read_gold(path, nlp))
    dev, test = sets["dev"], sets["test"]
    scheme = tagger.label_scheme
    seconds = time.perf_counter() - started
    print(f"{args.model}, {tagger.precision.runs_in}; pipeline runs {seconds:.0f} s")
    for name, c in sets.items():
        right = int(c.entities.correct.sum())
        print(
            f"{name}: {c.n_docs:,} docs, {c.n_gold:,} gold entities, {len(c.entities):,} "
            f"predicted, {right:,} right (precision {right / len(c.entities):.4f})"
        )

    rows = [_row("before (the model's scores)", "1", dev, test, None)]
    for objective in ("entity", "token"):
        for per_label in (False, True):
            setting, t = fit_setting(scheme, dev.tokens, dev.entities, objective, per_label)
            label = f"{objective}{', per label' if per_label else ''}"
            rows.append(_row(label, str(setting), dev, test, t))
    setting, t = fit_setting(scheme, test.tokens, test.entities, "entity", False)
    rows.append(_row("oracle: entity, fitted on test", str(setting), dev, test, t))
    binned = [_dev_bins(dev, c.pipeline_scores) for c in (dev, test)]
    eces = [reliability(b, c.entities.correct).ece for b, c in zip(binned, (dev, test))]
    rows.append(("dev bins (no temperature)", "-", *eces, float(binned[1].mean()), float("nan")))

    precision = test.entities.correct.mean()
    print(
        "\n| fit on dev | temperature | dev ECE | test ECE "
        f"| test mean score (precision {precision:.4f}) | test token NLL |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for label, temperature, *figures in rows:
        print(f"| {label} | {temperature} | " + " | ".join(f"{x:.4f}" for x in figures) + " |")
    before = rows[0][2:4]
    default = rows[1]
    met = default[3] <= BAR and default[3] < before[1]
    print(
        f"\nbar (entity objective, one temperature): test ECE {before[1]:.4f} -> {default[3]:.4f}: "
        f"{'met' if met else 'NOT met'} (<= {BAR} and lower than before)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
