"""Rows of the corpus job compared across formats and engines: ids, kept
columns, entity spans, labels and texts exactly; scores within float
tolerance (engines batch docs differently)."""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

import pytest

EXACT = ("start", "end", "label", "text")


def same_entities(got: Sequence[Dict[str, Any]], want: Sequence[Dict[str, Any]]) -> None:
    assert [{k: e[k] for k in EXACT} for e in got] == [{k: e[k] for k in EXACT} for e in want]
    for a, b in zip(got, want):
        assert a["score"] == pytest.approx(b["score"], abs=1e-6)


def same_rows(got: List[Dict[str, Any]], want: List[Dict[str, Any]]) -> None:
    assert len(got) == len(want)
    for x, y in zip(got, want):
        assert {k: v for k, v in x.items() if k != "ents"} == {
            k: v for k, v in y.items() if k != "ents"
        }
        same_entities(x["ents"], y["ents"])
