"""The run's engines resource: what a stage leaves behind is freed when the stage ends."""

from __future__ import annotations

import gc
import weakref

import dagster as dg

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.defs.resources import EnginesResource
from prefgen_dagster.stages import GENERATION


class Rows(list):
    """A stage's rows (a list that weak references can point to)."""


def _stage_that_caught_an_error() -> weakref.ref[Rows]:
    """A stage whose engine caught an exception and kept it, as asyncio does with the
    connection attempts it cancels: the traceback holds the frame, the frame the exception
    and the rows, so only a full collection frees the rows once the stage has returned."""
    rows = Rows(range(1000))
    try:
        raise RuntimeError("connection attempt cancelled")
    except RuntimeError as err:
        kept = err
    assert kept.__traceback__ is not None
    return weakref.ref(rows)


def test_what_a_stage_left_in_reference_cycles_is_freed_when_it_ends(
    config: PipelineConfig,
) -> None:
    engines = EnginesResource()
    context = dg.build_init_resource_context()
    engines.setup_for_execution(context)
    was_enabled = gc.isenabled()
    gc.disable()  # no automatic collection in between
    try:
        with engines.for_stage(config, GENERATION.section):
            rows = _stage_that_caught_an_error()
            assert rows() is not None  # the stage has returned; its rows are in the cycle
        assert rows() is None
    finally:
        if was_enabled:
            gc.enable()
        engines.teardown_after_execution(context)
