"""Every config problem is one `ConfigError` line: `<config file>: <field>: <reason>`."""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from prefgen_dagster.bundled import DEMO_CONFIG, TINY_CONFIG
from prefgen_dagster.config import ConfigError, PipelineConfig, load_config
from prefgen_dagster.config.checks import looks_local, url_problem
from tests.unit.conftest import config_dict

KEY_ENV = "PREFGEN_TEST_API_KEY"


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    """`write(**sections)`: the unit tests' base config with sections replaced, as a file."""

    def _write(**sections: Any) -> Path:
        path = tmp_path / "prefgen.yaml"
        path.write_text(yaml.safe_dump(config_dict(**sections)), encoding="utf-8")
        return path

    return _write


def error_of(path: Path, **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path, **kwargs)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    return message.removeprefix(f"{path}: ")


def server(**fields: Any) -> dict[str, Any]:
    """The base models plus an openai-backend model `srv` with the given fields."""
    models = config_dict()["models"]
    models["srv"] = {"path": "served-name", "backend": "openai", **fields}
    return models


# --- the file itself -----------------------------------------------------------------------


def test_a_missing_file(tmp_path: Path) -> None:
    assert error_of(tmp_path / "nope.yaml") == "no such config file"


def test_a_yaml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("paths:\n  duckdb_path: 'unclosed\n")
    assert error_of(path).startswith("line 3, column 1: invalid YAML: found unexpected end")


def test_a_top_level_list(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- models\n- generation\n")
    assert error_of(path) == (
        "the top level must be a mapping of sections (models:, generation:, ...), not a YAML list"
    )


# --- pydantic's errors ---------------------------------------------------------------------


def test_a_type_error_names_the_field_and_the_value(write: Callable[..., Path]) -> None:
    models = config_dict()["models"]
    models["judge-m"]["max_model_len"] = "long"
    assert error_of(write(models=models)) == (
        "models.judge-m.max_model_len: Input should be a valid integer, unable to parse "
        "string as an integer (got 'long')"
    )


def test_a_list_entry_is_named_by_its_index(write: Callable[..., Path]) -> None:
    assert error_of(write(models=server(base_urls=["http://a:1/v1", 7]))) == (
        "models.srv.base_urls.1: Input should be a valid string (got 7)"
    )


def test_a_misspelt_key_and_a_validator_message(write: Callable[..., Path]) -> None:
    assert error_of(write(engine={"chunk_sise": 4})) == (
        "engine.chunk_sise: not a known setting (misspelt, or in the wrong section?)"
    )
    assert error_of(write(models=server())) == (
        "models.srv: an openai backend needs at least one entry in base_urls"
    )


def test_several_errors_share_one_line(write: Callable[..., Path]) -> None:
    engine = {"chunk_size": 0, "token_budget": -1, "typo": 1, "other": 2}
    message = error_of(write(engine=engine))
    assert message.count("; ") == 2 and message.endswith(" (and 1 more)")
    assert message.startswith("engine.chunk_size: Input should be greater than 0 (got 0); ")


# --- checks at load time -------------------------------------------------------------------


def test_a_mistyped_local_folder_is_no_such_folder(
    tmp_path: Path, write: Callable[..., Path]
) -> None:
    (tmp_path / "models" / "judge").mkdir(parents=True)
    models = config_dict()["models"]
    models["gen-a"]["path"] = "./models/gen-a"
    message = error_of(write(models=models))
    assert message.startswith(f"models.gen-a.path: no such folder {tmp_path}/models/gen-a")
    # gen-b is `models/gen-b`: a hub-style name, but `models` is a folder here, so it is
    # taken for a local one; `modles/judge` is close to that folder.
    assert f"models.gen-b.path: no such folder {tmp_path}/models/gen-b" in message
    models = config_dict()["models"]
    models["judge-m"]["path"] = "modles/judge"
    message = error_of(write(models=models))
    assert f"models.judge-m.path: no such folder {tmp_path}/modles/judge" in message
    assert f"(did you mean {tmp_path}/models?)" in message


def test_a_hub_id_passes_and_an_existing_folder_is_fine(
    tmp_path: Path, write: Callable[..., Path]
) -> None:
    models = config_dict()["models"]
    models["gen-a"]["path"] = "HuggingFaceTB/SmolLM2-135M-Instruct"
    (tmp_path / "deep" / "gen-b").mkdir(parents=True)
    models["gen-b"]["path"] = "./deep/gen-b"
    models["judge-m"]["path"] = str(tmp_path / "deep" / "gen-b")
    config = load_config(write(models=models))
    assert config.model_location("gen-a") == "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.mark.parametrize(
    ("path", "local"),
    [
        ("org/name", False),
        ("name", False),
        ("./name", True),
        ("../models/x", True),
        ("/abs/x", True),
        ("~/x", True),
        ("a/b/c", True),
        ("models/x", True),  # `models` is a folder next to the config
        ("modells/x", True),  # close to it
    ],
)
def test_what_counts_as_a_local_folder(tmp_path: Path, path: str, local: bool) -> None:
    (tmp_path / "models").mkdir()
    assert looks_local(path, tmp_path) is local


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("localhost:8000/v1", "must start with http:// or https://"),
        ("ftp://host/v1", "must start with http:// or https://"),
        ("http:///v1", "has no host"),
        ("http://host:port/v1", "is not a valid URL"),
        ("http://host :8000", "contains spaces"),
        ("", "is empty"),
    ],
)
def test_a_malformed_base_url_names_its_entry(
    write: Callable[..., Path], url: str, reason: str
) -> None:
    message = error_of(write(models=server(base_urls=["http://127.0.0.1:8000/v1", url])))
    assert message.startswith(f"models.srv.base_urls.1: {url!r} ") and reason in message
    assert url_problem("https://api.example.com/v1") is None


