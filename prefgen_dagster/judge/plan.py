"""Pure planning of the judging: the groups a judge compares, their requests (as the
judge's mode makes them, `modes.py`), and the rating rows an answer gives. `stage.py` runs
the plans."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.config.base import SamplingParams
from prefgen_dagster.config.judge import JUDGE_ORDERS, JudgeConfig
from prefgen_dagster.ids import seed_from, stable_hash
from prefgen_dagster.judge.canaries import Canary, sample_ids
from prefgen_dagster.judge.modes import MODES, JudgeMode, mode_of
from prefgen_dagster.judge.parse import JudgeVerdict
from prefgen_dagster.llm.plan import Planned, model_identity
from prefgen_dagster.llm.tokens import SEAM_TOKENS, TokenCounters, prompts_tokens
from prefgen_dagster.llm.types import LLMRequest
from prefgen_dagster.text.conversation import prompt_text


def judge_settings(config: PipelineConfig) -> str:
    identities = [model_identity(config, name) for name in config.judge_models()]
    judge = config.judge.model_dump(mode="json") if config.judge else None
    return stable_hash([judge, identities])


@dataclass(frozen=True)
class JudgeGroup:
    """Texts a judge compares with each other: an instruction's candidates (`label`), the
    same candidates shown again in reversed order (`position_probe`), or one canary's intact
    and corrupted texts (`canary`). `items` are (id, text) in the base order."""

    group_id: str  # the instruction id, or the canary id
    instruction_id: str
    purpose: str
    items: tuple[tuple[str, str], ...]
    orders: tuple[str, ...]  # listwise: the orders to show the items in


def probe_sample(instruction_ids: list[str], judge: JudgeConfig) -> set[str]:
    """The instructions whose candidates the judge sees again in reversed order, to measure
    position bias (none when the listwise orders already reverse)."""
    if not judge.probes_position():
        return set()
    return sample_ids(sorted(instruction_ids), judge.position_probe, 1, judge.seed, "probe")


def judge_groups(
    candidates: list[dict[str, Any]],
    canaries: list[Canary],
    config: PipelineConfig,
    probed: set[str] | None = None,
) -> list[JudgeGroup]:
    """Every group the judges see: the candidates of each instruction (base order: by
    completion id), a reversed second look at a sample of them (`probe_sample` of their
    instructions, or `probed` where the candidates are a slice of a batch's), and each
    canary."""
    judge = config.judge
    if judge is None:
        return []
    orders = MODES[judge.mode].orders(judge)
    by_instruction: dict[str, list[tuple[str, str]]] = {}
    for candidate in sorted(candidates, key=lambda c: c["completion_id"]):
        by_instruction.setdefault(candidate["instruction_id"], []).append(
            (candidate["completion_id"], candidate["text"] or "")
        )
    groups = [
        JudgeGroup(iid, iid, "label", tuple(items), orders)
        for iid, items in sorted(by_instruction.items())
    ]
    if probed is None:
        probed = probe_sample(list(by_instruction), judge)
    if probed:
        groups += [
            JudgeGroup(g.group_id, g.instruction_id, "position_probe", g.items, ("reversed",))
            for g in groups
            if g.instruction_id in probed and len(g.items) > 1
        ]
    groups += [
        JudgeGroup(c.canary_id, c.instruction_id, "canary", tuple(c.items()), orders)
        for c in canaries
    ]
    return groups


# purpose, group id, judge model name, aspect, and the request's place in the group (the
# order's name, or the ids of the texts it shows)
JudgeKey = tuple[str, ...]


@dataclass(frozen=True)
class JudgeSlot:
    """What one judge request is for: the texts it shows, in order, and why it is asked."""

    key: JudgeKey  # the same for a request and its re-asks
    instruction_id: str
    purpose: str  # label, position_probe or canary
    mode: str
    completion_ids: list[str]  # in the order shown
    aspect: str
    order_name: str
    attempt: int


def plan_judging(
    groups: list[JudgeGroup],
    instructions: dict[str, dict[str, Any]],
    config: PipelineConfig,
    attempt: int,
    only: set[JudgeKey] | None = None,
) -> list[Planned]:
    """The judge requests for every group, judge and aspect, as the judge's mode makes them
    (`modes.py`). Re-asks (`attempt` > 0, limited to the keys in `only`) use a new seed and
    some temperature, or they would repeat the answer that failed to parse."""
    judge = config.judge
    if judge is None:
        return []
    plans = []
    for group in groups:
        instruction = prompt_text(instructions[group.instruction_id])
        for judge_name in judge.models:
            mode = mode_of(config, judge_name)
            requests = mode.requests(list(group.items), group.orders)
            identity = model_identity(config, judge_name)
            for aspect in judge.aspects:
                for slot, shown, order in requests:
                    key = (group.purpose, group.group_id, judge_name, aspect, slot)
                    if only is None or key in only:
                        texts = [text for _, text in shown]
                        seed_basis = mode.seed_basis(
                            group.group_id, group.instruction_id, order, texts
                        )
                        seed = seed_from(
                            "judge", judge.seed, mode.name, *seed_basis, aspect, identity, attempt
                        )
                        request = LLMRequest(
                            identity,
                            mode.messages(instruction, texts, aspect, judge.with_rationale),
                            _judge_sampling(judge, mode, len(texts), attempt),
                            seed,
                            json_schema=mode.schema(
                                len(texts), aspect, judge.rationale_max_chars, judge.with_rationale
                            ),
                        )
                        slot_row = JudgeSlot(
                            key, group.instruction_id, group.purpose, mode.name,
                            [item_id for item_id, _ in shown], aspect, order, attempt,
                        )  # fmt: skip
                        plans.append(Planned(judge_name, request, slot_row))
    return plans


def request_messages(
    config: PipelineConfig, judge_name: str, instruction: str, texts: list[str], aspect: str
) -> list[dict[str, str]]:
    """The messages of one request of a panel judge, showing `texts` in order."""
    assert config.judge is not None
    return mode_of(config, judge_name).messages(
        instruction, texts, aspect, config.judge.with_rationale
    )


def _judge_sampling(
    judge: JudgeConfig, mode: JudgeMode, count: int, attempt: int
) -> SamplingParams:
    """The configured sampling; `max_tokens` unset: enough for any schema-valid answer about
    `count` texts (see `JudgeMode.token_bound`)."""
    temperature = judge.sampling.temperature
    if attempt > 0:
        temperature = max(temperature, 0.7)
    return SamplingParams(
        temperature=temperature,
        top_p=judge.sampling.top_p,
        max_tokens=judge.sampling.max_tokens
        or mode.token_bound(count, judge.rationale_max_chars, judge.with_rationale),
    )


def judge_prompt_tokens(
    plans: list[Planned],
    instructions: dict[str, dict[str, Any]],
    counters: TokenCounters,
    config: PipelineConfig,
) -> list[int]:
    """Each judge request's prompt without its texts, counted in parts: the prompt around an
    empty instruction and empty texts (the same for every request of a model, mode, number
    of texts and aspect, so counted once each), plus the instruction's own tokens. Counting
    every prompt whole took most of an estimate's time (kilobytes of rubric per request)."""
    judge = config.judge
    if judge is None:
        return []
    frames: dict[tuple[str, int, str], int] = {}
    questions: dict[tuple[str, str], int] = {}
    for name in dict.fromkeys(plan.model_name for plan in plans):
        mine = [plan for plan in plans if plan.model_name == name]
        counter = counters.for_model(name)
        shapes = list(dict.fromkeys((len(p.row.completion_ids), p.row.aspect) for p in mine))
        empty = [
            request_messages(config, name, "", [""] * count, aspect) for count, aspect in shapes
        ]
        for (count, aspect), size in zip(
            shapes, prompts_tokens(empty, counter, config), strict=True
        ):
            frames[name, count, aspect] = size
        asked = list(dict.fromkeys(plan.row.instruction_id for plan in mine))
        texts = [prompt_text(instructions[iid]) for iid in asked]
        for iid, size in zip(asked, counter.count(texts), strict=True):
            questions[name, iid] = size
    return [
        frames[plan.model_name, len(plan.row.completion_ids), plan.row.aspect]
        + questions[plan.model_name, plan.row.instruction_id]
        + (1 + len(plan.row.completion_ids)) * SEAM_TOKENS
        for plan in plans
    ]


def rating_rows(
    plan: Planned,
    verdict: JudgeVerdict,
    raw_output: str | None,
    config: PipelineConfig,
    batch_id: str,
) -> list[dict[str, Any]]:
    """One `ratings` row per text the request showed; a failed parse gives NULL ratings."""
    settings = judge_settings(config)
    shown = plan.row.completion_ids
    order = plan.row.order_name
    return [
        {
            "batch_id": batch_id,
            "completion_id": completion_id,
            "instruction_id": plan.row.instruction_id,
            "judge": plan.request.model,
            "aspect": plan.row.aspect,
            "judge_order": JUDGE_ORDERS.index(order),
            "order_name": order,
            "position": position,
            "shown": len(shown),
            "rating": verdict.ratings[position - 1],
            "not_applicable": verdict.is_na(position - 1),
            "rationale": verdict.rationales[position - 1],
            "raw_output": raw_output,
            "parse_status": verdict.status,
            "attempts": plan.row.attempt + 1,
            "call_id": plan.request.call_id,
            "judge_settings": settings,
            "purpose": plan.row.purpose,
            "mode": plan.row.mode,
            "raw_score": verdict.scores[position - 1] if verdict.scores else None,
        }
        for position, completion_id in enumerate(shown, start=1)
    ]
