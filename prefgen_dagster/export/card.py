"""The dataset card (README.md) and its plots (the folder a Hub upload sends: `hub.py`).

The card starts with the YAML block the Hugging Face Hub reads (license, task, size, tags,
and a `configs` entry pointing at the Parquet shard, so `datasets.load_dataset` reads the
folder as the Hub would), then says what the rows are, which models wrote and judged them,
with which settings, what the gates kept out, plots of the labels (PNG files in `plots/`,
linked from the card), and how to train on it with TRL.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.export.dataset import SPLITS
from prefgen_dagster.judge.figure import PLOTS_DIR, Plot, markdown
from prefgen_dagster.judge.human_agreement import agreement_lines
from prefgen_dagster.storage.columns import EXPORT, describe


def hub_shard(split: str) -> str:
    """A split's one Parquet shard inside the uploaded folder, as the Hub's `configs` names
    it."""
    return f"data/{split}-00000-of-00001.parquet"


def present_splits(records: list[dict[str, Any]]) -> list[str]:
    """The splits that have rows, in `SPLITS` order (`train` alone when nothing was
    exported: the Hub needs one)."""
    found = {record["split"] for record in records}
    return [split for split in SPLITS if split in found] or [SPLITS[0]]


def _size_category(rows: int) -> str:
    for bound, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if rows < bound:
            return name
    return "100K<n<1M" if rows < 1_000_000 else "n>1M"


def card_metadata(records: list[dict[str, Any]], config: PipelineConfig) -> dict[str, Any]:
    """The card's YAML block."""
    rows = len(records)
    files = [{"split": split, "path": hub_shard(split)} for split in present_splits(records)]
    return {
        "license": config.export.license,
        "pretty_name": config.export.pretty_name,
        "language": ["en"],
        "task_categories": ["text-generation"],
        "size_categories": [_size_category(rows)],
        "tags": ["dpo", "preference", "synthetic", "ultrafeedback", "evol-quality", "prefgen"],
        "configs": [{"config_name": "default", "data_files": files}],
    }


# What each rule strategy takes as better (the judge's scores are not read).
_RULES = {
    "rule_stronger_model": "an answer of a model higher in generation.model_ranking is chosen "
    "over one of a lower model",
    "rule_evolved_over_original": "each EvolQuality rewrite is chosen over the answer it rewrote",
}


def _how_pairs_are_made(config: PipelineConfig) -> str:
    """The card's sentence on what made the pairs: the judge's scores with their margin bound,
    or a rule (a judge, if any, only rates for comparison)."""
    strategy = config.pairing.strategy
    if config.pairing.judge_decides():
        return (
            "an LLM judge rates every text 1-5 on UltraFeedback aspects, and its scores make "
            f"the pairs (`{strategy}`), kept where chosen beats rejected by at least "
            f"pairing.min_margin = {config.pairing.min_margin} rating points."
        )
    rule = f"a rule makes the pairs (`{strategy}`: {_RULES[strategy]})"
    if config.judge is None:
        return f"{rule}; no judge rated them."
    return (
        f"{rule}. An LLM judge rates every text 1-5 on UltraFeedback aspects, but its scores "
        "did not choose: how they compare with the rule is under Statistics."
    )


def margin_line(records: list[dict[str, Any]], config: PipelineConfig) -> str:
    """The card's margin statistic. When the judge decides: the mean margin. Under a rule:
    how often the judge's scores put chosen above rejected (agree with the rule), and the
    mean judge margin, which may well be negative."""
    margins = [r["margin"] for r in records if r["margin"] is not None]
    mean = f"{sum(margins) / len(margins):.2f}" if margins else "-"
    if config.pairing.judge_decides():
        return f"* mean margin: {mean}"
    if config.judge is None:
        return "* judge against the rule: no judge"
    if not margins:
        return f"* judge against the rule: none of the {len(records)} pairs has judge scores"
    agree = sum(m > 0 for m in margins)
    disagree = sum(m < 0 for m in margins)
    unscored = len(records) - len(margins)
    return (
        f"* judge against the rule: rates chosen above rejected in {agree} of {len(margins)} "
        f"scored pairs ({agree / len(margins):.0%}), below in {disagree}, equal in "
        f"{len(margins) - agree - disagree}"
        + (f" ({unscored} without judge scores)" if unscored else "")
        + f"; mean judge margin {mean}"
    )


def human_review_section(
    records: list[dict[str, Any]], agreement: list[dict[str, Any]], config: PipelineConfig
) -> list[str]:
    """The card's section on people's verdicts: per exported batch, how far they agree with
    the labels (with the canary accuracy beside it), and the pairs they flipped."""
    lines = ["## People's verdicts", ""]
    if not agreement:
        return [*lines, "* no exported pair was reviewed by people", ""]
    by_batch: dict[str, list[dict[str, Any]]] = {}
    for row in agreement:
        by_batch.setdefault(row["batch_id"], []).append(row)
    for batch, rows in by_batch.items():
        lines.append(f"* {batch}:")
        lines += [f"  * {line}" for line in agreement_lines(rows, config.names_by_identity())]
    flipped = sum((r["human_review"] or "").startswith("flipped") for r in records)
    lines.append(f"* pairs whose sides people's verdicts swapped (see `human_review`): {flipped}")
    return [*lines, ""]


