#!/usr/bin/env bash
# Set up (the locked .venv, built when missing or out of date), lint, check the declared
# dependencies, then the whole test suite, slow end-to-end tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
.venv/bin/ruff check .
# Every imported distribution declared in pyproject.toml, every declared one used
# ([tool.deptry] says which are used without an import, and why).
.venv/bin/deptry .
# Two workers, each taking whole test files: much of a test's time is one process importing
# or waiting on a server, so a second test fits beside it. (Not `loadgroup`: pytest-xdist
# 3.8 cannot group tests under pytest 9.) `-n 0` runs in this process. Short tracebacks keep
# a failing CI log readable (tests/readable_failures.py keeps them formattable at all).
exec .venv/bin/python -m pytest -n 2 --dist loadfile --tb=short "$@"
