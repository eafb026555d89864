# Helpers sourced by the check scripts. Expects the repository root as the
# current directory.

# Installs tools/node_modules with `npm ci` when missing or installed from a
# different tools/package.json or tools/package-lock.json.
install_node_tools() {
  local stamp=tools/node_modules/.tickgate-lock.sha256 hash
  hash="$(cat tools/package.json tools/package-lock.json | sha256sum | cut -d' ' -f1)"
  if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$hash" ]]; then
    echo "installing tools (npm ci)..." >&2
    local start=$SECONDS
    # --ignore-scripts: nothing these tools need runs at install time, and
    # @asyncapi/cli's postinstall would edit ~/.bashrc (tools/.npmrc agrees).
    npm ci --prefix tools --no-audit --no-fund --ignore-scripts --loglevel=error </dev/null
    echo "$hash" >"$stamp"
    echo "tools installed in $((SECONDS - start)) s" >&2
  fi
}

# Builds the gateway and starts it on a free loopback port; sets GATEWAY_URL
# (http://127.0.0.1:PORT) and stops the gateway when the calling script exits.
start_gateway() {
  cargo build --locked --quiet
  local port log
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  log="$(mktemp)"
  # A fresh store per run: the checks see a first start (with backfill).
  TICKGATE_STORE__DATA_DIR="$(mktemp -d)" TICKGATE_CANDLES__PORT=0 TICKGATE_MARKET_STREAM__PORT=0 TICKGATE_RT_ORCHESTRATOR__PORT=0 TICKGATE_ENHANCED__PORT=0 target/debug/tickgate --port "$port" >"$log" 2>&1 &
  GATEWAY_PID=$!
  trap 'kill "$GATEWAY_PID" 2>/dev/null || true; wait "$GATEWAY_PID" 2>/dev/null || true' EXIT
  GATEWAY_URL="http://127.0.0.1:$port"
  for _ in $(seq 100); do
    if python3 -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1], timeout=1)" "$GATEWAY_URL/api/v1/health" 2>/dev/null; then
      return 0
    fi
    kill -0 "$GATEWAY_PID" 2>/dev/null || { echo "the gateway exited:" >&2; cat "$log" >&2; return 1; }
    sleep 0.1
  done
  echo "the gateway did not answer /api/v1/health in 10 s" >&2
  return 1
}
