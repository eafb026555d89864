#!/usr/bin/env bash
# Checks the TypeScript client in generated/typescript/:
#   1. generated/typescript/src/messages.ts is fresh (regenerated from
#      generated/schemas/*.json and asyncapi.yaml by tools/generate-typescript.mjs);
#   2. it compiles with tsc (strict; pinned in tools/package.json) into
#      generated/typescript/dist/;
#   3. its tests (node --test) pass against a live gateway, plus one the
#      reconnect test starts and restarts itself.
# The client's only runtime dependency, `ws`, comes from tools/node_modules
# through the git-ignored symlink generated/typescript/node_modules/ws, so
# Node's ordinary resolution finds it from dist/ and the package needs no
# npm install of its own.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib.sh

PKG=generated/typescript

install_node_tools

fresh="$(mktemp)"
node tools/generate-typescript.mjs --stdout >"$fresh"
if ! cmp -s "$fresh" "$PKG/src/messages.ts"; then
  diff -u "$PKG/src/messages.ts" "$fresh" | head -40 >&2 || true
  rm -f "$fresh"
  echo "$PKG/src/messages.ts is stale: run node tools/generate-typescript.mjs" >&2
  exit 1
fi
rm -f "$fresh"

mkdir -p "$PKG/node_modules"
ln -sfn ../../../tools/node_modules/ws "$PKG/node_modules/ws"

rm -rf "$PKG/dist"
tools/node_modules/.bin/tsc -p "$PKG/tsconfig.json"

start_gateway
token="$(target/debug/tickgate token --sub ts-user 2>/dev/null)"
GATEWAY_URL="$GATEWAY_URL" GATEWAY_TOKEN="$token" node --test "$PKG/test/"