def test_an_unset_api_key_env_names_the_variable_and_the_model(
    write: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(models=server(base_urls=["http://127.0.0.1:8000/v1"], api_key_env=KEY_ENV))
    monkeypatch.delenv(KEY_ENV, raising=False)
    assert error_of(path) == (
        f"models.srv.api_key_env: environment variable {KEY_ENV} is not set (or empty); "
        "model 'srv' sends it as its API key"
    )
    monkeypatch.setenv(KEY_ENV, "secret")
    assert load_config(path).models["srv"].api_key_env == KEY_ENV


def test_a_ray_address_without_ray_installed_says_what_to_install(
    write: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(ray={"address": "auto"})
    assert load_config(path).ray.address == "auto"  # ray is installed here
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "ray" else real_find_spec(name)
    )
    assert error_of(path) == (
        "ray.address: the ray package is not installed: pip install 'prefgen[ray]'"
    )
    assert load_config(path, check_environment=False).ray.address == "auto"


def test_the_shape_only_load_skips_what_depends_on_this_machine(
    write: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    models = server(base_urls=["http://127.0.0.1:8000/v1"], api_key_env=KEY_ENV)
    models["gen-a"]["path"] = "./not/made/yet"
    assert isinstance(load_config(write(models=models), check_environment=False), PipelineConfig)
    models["srv"]["base_urls"] = ["127.0.0.1:8000"]  # a malformed URL is wrong anywhere
    assert "base_urls.0" in error_of(write(models=models), check_environment=False)


@pytest.mark.parametrize("bundled", [TINY_CONFIG, DEMO_CONFIG])
def test_the_bundled_configs_load(tmp_path: Path, bundled: Path) -> None:
    """As the code location reads them (before any model is made), and fully once their
    model folders exist."""
    assert load_config(bundled, check_environment=False).models
    path = tmp_path / bundled.name
    shutil.copyfile(bundled, path)
    assert "no such folder" in error_of(path)
    for spec in yaml.safe_load(bundled.read_text())["models"].values():
        (tmp_path / spec["path"]).mkdir(parents=True)
    assert load_config(path).models