def dataset_card(
    records: list[dict[str, Any]],
    summary: dict[str, Any],
    config: PipelineConfig,
    settings: str,
    plots: Sequence[Plot] = (),
) -> str:
    """README.md for the export: the YAML block, then the card in prose and lists. `plots`
    are linked by their relative path; `write_plots` puts the files there."""
    front = yaml.safe_dump(card_metadata(records, config), sort_keys=False)
    lines = [
        "---",
        front.rstrip(),
        "---",
        "",
        f"# {config.export.pretty_name}",
        "",
        "Chosen/rejected pairs for preference tuning (DPO and its kin), made with prefgen:",
        "several models answer each instruction, EvolQuality rewrites the answers, "
        + _how_pairs_are_made(config),
        "The format is TRL's conversational one: `prompt` is a list of messages, `chosen` and",
        "`rejected` one assistant message each.",
        "",
        *_how_it_was_made(records, config, settings),
        *_statistics(records, summary, config),
        *human_review_section(records, summary["human_agreement"], config),
        *(["## Plots", "", markdown(list(plots), embed=False), ""] if plots else []),
        "## Columns",
        "",
        *(
            [f"* `{name}`: {describe(EXPORT, name)}" for name in records[0]]
            if records
            else ["_no pairs exported_"]
        ),
        "",
        *_USE_AND_CITATIONS,
    ]
    return "\n".join(lines) + "\n"


def _how_it_was_made(
    records: list[dict[str, Any]], config: PipelineConfig, settings: str
) -> list[str]:
    judge = config.judge
    stale = sum(r["settings_hash"] != settings for r in records)
    return [
        "## How it was made",
        "",
        *(
            f"* model `{name}`: `{config.models[name].served_name or name}`"
            for name in config.models
        ),
        f"* pool: {', '.join(member.model for member in config.generation.pool)}",
        f"* rewrites: `{config.evol_quality.model}`, {config.evol_quality.num_evolutions} "
        f"round(s), criteria {', '.join(config.evol_quality.criteria)}",
        (
            f"* judge: {', '.join(_judge_kind(name, config) for name in judge.models)}, "
            f"aspects {', '.join(judge.aspects)}"
            if judge
            else "* judge: none"
        ),
        (
            f"* pairs: the judge's scores, strategy `{config.pairing.strategy}`, min margin "
            f"{config.pairing.min_margin}"
            if config.pairing.judge_decides()
            else f"* pairs: the rule `{config.pairing.strategy}` (no min margin: the judge "
            "does not decide)"
        ),
        f"* settings hash: `{settings}` (each row's `settings_hash` says what it was made "
        "with, and its ids trace it back)",
        *([f"* rows made with older settings (not re-run since): {stale}"] if stale else []),
        "",
    ]


def dataset_line(origin: dict[str, Any]) -> str:
    """A dataset split as the card names it: name, config, split, rows taken, revision."""
    config = f" config `{origin['config']}`," if origin.get("config") else ""
    limit = f" (first {origin['limit']} rows)" if origin.get("limit") else ""
    return (
        f"`{origin['name']}`,{config} split `{origin['split']}`{limit}, "
        f"revision `{origin['revision']}`"
    )


def _judge_kind(name: str, config: PipelineConfig) -> str:
    """A panel judge as the card names it: its name, and a reward model or its mode."""
    assert config.judge is not None
    kind = config.models[name].kind
    return f"{name} ({'reward model' if kind == 'reward' else config.judge.mode})"


def _statistics(
    records: list[dict[str, Any]], summary: dict[str, Any], config: PipelineConfig
) -> list[str]:
    """The pairs' counts and margins, and what the gates kept out."""
    models = Counter(r["chosen_model"] for r in records)
    return [
        "## Statistics",
        "",
        f"* pairs: {len(records)}",
        f"* batches: {', '.join(summary['batches_exported']) or 'none'}",
        *(
            f"  * {batch}: from {dataset_line(origin)}"
            for batch, origin in summary.get("input_datasets", {}).items()
        ),
        *(f"* chosen from `{model}`: {count}" for model, count in models.most_common()),
        margin_line(records, config),
        "",
        "## What the gates kept out",
        "",
        f"* batches held back by blocking checks: "
        f"{', '.join(summary['batches_held_back']) or 'none'}",
        *(
            f"  * {batch}: {'; '.join(reasons)}"
            for batch, reasons in summary["held_back_reasons"].items()
        ),
        f"* pairs dropped by the pair rule (see candidate_pairs.dropped_because): "
        f"{summary['pairs_dropped']}",
        "",
    ]


_USE_AND_CITATIONS = (
    "## Use",
    "",
    "```python",
    "from datasets import load_dataset",
    "from trl import DPOConfig, DPOTrainer",
    "",
    'pairs = load_dataset("<this repo or folder>", split="train")  # and "test"',
    "trainer = DPOTrainer(model=model, args=DPOConfig(output_dir='out'),",
    "                     train_dataset=pairs, processing_class=tokenizer)",
    "```",
    "",
    "## Citations",
    "",
    "* UltraFeedback: Cui et al., 2023, arXiv:2310.01377",
    "* EvolQuality (Deita): Liu et al., 2023, arXiv:2312.15685",
    "* DPO: Rafailov et al., 2023, arXiv:2305.18290",
)


def write_plots(plots: Sequence[Plot], export_dir: Path) -> list[Path]:
    """The card's plots as PNG files under `export_dir/plots/`, replacing the last export's
    (a plot whose data is gone must not stay behind)."""
    folder = export_dir / PLOTS_DIR
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    paths = [export_dir / plot.file for plot in plots]
    for plot, path in zip(plots, paths, strict=True):
        path.write_bytes(plot.png)
    return paths
