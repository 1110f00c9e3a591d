#!/usr/bin/env bash
# Set up (first time only), lint, then the whole test suite, slow end-to-end tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
