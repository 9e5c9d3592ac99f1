"""Annotate texts with a saved pipeline and write an HTML page a person can read.

    python scripts/demo_page.py PIPELINE TEXTS.txt OUT.html [--metrics METRICS.json]
        [--title TITLE]

One text per line. The page shows the pipeline's test metrics (overall and per
entity type, from `spacy evaluate --output`), then each text with its entities
marked and each entity's score in its label. Also prints the entities.
"""

from __future__ import annotations

import argparse
import html
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

import spacy
from spacy import displacy

PALETTE = ["#7aecec", "#bfeeb7", "#feca74", "#ff9561", "#aa9cfc", "#c887fb", "#9cc9cc"]


def metrics_table(metrics: Dict[str, Any]) -> str:
    """Precision, recall and F1 overall and per type, as an HTML table."""
    rows = [("all types", metrics.get("ents_p"), metrics.get("ents_r"), metrics.get("ents_f"))]
    for label, values in sorted((metrics.get("ents_per_type") or {}).items()):
        rows.append((label, values.get("p"), values.get("r"), values.get("f")))

    def pct(value: Optional[float]) -> str:
        return "–" if value is None else f"{100 * value:.1f}"

    body = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{pct(p)}</td><td>{pct(r)}</td>"
        f"<td><b>{pct(f)}</b></td></tr>"
        for name, p, r, f in rows
    )
    return (
        "<table><thead><tr><th>entity type</th><th>precision</th><th>recall</th>"
        f"<th>F1</th></tr></thead><tbody>{body}</tbody></table>"
    )


def render(docs: List[Any]) -> str:
    """displaCy's entity view, each label followed by the entity's score."""
    labels = sorted({e.label_ for doc in docs for e in doc.ents})
    base = {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)}
    colors: Dict[str, str] = {}
    parsed = []
    for doc in docs:
        ents = []
        for e in doc.ents:
            score = e._.hf_score if e.has_extension("hf_score") else None
            name = e.label_ if score is None else f"{e.label_} {score:.2f}"
            colors[name] = base[e.label_]
            ents.append({"start": e.start_char, "end": e.end_char, "label": name})
        parsed.append({"text": doc.text, "ents": ents})
    return displacy.render(
        parsed, style="ent", manual=True, page=False, jupyter=False, options={"colors": colors}
    )


def page(title: str, pipeline: str, metrics: Optional[Dict[str, Any]], body: str) -> str:
    intro = f"<p class='meta'>Pipeline: <code>{html.escape(pipeline)}</code></p>"
    scores = (
        f"<h2>Test set</h2>{metrics_table(metrics)}"
        if metrics
        else "<p class='meta'>No metrics given (--metrics).</p>"
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       max-width: 960px; margin: 2em auto; padding: 0 1em; color: #222; }}
h1 {{ font-size: 1.6em; margin-bottom: 0.2em; }}
.meta {{ color: #555; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 0.35em 1em; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
.entities {{ line-height: 2.4 !important; }}
</style></head>
<body>
<h1>{html.escape(title)}</h1>
{intro}
{scores}
<h2>Sample texts</h2>
<p class="meta">Each entity's label is followed by the model's score for it.</p>
{body}
</body></html>
"""


def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pipeline")
    ap.add_argument("texts")
    ap.add_argument("out")
    ap.add_argument("--metrics", default=None, help="JSON written by spacy evaluate --output")
    ap.add_argument("--title", default="spacy-hf-tagger: entities")
    args = ap.parse_args(argv)

    nlp = spacy.load(args.pipeline)
    texts = [t for t in Path(args.texts).read_text("utf8").splitlines() if t.strip()]
    docs = list(nlp.pipe(texts))
    for doc in docs:
        ents = ", ".join(f"{e.text} [{e.label_} {e._.hf_score:.2f}]" for e in doc.ents)
        print(f"{doc.text}\n    -> {ents or '(none)'}")
    metrics = json.loads(Path(args.metrics).read_text("utf8")) if args.metrics else None
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page(args.title, args.pipeline, metrics, render(docs)), "utf8")
    print(f"Wrote {out}")


if __name__ == "__main__":
    main()
