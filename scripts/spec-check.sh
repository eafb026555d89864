#!/usr/bin/env bash
# Validate asyncapi.yaml with the AsyncAPI CLI, and lint asyncapi.yaml and
# openapi.yaml with Spectral (ruleset .spectral.yaml), both pinned in
# tools/package.json.
#
# Installs tools/node_modules with `npm ci` when it is missing or was installed
# from a different package-lock.json, then runs `asyncapi validate` from the
# repo root. Exits non-zero when the document has any error-level diagnostic
# (set SPEC_CHECK_FAIL_SEVERITY=warn|info|hint to be stricter).
#
# Works offline once installed, needs no HOME config and never prompts:
# analytics are disabled through a throw-away config file named by
# ASYNCAPI_METRICS_CONFIG_PATH, and the CLI's npm update check is skipped.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TOOLS=tools
LOCK="$TOOLS/package-lock.json"
BIN="$TOOLS/node_modules/.bin/asyncapi"
SPECTRAL="$TOOLS/node_modules/.bin/spectral"
SPEC=asyncapi.yaml
FAIL_SEVERITY="${SPEC_CHECK_FAIL_SEVERITY:-error}"

for cmd in node npm sha256sum; do
  command -v "$cmd" >/dev/null 2>&1 || { echo "spec-check: '$cmd' not found on PATH" >&2; exit 2; }
done
[[ -f "$LOCK" ]] || { echo "spec-check: $LOCK is missing" >&2; exit 2; }
[[ -f "$SPEC" ]] || { echo "spec-check: $SPEC is missing" >&2; exit 2; }

# shellcheck source=scripts/lib.sh
source scripts/lib.sh
install_node_tools

# No telemetry, no update check, no state written to HOME.
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
printf '{"analyticsEnabled":"false","infoMessageShown":"true","userID":"tickgate-ci"}\n' >"$tmp/asyncapi-analytics.json"
export ASYNCAPI_METRICS_CONFIG_PATH="$tmp/asyncapi-analytics.json"
export ASYNCAPI_SKIP_NEW_VERSION_CHECK=true
export NO_UPDATE_NOTIFIER=1

echo "spec-check: $("$BIN" --version </dev/null)" >&2
# The CLI exits 1 when a diagnostic at or above --fail-severity is found.
"$BIN" validate "$SPEC" --fail-severity "$FAIL_SEVERITY" </dev/null

# Spectral: no warning or error in any contract.
echo "spec-check: spectral $("$SPECTRAL" --version </dev/null)" >&2
"$SPECTRAL" lint openapi.yaml openapi.rt-orchestrator.yaml openapi.enhanced.yaml asyncapi.yaml --ruleset .spectral.yaml --fail-severity warn </dev/null
