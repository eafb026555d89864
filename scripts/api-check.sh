#!/usr/bin/env bash
# Fuzz the REST API of a running gateway against its own OpenAPI document with
# schemathesis (pinned in tools/requirements.txt, configured by
# schemathesis.toml): no server errors, every status code and response body as
# documented, schema-valid requests accepted.
#
# Installs schemathesis into tools/.venv when missing or when the pin changes,
# builds the gateway, starts it on a free loopback port, runs a bounded and
# seeded test (--max-examples, --seed), and stops the gateway.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV=tools/.venv
STAMP="$VENV/.tickgate-requirements.sha256"
hash="$(sha256sum tools/requirements.txt | cut -d' ' -f1)"
if [[ ! -x "$VENV/bin/schemathesis" || ! -f "$STAMP" || "$(cat "$STAMP")" != "$hash" ]]; then
  echo "api-check: installing schemathesis..." >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r tools/requirements.txt </dev/null
  echo "$hash" >"$STAMP"
fi

cargo build --locked --quiet
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
target/debug/tickgate --port "$port" --log-format text >"$VENV/gateway.log" 2>&1 &
gateway=$!
trap 'kill "$gateway" 2>/dev/null || true; wait "$gateway" 2>/dev/null || true' EXIT

base="http://127.0.0.1:$port/api/v1"
for _ in $(seq 100); do
  if python3 -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1], timeout=1)" "$base/health" 2>/dev/null; then
    break
  fi
  kill -0 "$gateway" 2>/dev/null || { echo "api-check: the gateway exited:" >&2; cat "$VENV/gateway.log" >&2; exit 1; }
  sleep 0.1
done

"$VENV/bin/schemathesis" --config-file schemathesis.toml run "$base/openapi.json" \
  --url "$base" --max-examples 100 --seed 1 --no-color </dev/null
