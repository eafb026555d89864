#!/usr/bin/env bash
# Loads the three documentation pages (/api/v1/asyncapi, /api/v1/docs,
# /api/v1/redoc) of a live gateway in headless Chromium with playwright-core
# (tools/browser-check.mjs): each must load with no console error, page error
# or failed request, and show its operations and channels. Screenshots go to
# artifacts/screenshots/.
#
# Installs Debian's chromium (apt) and the Node tools (npm ci) when missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v chromium >/dev/null 2>&1; then
  echo "browser-check: installing chromium (apt)..." >&2
  apt-get update -qq </dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium </dev/null >/dev/null
fi

# shellcheck source=scripts/lib.sh
source scripts/lib.sh
install_node_tools
start_gateway
CHROMIUM="$(command -v chromium)" node tools/browser-check.mjs "$GATEWAY_URL" artifacts/screenshots
