"""Shared pytest fixtures: tiny local models per tokenizer family, ../shared, and
what `dtype="auto"` resolves to.

Why: most behaviour of the plugin depends on the tokenizer family (offsets, special
tokens, unknown pieces, position limits), but real checkpoints need the network and
take minutes to load. ``tiny_models`` builds a few-hundred-kilobyte model per family in
well under a second (a few seconds when trained) and caches it for the whole session,
so any test can ask for "the XLM-R-like model with these labels" freely.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import pytest
from tiny_models import NER_LABELS, build_tiny_model

TinyModelFactory = Callable[..., Path]

# What `--auto-precision` makes `dtype="auto"` believe about the CPU.
_AUTO_PRECISION_FLAGS = {"bfloat16": frozenset({"avx512_bf16"}), "float32": frozenset()}

_SHARED_DIR = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModelFactory:
    """Return ``get(family, labels=NER_LABELS, model_max_length=32, train_steps=0)``.

    Each distinct ``(family, labels, model_max_length, train_steps)`` is built once per
    session into its own folder and the same path is returned afterwards; callers must
    treat the folder as read-only because other tests share it. ``train_steps=100`` is
    the suggested value for tests that need the model to have memorised
    ``tiny_models.training_sentences()`` (sharing one value shares one build).
    """
    root = tmp_path_factory.mktemp("tiny_models")
    cache: dict[tuple[str, tuple[str, ...], Optional[int], int, str, str, str], Path] = {}

    def get(
        family: str,
        labels: Sequence[str] = NER_LABELS,
        model_max_length: Optional[int] = 32,
        train_steps: int = 0,
        recipe: str = "all",
        tagging: str = "iob2",
        data: str = "default",
    ) -> Path:
        key = (family, tuple(labels), model_max_length, train_steps, recipe, tagging, data)
        if key not in cache:
            out_dir = root / f"{family}-{len(cache)}"
            cache[key] = build_tiny_model(
                family,
                out_dir,
                list(labels),
                model_max_length=model_max_length,
                train_steps=train_steps,
                recipe=recipe,
                tagging=tagging,
                data=data,
            )
        return cache[key]

    return get


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_models: TinyModelFactory) -> TinyModelFactory:
    """Alias of :func:`tiny_models` for tests that read better as ``tiny_model_dir(family)``."""
    return tiny_models


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """Path to the sibling ``../shared`` folder holding the real model and data.

    Tests that need a real checkpoint or corpus skip (rather than fail) where the folder
    is missing, so the suite stays green on machines that only have the repository.
    """
    if not _SHARED_DIR.is_dir():
        pytest.skip(f"../shared is absent: needs the real model and data ({_SHARED_DIR} not found)")
    return _SHARED_DIR


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from a second intra-op thread, and on a loaded
    2-core machine OpenMP spin-waiting made their forward passes ~10x slower."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--auto-precision",
        choices=["cpu", "bfloat16", "float32"],
        default="cpu",
        help='What dtype="auto" runs in on CPU: as this CPU decides (default), or bf16 '
        "(emulated, slowly but correctly, where the CPU lacks it) or float32 whatever it "
        "has. CI runs the tests marked `precision` again with each.",
    )


def pytest_report_header(config: pytest.Config) -> str:
    import torch

    from spacy_hf_tagger.model.precision import choose_precision

    forced = config.getoption("--auto-precision")
    flags = _AUTO_PRECISION_FLAGS.get(forced)
    chosen = choose_precision("auto", torch.device("cpu"), flags)
    how = "as this CPU decides" if flags is None else "forced by --auto-precision"
    return f'spacy-hf-tagger: dtype="auto" runs in {chosen.runs_in} ({how}: {chosen.reason})'


@pytest.fixture(autouse=True, scope="session")
def _auto_precision(request: pytest.FixtureRequest) -> Iterator[None]:
    """Make `dtype="auto"` resolve as `--auto-precision` says, for the whole session."""
    flags = _AUTO_PRECISION_FLAGS.get(request.config.getoption("--auto-precision"))
    if flags is None:
        yield
        return
    from spacy_hf_tagger.model import precision

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(precision, "cpu_flags", lambda *args, **kwargs: flags)
        yield
