"""The Ray Data engine on a local Ray cluster (2 CPUs, started here).

Why: a corpus too large for one machine runs on Ray Data with an actor pool,
each actor loading the pipeline once. Its rows must be exactly those of the
local engine: same entities, scores, ids, kept columns and errors file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import spacy
from job_rows import same_entities, same_rows

ray = pytest.importorskip("ray", reason="ray not installed (pip install '.[ray]')")

from spacy_hf_tagger.jobs.corpus import run_job  # noqa: E402
from spacy_hf_tagger.jobs.ray_data import ActorPool, RayAnnotator, annotate_dataset  # noqa: E402
from spacy_hf_tagger.jobs.records import entity_rows  # noqa: E402

TEXTS = [
    "My name is Sarah and I live in Paris.",
    "John Smith visited Berlin last May.",
    "Acme Corp. hired Maria Garcia in 2021.",
    "",
    "Sarah flew from London to New York on Monday.",
    "David works at Google in London.",
]


@pytest.fixture(scope="module", autouse=True)
def local_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def local_rows(model: Path):
    nlp = spacy.blank("en")
    nlp.add_pipe("hf_token_tagger", config={"model": str(model)})
    return [entity_rows(doc) for doc in nlp.pipe(TEXTS)]


def test_annotate_dataset_matches_the_local_pipeline(model):
    ds = ray.data.from_items([{"id": f"r{i}", "text": t} for i, t in enumerate(TEXTS)])
    out = annotate_dataset(ds, str(model), workers=1, batch_size=4).take_all()
    by_id = {row["id"]: row for row in out}
    assert sorted(by_id) == [f"r{i}" for i in range(len(TEXTS))]
    expected = local_rows(model)
    assert expected[0] == [
        {"start": 11, "end": 16, "label": "PER", "score": expected[0][0]["score"], "text": "Sarah"},
        {"start": 31, "end": 36, "label": "LOC", "score": expected[0][1]["score"], "text": "Paris"},
    ]
    for i, text in enumerate(TEXTS):
        row = by_id[f"r{i}"]
        assert row["text"] == text
        same_entities(list(row["ents"]), expected[i])


def test_a_row_without_a_string_text_stops_the_job_with_its_column(model):
    ds = ray.data.from_items([{"body": "Sarah lives in Paris."}, {"body": None}])
    with pytest.raises(Exception, match="column 'body' holds a NoneType"):
        annotate_dataset(ds, str(model), text_key="body", workers=1).take_all()


def test_the_cli_job_on_ray_writes_what_the_local_engine_writes(model, tmp_path):
    source = tmp_path / "in.jsonl"
    lines = [json.dumps({"id": i, "text": t, "src": "news"}) for i, t in enumerate(TEXTS)]
    lines.insert(2, "{not json")
    lines.insert(4, json.dumps({"id": 99, "text": 7}))
    source.write_text("\n".join(lines) + "\n", encoding="utf8")
    nlp = spacy.blank("en")
    nlp.add_pipe("hf_token_tagger", config={"model": str(model)})
    local = run_job(nlp, source, tmp_path / "local.jsonl", keep=["src"])
    engine = RayAnnotator(ActorPool(str(model), batch_size=3))
    # Chunks of 3 records: several actor pools, and order kept across them.
    remote = run_job(engine, source, tmp_path / "ray.jsonl", keep=["src"], chunk_size=3)
    assert (remote.records, remote.entities, remote.errors, remote.words) == (
        local.records,
        local.entities,
        local.errors,
        local.words,
    )
    assert (local.records, local.errors) == (8, 2)
    local_rows = [json.loads(x) for x in (tmp_path / "local.jsonl").read_text().splitlines()]
    ray_rows = [json.loads(x) for x in (tmp_path / "ray.jsonl").read_text().splitlines()]
    assert [r["id"] for r in ray_rows] == [0, 1, 2, 3, 4, 5]
    assert all(r["src"] == "news" for r in ray_rows)
    same_rows(ray_rows, local_rows)
    assert (tmp_path / "ray.jsonl.errors.jsonl").read_text() == (
        tmp_path / "local.jsonl.errors.jsonl"
    ).read_text()


def test_the_command_line_runs_on_ray(model, tmp_path):
    from spacy_hf_tagger.cli import main

    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS[:3]) + "\n", encoding="utf8")
    out = tmp_path / "out.jsonl"
    args = ["annotate", str(model), str(source), str(out), "--engine", "ray", "--workers", "1"]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--chunk-size", "2"])
    assert exit_info.value.code == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [1, 2, 3]
    assert [(e["text"], e["label"]) for e in rows[0]["ents"]] == [
        ("Sarah", "PER"),
        ("Paris", "LOC"),
    ]


def test_annotate_dataset_writes_parquet_that_reads_back_with_blocks_without_entities(
    model, tmp_path
):
    import pyarrow.parquet as pq

    from spacy_hf_tagger.jobs.sinks import entity_type

    rows = [{"text": ""}] * 4 + [{"text": TEXTS[0]}] * 4  # a block without entities
    ds = ray.data.from_items(rows, override_num_blocks=2)
    annotate_dataset(ds, str(model), workers=1, batch_size=4).write_parquet(str(tmp_path / "out"))
    table = pq.read_table(tmp_path / "out")
    assert table.schema.field("ents").type == entity_type()
    texts = sorted((r["text"], [e["text"] for e in r["ents"]]) for r in table.to_pylist())
    assert texts[0] == ("", []) and texts[-1] == (TEXTS[0], ["Sarah", "Paris"])
