"""Online serving on Ray Serve: `build_app` (the application: replicas that
each load the pipeline once and batch concurrent requests into `nlp.pipe`),
`TaggerDeployment`, `Limits`, and `serve_until_stopped` behind `spacy-hf-tagger
serve`, which runs Ray's HAProxy in front of the replicas where Ray has it
(`ingress`). Needs the `serve` extra; see docs/serving.md.

Names load on first use, so `bodies` (the request rules) and `ingress` import
without Ray.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Limits", "TaggerDeployment", "build_app", "serve_until_stopped"]

_WHERE = {
    "Limits": "bodies",
    "TaggerDeployment": "deployment",
    "build_app": "deployment",
    "serve_until_stopped": "runner",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
