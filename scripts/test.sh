#!/usr/bin/env bash
# Set up (first time only), lint, then the whole test suite, slow end-to-end tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
.venv/bin/ruff check .
# Two workers, each taking whole test files: much of a test's time is one process importing
# or waiting on a server, so a second test fits beside it. (Not `loadgroup`: pytest-xdist
# 3.8 cannot group tests under pytest 9.) `-n 0` runs in this process.
exec .venv/bin/python -m pytest -n 2 --dist loadfile "$@"
