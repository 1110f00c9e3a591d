"""Deterministic tiny random-weight chat models for offline tests and demos.

The model directory is loadable by ``vllm.LLM`` and ``transformers`` and is
built locally in a few seconds: a byte-level BPE tokenizer trained on the
bundled ``tiny_corpus.txt`` plus a 2-layer Qwen2/Llama with random weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

VERSION = 2
CORPUS = Path(__file__).with_name("tiny_corpus.txt")
MARKER = "prefgen_tiny.json"
VOCAB_SIZE = 3000
INIT_STD = 0.2  # large on purpose: small std makes every prompt emit one token
# A random model almost never samples its end token, so every answer would run to
# max_tokens, and a cut answer is never chosen for a pair. The last hidden channel carries a
# constant from the token embeddings (the layers' norms ignore it) that only the end token's
# output row reads: on vLLM about two answers in three end within 48 tokens (~20 tokens).
# It also evens out the model's choices: greedy decoding gives the same rating everywhere,
# so tiny.yaml's judge samples at temperature 1.
END_CHANNEL = 120.0
END_WEIGHT = 0.32
# Same normalizer/pre-tokenizer as transformers' Qwen2Tokenizer, which AutoTokenizer
# substitutes for qwen2 models: tokenization is then identical for both arches.
PRETOKENIZE_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CONFIGS = {"qwen2": Qwen2Config, "llama": LlamaConfig}
# The two models of `tiny.yaml`: (folder under the config's folder, architecture, seed).
TINY_MODELS = (("models/tiny-qwen2", "qwen2", 1), ("models/tiny-llama", "llama", 2))
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def _write_json(path: Path, data: dict) -> None:
    """Write JSON with sorted keys so identical inputs give identical bytes."""
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _train_tokenizer(out_dir: Path) -> dict[str, int]:
    """Train a byte-level BPE tokenizer on the corpus; return special-token ids."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS.read_text(encoding="utf-8").splitlines(), trainer)
    tok.save(str(out_dir / "tokenizer.json"))
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    added = {
        str(i): {
            "content": t,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for t, i in ids.items()
    }
    _write_json(
        out_dir / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "added_tokens_decoder": added,
            "bos_token": None,
            "eos_token": "<|im_end|>",
            "pad_token": "<|endoftext|>",
            "unk_token": None,
            "chat_template": CHAT_TEMPLATE,
            "clean_up_tokenization_spaces": False,
            "model_max_length": 4096,
        },
    )
    ids["vocab_size"] = tok.get_vocab_size()
    return ids


def _build_model(out_dir: Path, arch: str, seed: int, ids: dict[str, int]) -> None:
    """Create a tiny random-weight causal LM and save it as float32 safetensors."""
    config = CONFIGS[arch](
        vocab_size=ids["vocab_size"],
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,  # head_dim 32: vLLM's CPU attention needs >= 32
        num_key_value_heads=2,
        max_position_embeddings=4096,
        initializer_range=INIT_STD,
        tie_word_embeddings=False,
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        dtype="float32",
    )
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)  # private RNG: global torch state untouched
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() > 1 or name.endswith(".bias"):
                param.normal_(0.0, INIT_STD, generator=gen)
            else:
                param.fill_(1.0)  # RMSNorm scales
        channel = config.hidden_size - 1
        model.model.embed_tokens.weight[:, channel] = END_CHANNEL
        for layer in model.model.layers:
            layer.input_layernorm.weight[channel] = 0.0
            layer.post_attention_layernorm.weight[channel] = 0.0
        model.lm_head.weight[:, channel] = 0.0
        model.lm_head.weight[ids["<|im_end|>"], channel] = END_WEIGHT
    config.architectures = [type(model).__name__]
    config.save_pretrained(out_dir)
    save_file(model.state_dict(), str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    _write_json(
        out_dir / "generation_config.json",
        {
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": [ids["<|im_end|>"], ids["<|endoftext|>"]],
            "pad_token_id": ids["<|endoftext|>"],
        },
    )


def make_tiny_model(out_dir: Path | str, arch: str = "qwen2", seed: int = 0) -> Path:
    """Build (or reuse) a deterministic tiny chat model in ``out_dir``.

    ``arch`` is ``"qwen2"`` or ``"llama"``; the same ``(arch, seed)`` always
    yields byte-identical files. Returns the model directory.
    """
    if arch not in CONFIGS:
        raise ValueError(f"arch must be one of {sorted(CONFIGS)}, got {arch!r}")
    out = Path(out_dir)
    marker = {"arch": arch, "seed": seed, "version": VERSION}
    marker_path = out / MARKER
    if marker_path.exists() and json.loads(marker_path.read_text()) == marker:
        return out
    out.mkdir(parents=True, exist_ok=True)
    marker_path.unlink(missing_ok=True)
    ids = _train_tokenizer(out)
    _build_model(out, arch, seed, ids)
    _write_json(marker_path, marker)  # written last: marks a complete build
    return out


def make_tiny_models(base: Path) -> None:
    """Both models of `tiny.yaml` under `base` (fast engine tests and benchmarks)."""
    for folder, arch, seed in TINY_MODELS:
        make_tiny_model(base / folder, arch=arch, seed=seed)
