"""The garbage collector with torch, vLLM and Dagster loaded.

Those imports leave ~800k objects tracked, and a full collection is a pass over all of them
(~0.5-0.7 s on a 2-core CPU machine) that frees almost nothing: they live as long as the
process. Two things keep such passes out of a run:

* `frozen_heap`: what exists when a run starts is frozen for the run, so the full
  collections that its allocations set off (planning a large batch does) pass over the
  run's own objects only. vLLM freezes its heap the same way once its engine has started.
* `one_full_collection`: vLLM's shutdown unfreezes the heap and collects twice per engine
  (freeing its KV cache, then its distributed state). The collections only free memory; one
  after the last of the engines that close together frees the same.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Freeze the objects that exist now; unfreeze them on exit (then they are collected as
    usual again: one that became garbage during the block is freed by a later collection)."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextmanager
def one_full_collection() -> Iterator[None]:
    """`gc.collect` does nothing inside the block; one full collection runs on exit, also
    when the block raises. The switch is process-wide: a `gc.collect()` of another thread
    during the block (a few milliseconds when engines close) is skipped too, and the one
    on exit does its work."""
    collect = gc.collect
    gc.collect = lambda generation=2: 0
    try:
        yield
    finally:
        gc.collect = collect
        gc.collect()
