"""Checks of the models' settings that pydantic cannot make alone, run when a config loads,
so a typo is reported naming its file and field instead of surfacing later inside an engine:

* a vLLM model `path` meant as a local folder that does not exist. vLLM and transformers
  would take it for a Hugging Face repo id and report an invalid or unknown repo, which
  hides the typo. A path is "meant as a folder" when it starts with `./`, `../`, `/` or `~`,
  has more than one `/`, or its first part is (close to) a folder next to the config file;
  a plain hub id such as `org/name` passes unchecked (no network is asked). An openai
  model's `path` is the name the server knows it by, not a folder here, so it is not checked.
* an openai model's `base_urls` entry that is not an http(s) URL with a host (otherwise found
  only after every retry of the first request has failed);
* an openai model's `api_key_env` naming an environment variable that is not set (otherwise
  every request is refused by the server as unauthorized, and retried);
* `ray.address` set where the `ray` package is not installed (otherwise the first engine
  start fails mid-run).

The environment, folder and Ray checks depend on the machine, not the file: `load_config` skips
them when asked to (the Dagster code location loads the graph before any model is made).
"""

from __future__ import annotations

import importlib.util
import os
from difflib import get_close_matches
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from prefgen_dagster.config.errors import ConfigError

if TYPE_CHECKING:
    from prefgen_dagster.config import PipelineConfig

_LOCAL_PREFIXES = ("./", "../", "/", "~")
# How alike a path's first part and a folder next to the config must be to call the path
# local, and a missing name and an existing one to suggest it (difflib's ratio: "modles" vs
# "models" is 0.83).
_CLOSE = 0.8


def check_models(config: PipelineConfig, file: str | Path, *, environment: bool = True) -> None:
    """Raise one ConfigError listing every problem found (see the module docstring)."""
    problems: list[tuple[str, str]] = []
    base = Path(config.base_dir)
    for name, spec in config.models.items():
        where = f"models.{name}"
        if spec.backend == "openai":
            for index, url in enumerate(spec.base_urls):
                if reason := url_problem(url):
                    problems.append((f"{where}.base_urls.{index}", reason))
            key = spec.api_key_env
            if environment and key and not os.environ.get(key):
                problems.append(
                    (
                        f"{where}.api_key_env",
                        f"environment variable {key} is not set (or empty); model {name!r} "
                        "sends it as its API key",
                    )
                )
        elif environment and (reason := missing_folder(spec.path, base)):
            problems.append((f"{where}.path", reason))
    if environment and config.ray.address and importlib.util.find_spec("ray") is None:
        problems.append(
            ("ray.address", "the ray package is not installed: pip install 'prefgen[ray]'")
        )
    if problems:
        raise ConfigError(file, problems)


def url_problem(url: str) -> str | None:
    """Why `url` cannot be a server's base URL, or None."""
    if not url or url != "".join(url.split()):
        return f"{url!r} is empty or contains spaces"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError as err:
        return f"{url!r} is not a valid URL ({err})"
    if parts.scheme not in ("http", "https"):
        return f"{url!r} must start with http:// or https://"
    if not parts.hostname:
        return f"{url!r} has no host"
    return None


def looks_local(path: str, base: Path) -> bool:
    """Is `path` meant as a folder on this machine rather than a hub id?"""
    if path.startswith(_LOCAL_PREFIXES) or path in (".", "..") or path.count("/") > 1:
        return True
    return bool(get_close_matches(path.split("/")[0], _folders(base), n=1, cutoff=_CLOSE))


def missing_folder(path: str, base: Path) -> str | None:
    """Why a local-looking path cannot be used (`no such folder <resolved path>`), or None."""
    if not looks_local(path, base):
        return None
    try:
        candidate = Path(path).expanduser()
    except RuntimeError:  # `~someone` for a user this machine does not know
        candidate = Path(path)
    resolved = (candidate if candidate.is_absolute() else base / candidate).resolve()
    if resolved.exists():
        return None
    return f"no such folder {resolved}{_nearest(resolved)}"


def _nearest(resolved: Path) -> str:
    """A hint from the deepest folder that does exist: a close name in it, if there is one."""
    existing = resolved
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    missing = resolved.relative_to(existing).parts[0]
    match = get_close_matches(missing, _folders(existing), n=1, cutoff=_CLOSE)
    if match:
        return f" (did you mean {existing / match[0]}?)"
    return f" ({existing} has no {missing!r})"


def _folders(folder: Path) -> list[str]:
    try:
        return [entry.name for entry in folder.iterdir() if entry.is_dir()]
    except OSError:
        return []
