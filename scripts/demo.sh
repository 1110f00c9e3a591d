#!/usr/bin/env bash
# Set up (first time only), build the two tiny local models, run the demo batch end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
exec .venv/bin/prefgen demo "$@"
