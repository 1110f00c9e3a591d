"""The collector's passes kept out of a run: a frozen heap for the run, one collection for
the engines' shutdowns (the pool's use of it: test_pool.py)."""

from __future__ import annotations

import gc

import pytest

from prefgen_dagster.llm.heap import frozen_heap, one_full_collection


def test_the_heap_is_frozen_for_the_block_and_thawed_after_it_even_on_an_error() -> None:
    with pytest.raises(RuntimeError), frozen_heap():
        assert gc.get_freeze_count() > 0
        raise RuntimeError("the run failed")
    assert gc.get_freeze_count() == 0


def test_collections_inside_the_block_become_one_at_its_end() -> None:
    passes: list[int] = []

    def count(phase: str, info: dict) -> None:
        if phase == "stop" and info["generation"] == 2:
            passes.append(info["collected"])

    gc.callbacks.append(count)
    try:
        with pytest.raises(RuntimeError), one_full_collection():
            gc.collect()
            gc.collect()
            raise RuntimeError("a close failed")
    finally:
        gc.callbacks.remove(count)
    assert len(passes) == 1
    assert gc.collect.__module__ == "gc"  # the real one again
