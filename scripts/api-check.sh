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
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=tools/.venv
STAMP="$VENV/.tickgate-requirements.sha256"
hash="$(sha256sum tools/requirements.txt | cut -d' ' -f1)"
if [[ ! -x "$VENV/bin/schemathesis" || ! -f "$STAMP" || "$(cat "$STAMP")" != "$hash" ]]; then
  echo "api-check: installing schemathesis..." >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r tools/requirements.txt </dev/null
  echo "$hash" >"$STAMP"
fi

# shellcheck source=scripts/lib.sh
source scripts/lib.sh
start_gateway
base="$GATEWAY_URL/api/v1"

"$VENV/bin/schemathesis" --config-file schemathesis.toml run "$base/openapi.json" \
  --url "$base" --max-examples 100 --seed 1 --no-color </dev/null
