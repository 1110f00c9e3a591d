"""The label plots: each draws a small PNG from crafted frames, leaves itself out when its
data is absent, and reads a batch back from DuckDB."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import polars as pl
import pytest

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.judge import figure, plots
from prefgen_dagster.judge.human_agreement import agreement_plot, pooled
from prefgen_dagster.judge.plots import LabelFrames, label_plots, read_frames
from prefgen_dagster.storage.store import Storage
from tests.unit.rows import build_models, completion_row, instruction_row, rating_row

PNG = b"\x89PNG"
# "A few tens of KB" as base64 in the run's metadata.
MAX_BYTES = 40_000
EMPTY = pl.DataFrame()


def ratings_frame(shown: int = 3) -> pl.DataFrame:
    """Two judges rating three texts each, shown `shown` to a prompt."""
    rows = [
        {
            "judge": judge,
            "purpose": "label",
            "position": i % shown + 1,
            "shown": shown,
            "rating": rating,
            "aspect": "helpfulness",
            "completion_id": f"c{i}",
        }
        for judge, ratings in (("j1", [5, 3, 1]), ("j2", [4, 4, None]))
        for i, rating in enumerate(ratings)
    ]
    return pl.DataFrame(rows)


CANDIDATES = pl.DataFrame({"completion_id": ["c0", "c1", "c2"], "chars": [400, 120, 10]})
CALIBRATION = pl.DataFrame(
    {
        "judge": ["j1", "j2"],
        "canaries": [8, 0],
        "canaries_correct": [6, 0],
        "canaries_tied": [1, 0],
    }
)
PAIRS = pl.DataFrame({"margin": [1.0, 2.5, None]})


def agreement_row(batch: str, judge: str, verdicts: int, agreement: float) -> dict[str, Any]:
    """A human_agreement row whose verdicts all fall in the 1-2 margin bucket."""
    return {
        "batch_id": batch,
        "judge": judge,
        "verdicts": verdicts,
        "agreement": agreement,
        "verdicts_margin_under_1": 0,
        "agreement_margin_under_1": None,
        "verdicts_margin_1_to_2": verdicts,
        "agreement_margin_1_to_2": agreement,
        "verdicts_margin_2_up": 0,
        "agreement_margin_2_up": None,
    }


AGREEMENT = pl.DataFrame(
    [
        agreement_row("b1", "pairs", 10, 0.9),
        agreement_row("b2", "pairs", 30, 0.5),
        agreement_row("b1", "j1", 10, 0.8),
    ]
)


@pytest.mark.parametrize(
    "draw",
    [
        lambda: plots.rating_histogram(ratings_frame()),
        lambda: plots.margin_histogram(PAIRS),
        lambda: plots.rating_by_position(ratings_frame()),
        lambda: plots.length_vs_rating(ratings_frame(), CANDIDATES),
        lambda: plots.canary_accuracy(CALIBRATION, bound=0.6),
        lambda: agreement_plot(AGREEMENT, bound=0.6),
    ],
    ids=["ratings", "margins", "position", "length", "canaries", "human_agreement"],
)
def test_each_plot_draws_a_small_png(draw: Callable[[], bytes | None]) -> None:
    png = draw()
    assert png is not None and png.startswith(PNG)
    assert len(png) < MAX_BYTES


def test_a_plot_without_its_data_is_left_out() -> None:
    canaries_only = ratings_frame().with_columns(purpose=pl.lit("canary"))
    assert plots.rating_histogram(EMPTY) is None
    assert plots.rating_histogram(canaries_only) is None
    assert plots.margin_histogram(EMPTY) is None
    no_margins = pl.DataFrame({"margin": [None]}, schema={"margin": pl.Float64})
    assert plots.margin_histogram(no_margins) is None
    assert plots.margin_histogram(pl.DataFrame({"pair_id": ["p"]})) is None
    # Pointwise: one text per prompt, so no position to compare.
    assert plots.rating_by_position(ratings_frame(shown=1)) is None
    assert plots.length_vs_rating(ratings_frame(), EMPTY) is None
    assert (
        plots.length_vs_rating(ratings_frame(), CANDIDATES.with_columns(completion_id=pl.lit("x")))
        is None
    )
    assert plots.canary_accuracy(EMPTY) is None
    assert plots.canary_accuracy(CALIBRATION.with_columns(canaries=pl.lit(0))) is None
    assert agreement_plot(EMPTY) is None
    assert agreement_plot(AGREEMENT.with_columns(verdicts=pl.lit(0))) is None  # none scored
    assert label_plots(LabelFrames(EMPTY, EMPTY, EMPTY, EMPTY)) == []
    assert figure.markdown([], embed=True) == "_no data to plot yet_"


def test_label_plots_name_caption_and_link_each_image() -> None:
    frames = LabelFrames(ratings_frame(), CANDIDATES, CALIBRATION, PAIRS, AGREEMENT)
    drawn = label_plots(frames)
    assert [plot.name for plot in drawn] == [
        "ratings_by_judge",
        "margins",
        "rating_by_position",
        "length_vs_rating",
        "canary_accuracy",
        "human_agreement",
    ]
    embedded = figure.markdown(drawn, embed=True)
    linked = figure.markdown(drawn, embed=False)
    for plot in drawn:
        assert f"![{plot.title}](data:image/png;base64," in embedded
        assert f"![{plot.title}](plots/{plot.name}.png)\n\n_{plot.caption}_" in linked
    uri = drawn[0].data_uri
    assert base64.b64decode(uri.removeprefix("data:image/png;base64,")) == drawn[0].png
    assert "data:" not in linked


def test_agreement_is_pooled_over_batches_by_verdicts() -> None:
    rows = {row["judge"]: row for row in pooled(AGREEMENT).to_dicts()}
    assert list(rows) == ["pairs", "j1"]  # the pairs as made first
    # (9 + 15) of 40 verdicts agree, not the mean of 0.9 and 0.5.
    assert rows["pairs"]["verdicts"] == 40
    assert rows["pairs"]["agreement"] == pytest.approx(0.6)
    assert rows["pairs"]["agreement_ci_low"] < 0.6 < rows["pairs"]["agreement_ci_high"]
    assert rows["pairs"]["agreement_margin_1_to_2"] == pytest.approx(0.6)
    assert rows["j1"]["agreement"] == pytest.approx(0.8)


def test_judges_are_named_as_the_config_names_them() -> None:
    named = plots._named(ratings_frame(), {"j1": "judge-one"})
    assert sorted(set(named["judge"])) == ["j2", "judge-one"]


def test_a_batch_is_read_back_from_duckdb(
    storage: Storage,
    config: PipelineConfig,
    insert_rows: Callable[[str, list[dict[str, Any]]], None],
) -> None:
    insert_rows("instructions", [instruction_row("i1", "b1"), instruction_row("i9", "b2")])
    insert_rows(
        "completions",
        [completion_row(cid, "i1", "b1", text="x" * n) for cid, n in (("c1", 50), ("c2", 9))],
    )
    insert_rows(
        "ratings",
        [
            rating_row("c1", "i1", 5, "b1", position=1, shown=2),
            rating_row("c2", "i1", 2, "b1", position=2, shown=2),
            rating_row("c9", "i9", 1, "b2", position=1, shown=2),
        ],
    )
    pairs = build_models(storage, config, "b1")
    frames = read_frames(storage, ["b1"], pairs)
    assert sorted(frames.ratings["completion_id"]) == ["c1", "c2"]  # b2 left out
    assert dict(frames.candidates.select("completion_id", "chars").iter_rows()) == {
        "c1": 50,
        "c2": 9,
    }
    assert frames.pairs["margin"].to_list() == [3.0]
    names = [plot.name for plot in label_plots(frames)]
    assert names == ["ratings_by_judge", "margins", "rating_by_position", "length_vs_rating"]
    # At ratings time the pairs are not made yet: no margin plot.
    assert "margins" not in [plot.name for plot in label_plots(read_frames(storage, ["b1"]))]


def test_reading_before_any_sql_model_ran(storage: Storage) -> None:
    frames = read_frames(storage, ["b1"])
    assert frames.candidates.is_empty() and frames.pairs.is_empty()
    assert label_plots(frames) == []
