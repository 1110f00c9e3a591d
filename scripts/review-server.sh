#!/usr/bin/env bash
# The review server: Label Studio (locks/review.txt) in its own venv, listening on 127.0.0.1
# only, in the foreground (stop it with SIGTERM to its process group).
#
#   bash scripts/review-server.sh [DATA_DIR [PORT]]   start it
#   bash scripts/review-server.sh --install           only build its venv
#
# DATA_DIR  its SQLite database, media and credentials (default $PREFGEN_REVIEW_DATA or
#           data/review, beside prefgen's DuckDB file); PORT default $PREFGEN_REVIEW_PORT or 8095.
# PREFGEN_REVIEW_VENV  its venv (default .venv-review), built from the lock when the lock or
#           this script changed (like scripts/setup.sh), with an empty migrated database that
#           a new DATA_DIR starts from (Label Studio's migrations take a minute or more).
# PREFGEN_REVIEW_USER, PREFGEN_REVIEW_PASSWORD, PREFGEN_REVIEW_TOKEN  the first user's email,
#           password and API token, set on the first start (the last two generated when unset)
#           and kept in DATA_DIR/credentials (mode 600); never printed.
# PREFGEN_REVIEW_LOG_LEVEL  Label Studio's log level (default WARNING).
#
# Clients send `Authorization: Token <token>`: Label Studio's legacy tokens, which this script
# switches on because they can be set at the first start, without a browser.
# Exit code 2: a bad port, a data folder that is not writable or lacks its credentials, or a
# user, password or token other than those the data folder was created with.
set -euo pipefail

fail() { echo "review-server: $*" >&2; exit 2; }

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
INSTALL_ONLY=0
if [ "${1:-}" = --install ]; then INSTALL_ONLY=1; shift; fi
DATA="$(realpath -m "${1:-${PREFGEN_REVIEW_DATA:-$ROOT/data/review}}")"
PORT="${2:-${PREFGEN_REVIEW_PORT:-8095}}"
VENV="$(realpath -m "${PREFGEN_REVIEW_VENV:-$ROOT/.venv-review}")"
PYTHON="${PYTHON:-python3.11}"
LOCK="$ROOT/locks/review.txt"
TEMPLATE="$VENV/empty-database"

# A clean environment: Label Studio also reads unprefixed names (HOST, PORT, USERNAME, …), so
# the caller's must not leak into it. No Sentry (its default DSN sends errors, with user data,
# to Label Studio's own Sentry), no usage analytics, no version check on PyPI.
LS_ENV=(PATH="$VENV/bin:/usr/bin:/bin" LANG=C.UTF-8 TZ="${TZ:-UTC}" PYTHONUNBUFFERED=1
    SENTRY_DSN= FRONTEND_SENTRY_DSN= COLLECT_ANALYTICS=false LATEST_VERSION_CHECK=false
    LOG_LEVEL="${PREFGEN_REVIEW_LOG_LEVEL:-WARNING}")

# One install at a time (parallel test workers start servers together).
mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9
STAMP="$VENV/.prefgen-review"
WANT="$(cat "$LOCK" "$0" | sha256sum | cut -c1-16)"
if ! { [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; }; then
    echo "review-server: installing $LOCK into $VENV" >&2
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --require-hashes --no-deps -r "$LOCK" >&2
    echo "review-server: migrating an empty database ($TEMPLATE)" >&2
    env -i "${LS_ENV[@]}" HOME="$TEMPLATE" LABEL_STUDIO_BASE_DATA_DIR="$TEMPLATE" \
        SECRET_KEY=template "$VENV/bin/label-studio" init --quiet >"$VENV/migrate.log" 2>&1 \
        || { tail -20 "$VENV/migrate.log" >&2; exit 1; }
    echo "$WANT" >"$STAMP"
fi
exec 9>&-
[ "$INSTALL_ONLY" = 0 ] || exit 0

[[ "$PORT" =~ ^[0-9]+$ ]] && ((PORT > 0 && PORT < 65536)) || fail "port '$PORT' is not a port number"
mkdir -p "$DATA" 2>/dev/null && [ -w "$DATA" ] || fail "data folder $DATA is not writable"
chmod 700 "$DATA"
CREDENTIALS="$DATA/credentials"
if [ -f "$DATA/label_studio.sqlite3" ] && [ ! -f "$CREDENTIALS" ]; then
    fail "$CREDENTIALS is missing beside its database: remove $DATA to start afresh"
fi
random() { "$VENV/bin/python" -c "import secrets; print(secrets.token_hex($1))"; }
# Label Studio sets the first user, its password and token only when it creates that user,
# on the first start: a later start may ask for the same ones or none.
setting() {  # KEY, the value the caller asks for (or empty), its variable, the default
    local kept
    kept="$([ -f "$CREDENTIALS" ] && sed -n "s/^$1=//p" "$CREDENTIALS" || true)"
    if [ -n "$2" ] && [ -n "$kept" ] && [ "$2" != "$kept" ]; then
        fail "$3 differs from the $1 $DATA was created with (see $CREDENTIALS)"
    fi
    echo "${2:-${kept:-$4}}"
}
USER_EMAIL="$(setting user "${PREFGEN_REVIEW_USER:-}" PREFGEN_REVIEW_USER prefgen@localhost)"
PASSWORD="$(setting password "${PREFGEN_REVIEW_PASSWORD:-}" PREFGEN_REVIEW_PASSWORD "$(random 12)")"
TOKEN="$(setting token "${PREFGEN_REVIEW_TOKEN:-}" PREFGEN_REVIEW_TOKEN "$(random 20)")"
[[ "$TOKEN" =~ ^[A-Za-z0-9_-]{20,40}$ ]] \
    || fail "PREFGEN_REVIEW_TOKEN must be 20 to 40 letters, digits, - or _"
# Not Label Studio's own key file (DATA_DIR/.env): a random key there that starts with `$` is
# read as a reference by django-environ, so each start makes a new key and prints the old one.
SECRET_KEY="$(setting secret_key "" "" "$(random 32)")"
(umask 077 && printf 'user=%s\npassword=%s\ntoken=%s\nsecret_key=%s\n' \
    "$USER_EMAIL" "$PASSWORD" "$TOKEN" "$SECRET_KEY" >"$CREDENTIALS.tmp")
mv "$CREDENTIALS.tmp" "$CREDENTIALS"
[ -f "$DATA/label_studio.sqlite3" ] || cp "$TEMPLATE/label_studio.sqlite3" "$DATA/"

# Label Studio itself moves on to the next free port when this one is taken: refuse instead,
# so that a client never talks to another server.
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    fail "port $PORT on 127.0.0.1 is in use (PREFGEN_REVIEW_PORT or the second argument)"
fi
exec env -i "${LS_ENV[@]}" HOME="$DATA" LABEL_STUDIO_BASE_DATA_DIR="$DATA" \
    SECRET_KEY="$SECRET_KEY" LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true \
    LABEL_STUDIO_USERNAME="$USER_EMAIL" LABEL_STUDIO_PASSWORD="$PASSWORD" \
    LABEL_STUDIO_USER_TOKEN="$TOKEN" \
    "$VENV/bin/label-studio" start --no-browser --internal-host 127.0.0.1 --port "$PORT"
