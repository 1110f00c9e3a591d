"""The dataset card's Hub metadata and the folder `prefgen push` uploads, loaded back as the
Hub would load it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from datasets import load_dataset
from huggingface_hub import DatasetCard

from prefgen_dagster.cli import main
from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.export.card import dataset_card, hub_shard, write_plots
from prefgen_dagster.export.dataset import write_dataset
from prefgen_dagster.export.hub import hub_folder
from prefgen_dagster.judge.plots import LabelFrames, label_plots
from tests.unit.conftest import BASE_CONFIG

MakeConfig = Callable[..., PipelineConfig]

SUMMARY: dict[str, Any] = {
    "batches_exported": ["b1.jsonl"],
    "batches_held_back": ["b2.jsonl"],
    "held_back_reasons": {"b2.jsonl": ["judge_canary_accuracy: 0.50 below 0.70"]},
    "pairs_dropped": 3,
    "human_agreement": [],
}


def record(pair_id: str, margin: float, split: str = "train") -> dict[str, Any]:
    return {
        "prompt": [{"role": "user", "content": f"question {pair_id}"}],
        "chosen": [{"role": "assistant", "content": "good"}],
        "rejected": [{"role": "assistant", "content": "bad"}],
        "score_chosen": 5.0,
        "score_rejected": 5.0 - margin,
        "margin": margin,
        "margin_normalized": margin / 4,
        "split": split,
        "settings_hash": "settings-hash" if pair_id != "p2" else "older",
        "chosen_model": "gen-a",
        "rejected_model": "gen-b",
        "pair_id": pair_id,
        "human_review": None,
    }


@pytest.fixture
def exported(tmp_path: Path, config: PipelineConfig) -> Path:
    records = [record("p1", 2.0), record("p2", 3.0), record("p3", 2.0, split="test")]
    empty = pl.DataFrame()
    plots = label_plots(LabelFrames(empty, empty, empty, pl.DataFrame(records)))
    card = dataset_card(records, SUMMARY, config, "settings-hash", plots)
    write_dataset(records, tmp_path / "export", card, pl.DataFrame())
    write_plots(plots, tmp_path / "export")
    return tmp_path / "export"


def test_the_card_has_the_hub_metadata_block(exported: Path) -> None:
    text = (exported / "README.md").read_text()
    front = yaml.safe_load(text.split("---")[1])
    assert front["license"] == "other"
    assert front["size_categories"] == ["n<1K"]
    assert front["configs"] == [
        {
            "config_name": "default",
            "data_files": [
                {"split": "train", "path": hub_shard("train")},
                {"split": "test", "path": hub_shard("test")},
            ],
        }
    ]
    data = DatasetCard.load(exported / "README.md").data.to_dict()
    assert data["task_categories"] == ["text-generation"]
    for part in (
        "* judge: judge-m (listwise), aspects overall",
        "* mean margin: 2.33",
        "  * b2.jsonl: judge_canary_accuracy: 0.50 below 0.70",
        "pairs dropped by the pair rule (see candidate_pairs.dropped_because): 3",
        "`RewardTrainer` uses a column named `margin`",
        "* `split`: train or test",
        "UltraFeedback",
    ):
        assert part in text, part
    assert "None" not in text.split("## Columns")[1]  # every column is described


def test_the_card_says_the_judge_made_the_pairs_with_its_margin_bound(exported: Path) -> None:
    text = (exported / "README.md").read_text()
    assert (
        " ".join(text.split()).count(
            "an LLM judge rates every text 1-5 on UltraFeedback aspects, and its scores make the "
            "pairs (`best_vs_worst`), kept where chosen beats rejected by at least "
            "pairing.min_margin = 1.0 rating points."
        )
        == 1
    )
    assert "* pairs: the judge's scores, strategy `best_vs_worst`, min margin 1.0" in text


def test_a_rule_strategy_card_says_the_rule_made_the_pairs_and_how_the_judge_compares(
    make_config: MakeConfig,
) -> None:
    # The judge disagrees with the rule on most pairs: its margins are mostly negative.
    records = [record(pid, margin) for pid, margin in (("p1", -3.0), ("p2", -2.0), ("p3", 1.0))]
    records += [record("p4", 0.0), {**record("p5", 0.0), "margin": None}]
    ranked = {**BASE_CONFIG["generation"], "model_ranking": ["gen-b", "gen-a"]}
    config = make_config(pairing={"strategy": "rule_stronger_model"}, generation=ranked)
    text = dataset_card(records, SUMMARY, config, "settings-hash")
    prose = " ".join(text.split())
    assert "clear margin" not in prose and "* mean margin" not in text
    assert (
        "a rule makes the pairs (`rule_stronger_model`: an answer of a model higher in "
        "generation.model_ranking is chosen over one of a lower model). An LLM judge rates "
        "every text 1-5 on UltraFeedback aspects, but its scores did not choose" in prose
    )
    assert (
        "* pairs: the rule `rule_stronger_model` (no min margin: the judge does not decide)" in text
    )
    assert (
        "* judge against the rule: rates chosen above rejected in 1 of 4 scored pairs (25%), "
        "below in 2, equal in 1 (1 without judge scores); mean judge margin -1.00\n" in text
    )
    # Without a judge there is nothing to compare.
    alone = make_config(pairing={"strategy": "rule_evolved_over_original"}, judge=None)
    text = dataset_card(records, SUMMARY, alone, "settings-hash")
    prose = " ".join(text.split())
    assert (
        "a rule makes the pairs (`rule_evolved_over_original`: each EvolQuality rewrite is "
        "chosen over the answer it rewrote); no judge rated them." in prose
    )
    assert "* judge against the rule: no judge\n" in text


def test_the_card_links_the_plots_it_wrote(exported: Path) -> None:
    text = (exported / "README.md").read_text()
    plots = text.split("## Plots\n\n")[1].split("\n## ")[0]
    assert plots.startswith("![Margins of the pairs](plots/margins.png)\n\n_Rating points")
    assert (exported / "plots" / "margins.png").read_bytes().startswith(b"\x89PNG")
    # The next export's plots replace these; a plot without data is not left behind.
    assert write_plots([], exported) == []
    assert list((exported / "plots").iterdir()) == []


def test_the_push_folder_loads_as_the_hub_would(exported: Path, tmp_path: Path) -> None:
    folder = hub_folder(exported, tmp_path / "hub")
    assert (folder / "plots" / "margins.png").is_file()
    pairs = load_dataset(str(folder))
    assert list(pairs) == ["train", "test"]
    assert pairs["train"]["pair_id"] == ["p1", "p2"]
    assert pairs["test"]["pair_id"] == ["p3"]
    assert pairs["train"][0]["chosen"] == [{"role": "assistant", "content": "good"}]


def test_push_dry_run_and_its_errors(
    exported: Path,
    tmp_path: Path,
    config: PipelineConfig,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    raw = config.model_dump(mode="json")
    raw["paths"]["export_dir"] = str(exported)
    config_path = tmp_path / "prefgen.yaml"
    config_path.write_text(yaml.safe_dump({k: v for k, v in raw.items() if k != "base_dir"}))
    target = tmp_path / "dry"
    assert main(["push", "me/pairs", "--dry-run", str(target), "--config", str(config_path)]) == 0
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*.*")) == [
        "README.md",
        hub_shard("test"),
        hub_shard("train"),
        "plots/margins.png",
    ]
    capsys.readouterr()
    assert main(["push", "me/pairs", "--config", str(config_path)]) == 2  # no HF_TOKEN here
    assert capsys.readouterr().err.strip() == (
        "prefgen: set HF_TOKEN to a Hugging Face token with write access"
    )
    (exported / "preference_dataset.parquet").unlink()
    assert main(["push", "me/pairs", "--dry-run", str(target), "--config", str(config_path)]) == 2
    assert "nothing exported yet" in capsys.readouterr().err


def agreement_row(judge: str, **figures: Any) -> dict[str, Any]:
    """A `human_agreement` row: 8 scored verdicts of which 4 agree, 1 tied, 3 disagree."""
    return {
        "batch_id": "b1.jsonl",
        "judge": judge,
        "verdicts": 8,
        "agree": 4,
        "disagree": 3,
        "ties": 1,
        "both_bad": 2,
        "agreement": 0.5625,
        "agreement_ci_low": 0.2645,
        "agreement_ci_high": 0.8242,
        "annotator_agreement": 0.5,
        "annotator_pairs": 6,
        "unmatched_verdicts": 1,
        "verdicts_margin_under_1": 0,
        "agreement_margin_under_1": None,
        "verdicts_margin_1_to_2": 2,
        "agreement_margin_1_to_2": 0.75,
        "verdicts_margin_2_up": 6,
        "agreement_margin_2_up": 0.5,
        "canary_accuracy": 0.9,
        **figures,
    }


def test_the_card_says_how_far_people_agree_with_the_labels(config: PipelineConfig) -> None:
    flipped = {**record("p1", -2.0), "human_review": "flipped: 2 of 2 verdicts prefer ..."}
    records = [flipped, record("p2", 3.0)]
    judge = agreement_row(config.models["judge-m"].path, agree=3, ties=2, canary_accuracy=None)
    summary = {**SUMMARY, "human_agreement": [judge, agreement_row("pairs")]}
    text = dataset_card(records, summary, config, "settings-hash")
    section = text.split("## People's verdicts\n\n")[1].split("\n## ")[0]
    assert section.splitlines() == [
        "* b1.jsonl:",
        "  * pairs as made: agreement 0.56 (95% CI 0.26-0.82, 8 verdicts: 4 agree, 1 tied, "
        "3 disagree), 2 both bad; by margin <1: - (0), 1-2: 0.75 (2), >=2: 0.50 (6); "
        "canary accuracy 0.90",
        "  * judge judge-m: agreement 0.56 (95% CI 0.26-0.82, 8 verdicts: 3 agree, 2 tied, "
        "3 disagree), 2 both bad; by margin <1: - (0), 1-2: 0.75 (2), >=2: 0.50 (6); "
        "no canary accuracy",
        "  * annotators agree with each other on 0.50 of 6 pairs of verdicts on the same pair",
        "  * verdicts on pairs the batch no longer makes (not counted): 1",
        "* pairs whose sides people's verdicts swapped (see `human_review`): 1",
    ]
    # No verdicts: the card says so.
    plain = dataset_card(records, SUMMARY, config, "settings-hash")
    assert "## People's verdicts\n\n* no exported pair was reviewed by people\n" in plain
