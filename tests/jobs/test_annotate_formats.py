"""The corpus job's other formats: Parquet and DocBin in, Parquet and DocBin shards out.

Why: corpora live in Parquet and in spaCy's DocBins as often as in JSONL. The
same records must give the same rows whatever the format, bad rows must go to
the errors file, and a resumed job must leave no part of a killed one behind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

import pytest
import spacy
from job_rows import same_rows
from spacy.tokens import DocBin
from tiny_models import training_sentences

from spacy_hf_tagger.jobs.corpus import LocalAnnotator, job_paths, run_job

pa = pytest.importorskip("pyarrow", reason="pyarrow not installed (pip install '.[ray]')")
pq = pytest.importorskip("pyarrow.parquet")

TEXTS = [text for text, _ in training_sentences()]


def jsonl_rows(path: Path) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf8").splitlines()]


def test_parquet_in_gives_the_rows_of_the_same_jsonl(nlp, tmp_path):
    records = [{"doc_id": f"d{i}", "body": t, "lang": "en"} for i, t in enumerate(TEXTS[:6])]
    records[2]["body"] = None  # a bad record
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "in.parquet", row_group_size=4)
    (tmp_path / "in.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n", "utf8")
    kwargs = dict(text_key="body", id_key="doc_id", keep=["lang"])
    from_parquet = run_job(nlp, tmp_path / "in.parquet", tmp_path / "a.jsonl", **kwargs)
    run_job(nlp, tmp_path / "in.jsonl", tmp_path / "b.jsonl", **kwargs)
    assert (from_parquet.records, from_parquet.errors) == (6, 1)
    same_rows(jsonl_rows(tmp_path / "a.jsonl"), jsonl_rows(tmp_path / "b.jsonl"))
    assert [r["id"] for r in jsonl_rows(tmp_path / "a.jsonl")] == ["d0", "d1", "d3", "d4", "d5"]
    errors, _ = job_paths(tmp_path / "a.jsonl")
    assert [(e["line"], e["id"], e["error"]) for e in jsonl_rows(errors)] == [
        (3, "d2", "'body' is a NoneType, not a string")
    ]


def test_docbin_in_reads_each_doc_s_text_and_id(nlp, tmp_path):
    blank = spacy.blank("en")
    docs = []
    for i, text in enumerate(TEXTS[:3]):
        doc = blank(text)
        doc.user_data["id"] = f"doc-{i}"
        docs.append(doc)
    DocBin(store_user_data=True, docs=docs).to_disk(tmp_path / "in.spacy")
    run_job(nlp, tmp_path / "in.spacy", tmp_path / "out.jsonl")
    got = jsonl_rows(tmp_path / "out.jsonl")
    assert [r["id"] for r in got] == ["doc-0", "doc-1", "doc-2"]
    assert [(e["text"], e["label"]) for e in got[0]["ents"]] == [("Sarah", "PER"), ("Paris", "LOC")]


def test_parquet_out_holds_the_jsonl_rows(nlp, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS[:7]) + "\n", "utf8")
    run_job(nlp, source, tmp_path / "rows.jsonl")
    summary = run_job(nlp, source, tmp_path / "out.parquet", chunk_size=3)
    assert summary.records == 7
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.schema.field("ents").type == pa.list_(
        pa.struct(
            [
                ("start", pa.int64()),
                ("end", pa.int64()),
                ("label", pa.string()),
                ("score", pa.float64()),
                ("text", pa.string()),
            ]
        )
    )
    same_rows(table.to_pylist(), jsonl_rows(tmp_path / "rows.jsonl"))
    assert not (tmp_path / "out.parquet.parts").exists()


def test_docbin_shards_keep_our_extensions(nlp, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS[:5]) + "\n", "utf8")
    out = tmp_path / "shards"
    run_job(nlp, source, out, chunk_size=2)
    shards = sorted(out.glob("*.spacy"))
    assert [p.name for p in shards] == [
        "part-000000.spacy",
        "part-000001.spacy",
        "part-000002.spacy",
    ]
    docs = [
        doc
        for shard in shards
        for doc in DocBin(store_user_data=True).from_disk(shard).get_docs(nlp.vocab)
    ]
    assert [d.text for d in docs] == TEXTS[:5]
    direct = list(nlp.pipe(TEXTS[:5]))
    for got, want in zip(docs, direct):
        assert [(e.text, e.label_) for e in got.ents] == [(e.text, e.label_) for e in want.ents]
        assert [t._.hf_bio for t in got] == [t._.hf_bio for t in want]
        assert [e._.hf_score for e in got.ents] == pytest.approx([e._.hf_score for e in want.ents])


class _Dies(LocalAnnotator):
    """Stops the job (as a kill would) on its `after`-th chunk, after the
    previous chunks were written and checkpointed."""

    def __init__(self, nlp, after: int) -> None:
        super().__init__(nlp)
        self.calls = 0
        self.after = after

    def docs(self, texts):
        self.calls += 1
        if self.calls == self.after:
            raise KeyboardInterrupt
        return super().docs(texts)


@pytest.mark.parametrize("output", ["out.parquet", "shards"])
@pytest.mark.parametrize("after", [1, 2, 4])
def test_resume_leaves_no_part_of_the_killed_run(nlp, tmp_path, output, after):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS[:9]) + "\n", "utf8")
    out = tmp_path / output
    with pytest.raises(KeyboardInterrupt):
        run_job(_Dies(nlp, after), source, out, chunk_size=2)
    # What a kill between writing a part and the checkpoint leaves behind.
    parts = out if output == "shards" else out.with_name(out.name + ".parts")
    stray = parts / ("part-000003.spacy" if output == "shards" else "part-000003.parquet")
    stray.write_bytes(b"half a part")
    run_job(nlp, source, out, chunk_size=2, resume=True)
    run_job(nlp, source, tmp_path / "clean.jsonl")
    want = jsonl_rows(tmp_path / "clean.jsonl")
    if output == "shards":
        docs = [
            doc
            for shard in sorted(out.glob("*.spacy"))
            for doc in DocBin(store_user_data=True).from_disk(shard).get_docs(nlp.vocab)
        ]
        assert [d.text for d in docs] == TEXTS[:9]
    else:
        same_rows(pq.read_table(out).to_pylist(), want)


def test_a_kill_while_finishing_a_parquet_output_keeps_it_whole(nlp, tmp_path, monkeypatch):
    """Killed after OUTPUT was assembled and while its parts were deleted (the
    checkpoint not yet marked complete): --resume must not rebuild OUTPUT from
    the parts that are left."""
    import shutil as shutil_module

    from spacy_hf_tagger.jobs import sinks

    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS[:7]) + "\n", "utf8")
    out = tmp_path / "out.parquet"
    real_rmtree = shutil_module.rmtree

    def dies_half_way(path):
        sorted(Path(path).glob("*.parquet"))[0].unlink()  # one part gone
        raise KeyboardInterrupt

    monkeypatch.setattr(sinks.shutil, "rmtree", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        run_job(nlp, source, out, chunk_size=2)
    monkeypatch.setattr(sinks.shutil, "rmtree", real_rmtree)
    run_job(nlp, source, out, chunk_size=2, resume=True)
    assert [r["id"] for r in pq.read_table(out).to_pylist()] == list(range(1, 8))
    assert not out.with_name("out.parquet.parts.done").exists()
    assert not out.with_name("out.parquet.parts").exists()


def test_parquet_columns_empty_in_one_chunk_take_the_type_of_the_others(nlp, tmp_path):
    records = [{"text": TEXTS[0]}, {"text": TEXTS[1]}, {"text": TEXTS[2], "note": "kept"}]
    (tmp_path / "in.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n", "utf8")
    run_job(nlp, tmp_path / "in.jsonl", tmp_path / "out.parquet", keep=["note"], chunk_size=2)
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.schema.field("note").type == pa.string()
    assert table.column("note").to_pylist() == [None, None, "kept"]


def test_parquet_ids_of_two_types_are_a_clear_error(nlp, tmp_path):
    from spacy_hf_tagger.jobs.sinks import OutputError

    records = [{"id": "a", "text": TEXTS[0]}, {"text": TEXTS[1]}]  # the second id: line 2
    (tmp_path / "in.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n", "utf8")
    with pytest.raises(OutputError, match="Column 'id' mixes int, str"):
        run_job(nlp, tmp_path / "in.jsonl", tmp_path / "out.parquet")


def test_an_old_checkpoint_s_output_bytes_read_as_the_output_position(nlp, tmp_path):
    from spacy_hf_tagger.jobs.corpus import Checkpoint

    progress = tmp_path / "out.progress.json"
    progress.write_text(json.dumps({"records": 3, "output_bytes": 120}), "utf8")
    assert Checkpoint.read(progress).output_position == 120


def test_overwrite_ignores_what_an_earlier_finish_left(nlp, tmp_path):
    """A run killed while deleting its parts leaves `.parts.done`; a later run
    from the start must still assemble its own parts."""
    source = tmp_path / "in.txt"
    source.write_text(TEXTS[0] + "\n", "utf8")
    out = tmp_path / "out.parquet"
    run_job(nlp, source, out)
    (tmp_path / "out.parquet.parts.done").mkdir()
    source.write_text(TEXTS[0] + "\n" + TEXTS[1] + "\n", "utf8")
    assert run_job(nlp, source, out, overwrite=True).records == 2
    assert pq.read_table(out).num_rows == 2
    assert not (tmp_path / "out.parquet.parts.done").exists()
