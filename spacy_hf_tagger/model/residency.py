"""Give memory inference no longer uses back to the system.

The float32 weights, while a reduced-precision copy runs (`page_out_weights`).

transformers maps a checkpoint's safetensors file into memory and the loaded
float32 weights are views of that mapping. Making the bf16 (or float16)
inference copy reads every page of it, and from then on those pages count in
the process's resident memory (86 MiB for MiniLM-L6, 4 bytes a parameter)
although inference never reads them again: on a long stream that was most of
the difference between our process and the bare model's (benchmarks/
stream_memory.py). They are clean pages of a file, so asking the kernel to
page them out (`madvise(MADV_PAGEOUT)`, Linux 5.4+) loses nothing: a later
read (a training step, `to_disk`, a new copy after the weights changed)
faults them back in from the same file. Pages a write has made private (the
weights trained in place) are not file pages any more: the kernel swaps them
out where there is swap, else keeps them, and nothing is ever discarded.

Only mappings of files that hold the model's weights and none of the copy's
are advised; elsewhere (another OS, an older kernel, weights loaded into
anonymous memory) this does nothing.

And the memory a huge record's work freed (`release_free_memory`). glibc's
malloc keeps what is freed for the next allocation, in one arena per thread
(the tokenizer's and torch's threads have their own) and, once a large block
was freed, serves even large ones from the heap instead of the system: a
10 M-character record through `nlp()` peaked 0.7 GB higher, and held 1.1
GB more once written, than with the free pages handed back after each stage
(the corpus job: `benchmarks/long_record.py`). `malloc_trim` hands the free
pages of every arena back; it walks them all (2-21 ms after such a record's
stages), so it runs only where a doc is that long.
"""

from __future__ import annotations

import ctypes
import logging
import sys
from functools import lru_cache
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import torch

logger = logging.getLogger("spacy_hf_tagger")

# linux/mman.h: reclaim these pages now (clean file pages are dropped).
MADV_PAGEOUT = 21
MAPS = Path("/proc/self/maps")
SMAPS = Path("/proc/self/smaps")

Range = Tuple[int, int]


def file_mappings(maps: Path = MAPS) -> List[Range]:
    """The address ranges [start, end) of this process's mappings of files
    (not anonymous memory, heap, stack or the kernel's own)."""
    ranges: List[Range] = []
    try:
        lines = maps.read_text().splitlines()
    except OSError:
        return ranges
    for line in lines:
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or fields[4] == "0" or not fields[5].startswith("/"):
            continue
        start, end = (int(x, 16) for x in fields[0].split("-"))
        ranges.append((start, end))
    return ranges


def storage_ranges(tensors: Iterable[torch.Tensor]) -> List[Range]:
    """The address ranges of the CPU storages behind `tensors`, each once."""
    seen = {}
    for tensor in tensors:
        if tensor.device.type != "cpu" or tensor.is_quantized:
            continue
        storage = tensor.untyped_storage()
        start = storage.data_ptr()
        if start and storage.nbytes():
            seen[start] = max(seen.get(start, 0), storage.nbytes())
    return [(start, start + size) for start, size in seen.items()]


def mappings_holding(
    mappings: List[Range], ranges: List[Range], excluding: List[Range]
) -> List[Range]:
    """The mappings that hold any of `ranges` and none of `excluding`."""

    def overlaps(mapping: Range, spans: List[Range]) -> bool:
        return any(s < mapping[1] and e > mapping[0] for s, e in spans)

    return [m for m in mappings if overlaps(m, ranges) and not overlaps(m, excluding)]


def _module_tensors(module: torch.nn.Module) -> List[torch.Tensor]:
    return [*module.parameters(), *module.buffers()]


def weight_mappings(
    model: torch.nn.Module, runner: Optional[torch.nn.Module] = None
) -> List[Range]:
    """The file mappings holding `model`'s tensors and none of `runner`'s."""
    return mappings_holding(
        file_mappings(),
        storage_ranges(_module_tensors(model)),
        storage_ranges(_module_tensors(runner)) if runner is not None else [],
    )


def _libc() -> Optional[ctypes.CDLL]:
    return _load_libc() if sys.platform.startswith("linux") else None


@lru_cache(maxsize=1)
def _load_libc() -> Optional[ctypes.CDLL]:
    # By name, not `ctypes.util.find_library` (which runs `ldconfig -p`); the
    # process's own symbols where that name is not there (musl).
    for name in ("libc.so.6", None):
        try:
            return ctypes.CDLL(name, use_errno=True)
        except OSError:
            continue
    return None


def release_free_memory() -> bool:
    """Return the allocator's free pages to the system (glibc's `malloc_trim`);
    False where there is no such call (another libc, another OS)."""
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None) if libc is not None else None
    if trim is None:
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim(0)
    return True


def _madvise() -> Optional[ctypes._CFuncPtr]:  # type: ignore[name-defined]
    libc = _libc()
    if libc is None:
        return None
    advise = libc.madvise
    advise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    advise.restype = ctypes.c_int
    return advise


def smaps_kib(field: str, smaps: Path = SMAPS) -> Dict[Range, int]:
    """Per mapping of this process, the KiB smaps gives for `field` ("Rss";
    "Anonymous": pages of a private file mapping that a write made private
    copies); empty where there is no smaps."""
    found: Dict[Range, int] = {}
    try:
        lines = smaps.read_text().splitlines()
    except OSError:
        return found
    mapping: Optional[Range] = None
    key = f"{field}:"
    for line in lines:
        fields = line.split()
        if fields and "-" in fields[0] and len(fields) >= 5 and ":" in fields[3]:
            start, end = (int(x, 16) for x in fields[0].split("-"))
            mapping = (start, end)
        elif mapping is not None and fields[:1] == [key]:
            found[mapping] = found.get(mapping, 0) + int(fields[1])
    return found


def page_out_weights(model: torch.nn.Module, runner: torch.nn.Module) -> int:
    """Advise the kernel to page out the file mappings that hold `model`'s
    weights and none of `runner`'s (module docstring); the bytes advised.

    Advice, not a promise: the kernel reclaims only pages no other process
    maps, of files this process could write (a model folder owned by root in
    a container stays resident), and refuses the call before Linux 5.4. A
    mapping that training wrote into is left alone (it would go to swap and
    come back at the next step). Never raises: it only saves memory."""
    advise = _madvise()
    if advise is None or runner is model:
        return 0
    try:
        targets = weight_mappings(model, runner)
        private = smaps_kib("Anonymous") if targets else {}
        advised = 0
        for mapping in targets:
            if private.get(mapping) != 0:
                continue
            start, end = mapping
            if advise(start, end - start, MADV_PAGEOUT) == 0:
                advised += end - start
            else:
                logger.debug(
                    "madvise(MADV_PAGEOUT) refused (errno %d); those weights stay resident",
                    ctypes.get_errno(),
                )
        return advised
    except Exception as error:  # an optimisation: inference goes on without it
        logger.debug("paging out the float32 weights failed (%s)", type(error).__name__)
        return 0
