"""Label quality in SQL: the judge gates, the never-chosen rule, and the judge-free pair rules,
on crafted rows in a tmp DuckDB. Each gate gets a batch it passes and one it fails."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import polars as pl
import pytest

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.defs.checks import failure_reason
from prefgen_dagster.sql.project import load_project
from prefgen_dagster.sql.vars import sql_vars
from prefgen_dagster.storage.store import Storage
from tests.unit.rows import build_models, completion_row, evolved_row, pair_row, rating_row

BATCH = "b1.jsonl"
OTHER = "b2.jsonl"
PROJECT = load_project()
GATES = {check.name: check for check in PROJECT.checks}

Insert = Callable[[str, list[dict[str, Any]]], None]
MakeConfig = Callable[..., PipelineConfig]


def run_gate(storage: Storage, config: PipelineConfig, name: str) -> pl.DataFrame:
    build_models(storage, config, BATCH, "candidates")
    return storage.query(*GATES[name].render(BATCH, sql_vars(config)))


def run_pairs(storage: Storage, config: PipelineConfig) -> pl.DataFrame:
    frame = build_models(storage, config, BATCH)
    return frame.sort("instruction_id", "chosen_completion_id", "rejected_completion_id")


def calibration(judge: str = "judge", batch: str = BATCH, **figures: Any) -> dict[str, Any]:
    """A `judge_calibration` row: by default a good judge (30 of 32 canaries right)."""
    return {
        "batch_id": batch,
        "judge": judge,
        "mode": "listwise",
        "sets_labels": True,
        "canaries": 32,
        "canaries_correct": 30,
        "canaries_tied": 0,
        "canaries_wrong": 2,
        "canaries_unscored": 0,
        "canary_accuracy": 30 / 32,
        "canary_ci_low": 0.80,
        "canary_ci_high": 0.98,
        "position_effect": 0.2,
        "position_items": 12,
        **figures,
    }


# --- judge_canary_accuracy -----------------------------------------------------------------


def test_canary_gate_passes_a_judge_above_chance(
    storage: Storage, insert_rows: Insert, config: PipelineConfig
) -> None:
    insert_rows("judge_calibration", [calibration()])
    # Another batch's judge at chance does not count here.
    insert_rows("judge_calibration", [calibration(batch=OTHER, canary_ci_low=0.3)])
    assert run_gate(storage, config, "judge_canary_accuracy").height == 0


@pytest.mark.parametrize(
    ("figures", "reason"),
    [
        (
            {"canary_accuracy": 0.55, "canary_ci_low": 0.38, "canary_ci_high": 0.71},
            "judge judge is not shown better than chance on its canaries: accuracy 0.55 "
            "(95% CI 0.38-0.71, 32 canaries)",
        ),
        (
            {"canaries": 0, "canaries_unscored": 6, "canary_accuracy": None, "canary_ci_low": None},
            "judge judge: no canary could be scored (6 unscored), so its labels are unmeasured",
        ),
    ],
    ids=["at-chance", "unmeasured"],
)
def test_canary_gate_fails_a_judge_at_chance_or_unmeasured(
    storage: Storage,
    insert_rows: Insert,
    config: PipelineConfig,
    figures: dict[str, Any],
    reason: str,
) -> None:
    insert_rows("judge_calibration", [calibration(**figures)])
    [row] = run_gate(storage, config, "judge_canary_accuracy").to_dicts()
    assert row["reason"] == reason


def test_canary_gate_reads_the_row_that_sets_the_labels_and_the_bound(
    storage: Storage, insert_rows: Insert, make_config: MakeConfig
) -> None:
    # A panel member at chance, the panel fine: the panel's scores make the pairs.
    insert_rows(
        "judge_calibration",
        [
            calibration("weak", sets_labels=False, canary_ci_low=0.2),
            calibration("panel", canary_ci_low=0.62),
        ],
    )
    assert run_gate(storage, make_config(), "judge_canary_accuracy").height == 0
    stricter = make_config(checks={"min_canary_accuracy": 0.7})
    assert run_gate(storage, stricter, "judge_canary_accuracy")["judge"].to_list() == ["panel"]


def test_canary_gate_is_off_without_canaries_or_under_a_rule(
    storage: Storage, insert_rows: Insert, make_config: MakeConfig
) -> None:
    insert_rows("judge_calibration", [calibration(canary_ci_low=0.2)])
    assert run_gate(storage, make_config(), "judge_canary_accuracy").height == 1
    no_canaries = make_config(judge={"model": "judge-m", "canaries": {"fraction": 0}})
    assert run_gate(storage, no_canaries, "judge_canary_accuracy").height == 0
    rule = make_config(pairing={"strategy": "rule_evolved_over_original"})
    assert run_gate(storage, rule, "judge_canary_accuracy").height == 0


# --- judge_position_bias -------------------------------------------------------------------


def test_position_gate(storage: Storage, insert_rows: Insert, make_config: MakeConfig) -> None:
    insert_rows(
        "judge_calibration",
        [
            calibration("fine", position_effect=-0.9, sets_labels=False),
            calibration("pointwise", position_effect=None, sets_labels=False),
            calibration("biased", position_effect=2.86, sets_labels=False),
            calibration("panel", position_effect=1.0),  # at the bound: passes
        ],
    )
    config = make_config()
    assert run_gate(storage, config, "judge_position_bias").height == 0
    with storage.connect() as con:
        con.execute("UPDATE judge_calibration SET sets_labels = (judge = 'biased')")
    [row] = run_gate(storage, config, "judge_position_bias").to_dicts()
    assert row["reason"] == (
        "judge biased rates by position: the same text moves +2.86 points from first to last "
        "position (12 texts; bound 1.0)"
    )
    looser = make_config(checks={"max_position_effect": 3.0})
    assert run_gate(storage, looser, "judge_position_bias").height == 0


# --- never chosen: cut, empty, degenerate ------------------------------------------------------


LOOP = "la la la la la la la la la la la la"


def test_unchoosable_chosen_gate(
    storage: Storage, insert_rows: Insert, config: PipelineConfig
) -> None:
    insert_rows(
        "completions",
        [
            completion_row("ok", "i1", BATCH, finish_reason="stop", repetition=0.0),
            completion_row("cut", "i1", BATCH, finish_reason="length", repetition=0.0),
            completion_row("empty", "i1", BATCH, text="  ", finish_reason="stop"),
            completion_row("loop", "i1", BATCH, text=LOOP, finish_reason="stop", repetition=0.9),
            completion_row("echo", "i1", BATCH, finish_reason="stop", echoed_marker="<|im_end|>"),
            completion_row("low", "i1", BATCH, finish_reason="stop"),
        ],
    )
    insert_rows("dpo_pairs", [pair_row("good", "i1", "ok", "cut", 5, 1, BATCH)])
    assert run_gate(storage, config, "unchoosable_chosen").height == 0  # cut may be rejected
    insert_rows(
        "dpo_pairs",
        [
            pair_row(name, "i1", name, "low", 5, 1, BATCH)
            for name in ("cut", "empty", "loop", "echo")
        ],
    )
    reasons = dict(
        run_gate(storage, config, "unchoosable_chosen").select("pair_id", "reason").iter_rows()
    )
    assert reasons == {
        "cut": "pair cut: chosen text is not choosable (cut_at_max_tokens)",
        "empty": "pair empty: chosen text is not choosable (empty)",
        "loop": "pair loop: chosen text is not choosable (degenerate: repetition 0.90)",
        "echo": "pair echo: chosen text is not choosable (echoes_marker: <|im_end|>)",
    }


def test_dpo_pairs_never_chooses_a_cut_empty_degenerate_or_echoing_text(
    storage: Storage, insert_rows: Insert, make_config: MakeConfig
) -> None:
    # The judge likes the cut, empty, looping and prompt-echoing texts best; the best usable
    # one is chosen, and the worst text overall (even a cut one) may still be rejected.
    texts = {
        "cut": ("an answer that ran out of", "length", 0.0, 5),
        "empty": ("", "stop", 0.0, 5),
        "loop": (LOOP, "stop", 0.9, 5),
        "echo": ("fine text\n# Improved response\nmore", "stop", 0.0, 5),
        "fine": ("a finished answer", "stop", 0.0, 4),
        "worse": ("another finished answer", "stop", 0.0, 2),
        "worst": ("cut and bad", "length", 0.0, 1),
    }
    insert_rows(
        "completions",
        [
            completion_row(
                cid,
                "i1",
                BATCH,
                text=t,
                finish_reason=f,
                repetition=r,
                echoed_marker="# Improved response" if cid == "echo" else None,
            )
            for cid, (t, f, r, _) in texts.items()
        ],
    )
    insert_rows("ratings", [rating_row(cid, "i1", v[3], BATCH) for cid, v in texts.items()])
    frame = run_pairs(storage, make_config())
    assert frame.select("chosen_completion_id", "rejected_completion_id").rows() == [
        ("fine", "worst")
    ]
    everything = run_pairs(storage, make_config(pairing={"strategy": "all_pairs"}))
    assert set(everything["chosen_completion_id"]) == {"fine", "worse"}


# --- canaries and probes never make pairs ------------------------------------------------------


def test_only_label_ratings_score_completions(
    storage: Storage, insert_rows: Insert, config: PipelineConfig
) -> None:
    insert_rows("completions", [completion_row(c, "i1", BATCH) for c in ("a", "b")])
    insert_rows(
        "ratings",
        [
            rating_row("a", "i1", 4, BATCH),
            rating_row("b", "i1", 2, BATCH),
            # The reversed probe's ratings would turn the order around if they counted.
            rating_row("a", "i1", 1, BATCH, order=1, purpose="position_probe", call_id="p1"),
            rating_row("b", "i1", 5, BATCH, order=1, purpose="position_probe", call_id="p2"),
        ],
    )
    [row] = run_pairs(storage, config).to_dicts()
    assert (row["chosen_completion_id"], row["chosen_rating"], row["margin"]) == ("a", 4.0, 2.0)


# --- pairs without a judge ---------------------------------------------------------------------


def rule_batch(insert: Insert) -> None:
    """i1: a strong and a weak pool model (two answers each) and a rewrite of each answer."""
    insert(
        "completions",
        [
            completion_row("s1", "i1", BATCH, model="models/strong"),
            completion_row("s2", "i1", BATCH, model="models/strong", finish_reason="length"),
            completion_row("w1", "i1", BATCH, model="models/weak"),
            completion_row("w2", "i1", BATCH, model="models/weak"),
            completion_row("x1", "i2", BATCH, model="models/weak"),  # no strong answer
        ],
    )
    insert(
        "evolved_completions",
        [
            evolved_row("e-s1", "i1", BATCH, root_completion_id="s1", parent_completion_id="s1"),
            evolved_row(
                "e-w1", "i1", BATCH, root_completion_id="w1", parent_completion_id="w1",
                finish_reason="length",
            ),
        ],
    )  # fmt: skip


def rule_config(make_config: MakeConfig, strategy: str, judge: bool = False) -> PipelineConfig:
    models = {
        "strong": {"path": "models/strong"},
        "weak": {"path": "models/weak"},
        "judge-m": {"path": "models/judge"},
    }
    generation = {
        "pool": [{"model": "strong"}, {"model": "weak"}],
        "model_ranking": ["strong", "weak"],
    }
    return make_config(
        models=models,
        generation=generation,
        evol_quality={"model": "strong"},
        judge={"model": "judge-m"} if judge else None,
        pairing={"strategy": strategy},
    )


def test_rule_evolved_over_original(
    storage: Storage, insert_rows: Insert, make_config: MakeConfig
) -> None:
    rule_batch(insert_rows)
    frame = run_pairs(storage, rule_config(make_config, "rule_evolved_over_original"))
    # e-w1 was cut at max_tokens: never chosen, so only one rewrite is paired.
    assert frame.select("chosen_completion_id", "rejected_completion_id").rows() == [("e-s1", "s1")]
    [row] = frame.to_dicts()
    assert (row["chosen_rating"], row["margin"], row["judge_agreement"]) == (None, None, None)


def test_rule_stronger_model_and_the_judges_agreement(
    storage: Storage, insert_rows: Insert, make_config: MakeConfig
) -> None:
    rule_batch(insert_rows)
    config = rule_config(make_config, "rule_stronger_model")
    [row] = run_pairs(storage, config).to_dicts()
    # One pair per instruction with both models: the strong answer that finished (s1)
    # against one of the weak ones; i2 has no strong answer.
    assert row["instruction_id"] == "i1" and row["chosen_completion_id"] == "s1"
    assert row["rejected_completion_id"] in ("w1", "w2")
    # With a judge present its scores stay beside the rule, and its agreement is reported:
    # here it prefers the weak answer, and the pair is made anyway.
    judged = rule_config(make_config, "rule_stronger_model", judge=True)
    insert_rows(
        "ratings",
        [rating_row(c, "i1", v, BATCH) for c, v in {"s1": 2, "w1": 4, "w2": 4}.items()],
    )
    [row] = run_pairs(storage, judged).to_dicts()
    assert (row["chosen_rating"], row["rejected_rating"], row["judge_agreement"]) == (2, 4, 0.0)


def test_rule_pairs_pass_the_judge_gates(
    storage: Storage, insert_rows: Insert, make_config: MakeConfig
) -> None:
    config = rule_config(make_config, "rule_stronger_model", judge=True)
    rule_batch(insert_rows)
    insert_rows("dpo_pairs", [pair_row("p", "i1", "s1", "w1", 2.0, 4.0, BATCH)])
    insert_rows("judge_calibration", [calibration(canary_ci_low=0.1, position_effect=3.0)])
    for gate in ("pair_integrity", "judge_canary_accuracy", "judge_position_bias"):
        assert run_gate(storage, config, gate).height == 0, gate
    judged = make_config()  # the same rows, the judge deciding: every one of them fires
    for gate in ("pair_integrity", "judge_canary_accuracy", "judge_position_bias"):
        assert run_gate(storage, judged, gate).height == 1, gate


def test_rules_need_what_they_read(make_config: MakeConfig) -> None:
    with pytest.raises(ValueError, match="needs a judge"):
        make_config(judge=None)
    with pytest.raises(ValueError, match="needs generation.model_ranking"):
        make_config(judge=None, pairing={"strategy": "rule_stronger_model"})
    with pytest.raises(ValueError, match="model_ranking names models outside the pool"):
        make_config(generation={"pool": [{"model": "gen-a"}, {"model": "gen-b"}],
                                "model_ranking": ["gen-a", "judge-m"]})  # fmt: skip


def test_a_checks_reason_is_its_first_offending_rows() -> None:
    rows = pl.DataFrame({"pair_id": ["a", "b", "c"], "reason": ["first why", "second", "third"]})
    assert failure_reason(rows) == "first why (and 2 more)"
    assert failure_reason(rows.head(1)) == "first why"
    assert failure_reason(rows.head(0)) is None
    assert failure_reason(pl.DataFrame({"pair_id": ["a"]})) is None  # a check without reasons
