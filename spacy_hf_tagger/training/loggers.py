"""A training logger that makes sure the final weights are evaluated.

spaCy evaluates (and may copy weights to model-best) only at steps divisible
by `eval_frequency`, and not again when training stops: with `max_steps`
not a multiple of it, early stopping, or the end of the data, the final
weights land in model-last unscored, and model-best can be an early (or the
step-0, untrained) checkpoint while the final weights are better.

`spacy_hf_tagger.ConsoleLogger.v1` is spaCy's console logger plus one step at
the end: when the last step was not evaluated, it scores the final weights
on the dev corpus, prints the result, and when they beat every earlier
checkpoint it writes them to model-best (with their scores in meta.json).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import IO, Any, Callable, Dict, List, Optional, Tuple, Union

from spacy.language import Language
from spacy.training.loggers import console_logger_v3
from spacy.training.loop import create_evaluation_callback, update_meta
from spacy.util import registry, resolve_dot_names
from wasabi import Printer

LogStep = Callable[[Optional[Dict[str, Any]]], None]
Finalize = Callable[[], None]


class _FinalEvaluation:
    """Follows the training steps and evaluates the final weights if needed."""

    def __init__(self, nlp: Language, stdout: IO) -> None:
        self.nlp = nlp
        self.msg = Printer(no_print=True)
        self.stdout = stdout
        self.steps = 0
        self.last_evaluated: Optional[int] = None
        self.checkpoints: List[Tuple[float, int]] = []
        self.output_path: Optional[Path] = None

    def step(self, info: Optional[Dict[str, Any]]) -> None:
        self.steps += 1
        if info is not None:
            self.last_evaluated = int(info["step"])
            self.checkpoints = [(float(s), int(t)) for s, t in info["checkpoints"]]
            if info.get("output_path"):
                self.output_path = Path(info["output_path"]).parent

    def finish(self) -> None:
        if sys.exc_info()[0] is not None or self.steps == 0:
            return  # training failed or was interrupted: nothing to add
        final_step = self.steps - 1
        if self.last_evaluated == final_step:
            return
        config = self.nlp.config.interpolate()
        training = config["training"]
        (dev_corpus,) = resolve_dot_names(config, [training["dev_corpus"]])
        score_weights = training["score_weights"]
        evaluate = create_evaluation_callback(self.nlp, dev_corpus, score_weights)
        score, other_scores = evaluate()
        # model-last (written after this) holds these weights: give it their scores.
        update_meta(
            {"score_weights": score_weights},
            self.nlp,
            {"other_scores": other_scores, "losses": {}},
        )
        best = max(self.checkpoints) if self.checkpoints else None
        shown = ", ".join(
            f"{k} {v:.4f}"
            for k, v in other_scores.items()
            if score_weights.get(k) and isinstance(v, (int, float))
        )
        line = f"Final weights (step {final_step}, off the evaluation schedule): score {score:.4f}"
        if shown:
            line += f" ({shown})"
        if best is not None and score <= best[0]:
            self._write(self.msg.info(f"{line}; model-best stays step {best[1]} ({best[0]:.4f})."))
            return
        if self.output_path is None:
            self._write(self.msg.good(f"{line}: the best so far (no output folder to save it to)."))
            return
        best_dir = self.output_path / "model-best"
        if best_dir.exists():
            shutil.rmtree(best_dir)
        _before_to_disk(self.nlp)(self.nlp).to_disk(best_dir)
        self._write(self.msg.good(f"{line}: the best so far, saved to {best_dir}."))

    def _write(self, text: str) -> None:
        self.stdout.write(text + "\n")


def _before_to_disk(nlp: Language) -> Callable[[Language], Language]:
    """The config's `[training] before_to_disk` callback, or the identity."""
    setting = nlp.config["training"].get("before_to_disk")
    if not setting:
        return lambda nlp: nlp
    return registry.resolve({"callback": setting})["callback"]


@registry.loggers("spacy_hf_tagger.ConsoleLogger.v1")
def make_console_logger(
    progress_bar: Optional[str] = None,
    console_output: bool = True,
    output_file: Optional[Union[str, Path]] = None,
) -> Callable[..., Tuple[LogStep, Finalize]]:
    """spaCy's ConsoleLogger.v3 (same settings) that evaluates the final
    weights when the last step was not evaluated."""
    base = console_logger_v3(
        progress_bar=progress_bar, console_output=console_output, output_file=output_file
    )

    def setup(
        nlp: Language, stdout: IO = sys.stdout, stderr: IO = sys.stderr
    ) -> Tuple[LogStep, Finalize]:
        log_step, finalize = base(nlp, stdout, stderr)
        final = _FinalEvaluation(nlp, stdout)

        def step(info: Optional[Dict[str, Any]]) -> None:
            final.step(info)
            log_step(info)

        def finish() -> None:
            try:
                final.finish()
            finally:
                finalize()

        return step, finish

    return setup
