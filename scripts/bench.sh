#!/usr/bin/env bash
# Runs the fan-out benchmarks of issue 6 and rewrites the "Fan-out" section of
# docs/benchmarks.md (every other section is kept as it is).
#
#   scripts/bench.sh           the full scenarios (about 5 minutes)
#   scripts/bench.sh --quick   clients, rates and durations scaled down ~10x:
#                              a smoke run that proves the pipeline works
#   --debug                    use the debug build (tests the script only:
#                              its numbers say nothing about the gateway)
#
# Each scenario gets a fresh release gateway on a free loopback port (its
# configuration through TICKGATE_* variables, a temporary store), measured by
# `tickgate bench` from the outside with --server-pid. Redis: $REDIS_URL
# (default redis://127.0.0.1:6379); when it does not answer, a private
# redis-server is started on a free port for the run. Raw JSON results stay
# in $BENCH_OUT (default: a temporary directory, printed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0
PROFILE=release
for arg in "$@"; do
  case "$arg" in
    --quick) QUICK=1 ;;
    --debug) PROFILE=debug ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown argument $arg (use --quick, --debug or nothing)" >&2; exit 2 ;;
  esac
done

# Full scale, or about a tenth of it.
scale() { if [[ $QUICK == 1 ]]; then echo "$2"; else echo "$1"; fi; }

OUT="${BENCH_OUT:-$(mktemp -d /tmp/tickgate-bench.XXXXXX)}"
mkdir -p "$OUT"
: >"$OUT/commands.txt"
BIN="${CARGO_TARGET_DIR:-target}/$PROFILE/tickgate"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

echo "building ($PROFILE)..." >&2
if [[ $PROFILE == release ]]; then cargo build --release --locked --quiet; else cargo build --locked --quiet; fi

# One process may hold at most the hard limit of open files (20,000 here).
ulimit -n "$(ulimit -Hn)"

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Redis: the configured one, or a private one for this run.
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
redis_host_port="${REDIS_URL#redis://}"
redis_host_port="${redis_host_port%%/*}"
if ! redis-cli -h "${redis_host_port%:*}" -p "${redis_host_port##*:}" ping >/dev/null 2>&1; then
  port="$(free_port)"
  echo "Redis does not answer at $REDIS_URL; starting a private one on $port" >&2
  redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no >"$OUT/redis.log" 2>&1 &
  PIDS+=($!)
  REDIS_URL="redis://127.0.0.1:$port"
  for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
# A prefix of our own: nothing else on this Redis sees the load, nor we its.
PREFIX="bench$$."

# Starts a gateway with the given extra environment (NAME=VALUE ...); sets
# GW_PID and GW_PORT. The store is a fresh directory and keeps bars only:
# these numbers measure fan-out (storage ingest is measured below).
start_gateway() {
  GW_PORT="$(free_port)"
  local log="$OUT/gateway-$GW_PORT.log"
  env TICKGATE_SERVER__PORT="$GW_PORT" \
    TICKGATE_SERVER__MAX_CONNECTIONS=20000 \
    TICKGATE_SERVER__MAX_CONNECTIONS_PER_IP=20000 \
    TICKGATE_SERVER__HANDSHAKES_PER_IP_PER_SECOND=100000 \
    TICKGATE_CANDLES__ENABLED=false \
    TICKGATE_MARKET_STREAM__ENABLED=false \
    TICKGATE_RT_ORCHESTRATOR__ENABLED=false \
    TICKGATE_ENHANCED__ENABLED=false \
    TICKGATE_STORE__DATA_DIR="$(mktemp -d "$OUT/store.XXXXXX")" \
    TICKGATE_STORE__TICKS=false \
    TICKGATE_LOG__FILTER=warn \
    "$@" "$BIN" >"$log" 2>&1 &
  GW_PID=$!
  PIDS+=("$GW_PID")
  for _ in $(seq 300); do
    if curl -fs "http://127.0.0.1:$GW_PORT/api/v1/health" >/dev/null 2>&1; then
      return 0
    fi
    kill -0 "$GW_PID" 2>/dev/null || { echo "the gateway exited:" >&2; cat "$log" >&2; return 1; }
    sleep 0.1
  done
  echo "the gateway did not answer /api/v1/health in 30 s" >&2
  return 1
}

stop_gateway() {
  kill "$GW_PID" 2>/dev/null || true
  wait "$GW_PID" 2>/dev/null || true
}

# Runs `tickgate bench ARGS...`, keeps its JSON line in $OUT/NAME.json and
# the command line (with the gateway's environment) in commands.txt.
bench() {
  local name="$1" env_text="$2"; shift 2
  echo "== $name: tickgate bench $*" >&2
  printf '%s\t%s\t%s\n' "$name" "$env_text" "tickgate bench $*" >>"$OUT/commands.txt"
  "$BIN" bench "$@" >"$OUT/$name.json"
  cat "$OUT/$name.json" >&2
}

REDIS_ENV=(TICKGATE_REDIS__URL="$REDIS_URL" TICKGATE_REDIS__PREFIX="$PREFIX" TICKGATE_SIMULATOR__ENABLED=false)
REDIS_ARGS=(--publish redis --redis-url "$REDIS_URL" --redis-channel "${PREFIX}quotes.realtime" --tickers 300)

# 0. The machine's limit, in the same run as everything else, with as many
# clients as the main scenarios.
bench limit "" limit --clients "$(scale 500 50)" --duration "$(scale 5s 1s)"

# 1. Seed 002 contract: every client on every ticker, through Redis.
start_gateway "${REDIS_ENV[@]}"
bench contract "${REDIS_ENV[*]}" run --dialect quotes --url "ws://127.0.0.1:$GW_PORT/ws/quotes" \
  --clients "$(scale 500 50)" --tickers-per-client all "${REDIS_ARGS[@]}" --rate "$(scale 1000 100)" \
  --duration "$(scale 10s 2s)" --warmup "$(scale 2s 1s)" --server-pid "$GW_PID"
stop_gateway

# 2. Filtered: 5 random tickers per client.
start_gateway "${REDIS_ENV[@]}"
bench filtered "${REDIS_ENV[*]}" run --dialect quotes --url "ws://127.0.0.1:$GW_PORT/ws/quotes" \
  --clients "$(scale 1000 100)" --tickers-per-client 5 "${REDIS_ARGS[@]}" --rate "$(scale 10000 1000)" \
  --duration "$(scale 10s 2s)" --warmup "$(scale 2s 1s)" --server-pid "$GW_PID"
stop_gateway

# 3. Saturation: raise the rate until loss appears (at most 12 steps).
start_gateway "${REDIS_ENV[@]}"
rate="$(scale 1000 100)"
for step in $(seq 12); do
  bench "saturation-$step" "${REDIS_ENV[*]}" run --dialect quotes --url "ws://127.0.0.1:$GW_PORT/ws/quotes" \
    --clients "$(scale 500 50)" --tickers-per-client all "${REDIS_ARGS[@]}" --rate "$rate" \
    --duration "$(scale 5s 2s)" --warmup "$(scale 2s 1s)" --server-pid "$GW_PID"
  loss="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["loss"])' "$OUT/saturation-$step.json")"
  [[ "$loss" != 0 ]] && break
  rate=$((rate * 2))
done
stop_gateway

# 4. Idle connections on one ticker.
start_gateway
bench idle "" idle --url "ws://127.0.0.1:$GW_PORT/ws/quotes?tickers=AAPL" \
  --clients "$(scale 15000 1500)" --source-ips 127.0.0.1-127.0.0.20 --server-pid "$GW_PID"
stop_gateway

# 5. v1 market_data for every symbol, simulator in load mode.
V1_ENV=(TICKGATE_SIMULATOR__TICKS_PER_SECOND="$(scale 10000 1000)" TICKGATE_CHANNELS__MARKET_DATA__MAX_SUBSCRIBERS=20000)
start_gateway "${V1_ENV[@]}"
bench v1 "${V1_ENV[*]}" run --dialect v1 --url "ws://127.0.0.1:$GW_PORT/api/v1/ws/v1" \
  --clients "$(scale 1000 100)" --tickers-per-client all --publish simulator --rate "$(scale 10000 1000)" \
  --duration "$(scale 10s 2s)" --warmup "$(scale 2s 1s)" --server-pid "$GW_PID"
stop_gateway

# 6. Churn while data flows.
CHURN_ENV=(TICKGATE_SIMULATOR__TICKS_PER_SECOND="$(scale 1000 100)" TICKGATE_CHANNELS__MARKET_DATA__MAX_SUBSCRIBERS=20000)
start_gateway "${CHURN_ENV[@]}"
bench churn "${CHURN_ENV[*]}" churn --url "ws://127.0.0.1:$GW_PORT/api/v1/ws/v1" \
  --clients "$(scale 1000 100)" --cycles "$(scale 100 10)" --server-pid "$GW_PID"
stop_gateway

python3 - "$OUT" "$QUICK" docs/benchmarks.md "$PROFILE" <<'PY'
# Builds the Fan-out section from the JSON results and puts it in place of
# the old one; the other sections of the file stay as they are.
import datetime, json, os, platform, re, subprocess, sys

out, quick, doc, profile = sys.argv[1], sys.argv[2] == "1", sys.argv[3], sys.argv[4]
def load(name):
    with open(os.path.join(out, name + ".json")) as f:
        return json.loads(f.read().strip().splitlines()[-1])

limit = load("limit")
batched = limit["batched_frames_per_second"]
def ratio(delivered):
    return f"{delivered / batched:.2%}" if batched else "-"
def ms(us):
    return "-" if us is None else f"{us / 1000:.2f} ms"
def n(x):
    return f"{x:,.0f}"
def over(value, target):
    return f"missed by {(value - target) / target:.0%}" if value > target else "met"

rows = []
def loss_text(r):
    return f"loss {n(r['loss'])} of {n(r['expected'])} ({r['loss_ratio']:.2%})"
def latency_row(name, r, target_ms, target):
    lat = r["latency"]
    verdicts = []
    if r["loss"] > 0:
        verdicts.append(f"missed: loss {r['loss_ratio']:.2%}")
    if lat["p99_us"] is None:
        verdicts.append("missed: nothing measured")
    elif lat["p99_us"] > target_ms * 1000:
        verdicts.append(f"p99 {over(lat['p99_us'], target_ms * 1000)}")
    result = (f"{n(r['delivered_per_second'])} deliveries/s, {loss_text(r)}, "
              f"p50 {ms(lat['p50_us'])}, p99 {ms(lat['p99_us'])}, p99.9 {ms(lat['p999_us'])}, max {ms(lat['max_us'])}; "
              f"{r['connected']} connected, {r['connect_errors']} connect errors; "
              f"server {r['server']['cpu_cores']} cores")
    rows.append((name, target, result, ratio(r["delivered_per_second"]), "; ".join(verdicts) or "met"))

latency_row("1. Seed 002 contract", load("contract"), 10, "zero loss, p99 <= 10 ms")
latency_row("2. Filtered", load("filtered"), 5, "zero loss, p99 <= 5 ms")

steps = sorted((f for f in os.listdir(out) if f.startswith("saturation-")), key=lambda f: int(f[11:-5]))
sat = [load(f[:-5]) for f in steps]
clean = [r for r in sat if r["loss"] == 0]
knee = clean[-1] if clean else None
first_loss = next((r for r in sat if r["loss"] > 0), None)
if knee:
    delivered = knee["delivered_per_second"]
    text = f"knee at {n(knee['rate'])} msgs/s: {n(delivered)} deliveries/s without loss (p99 {ms(knee['latency']['p99_us'])}, server {knee['server']['cpu_cores']} cores)"
else:
    delivered = 0
    text = "loss at the first step"
if first_loss:
    text += f"; at {n(first_loss['rate'])} msgs/s: {n(first_loss['delivered_per_second'])} delivered/s, {loss_text(first_loss)}"
else:
    text += "; no loss up to the last step"
verdicts = []
target_abs = 100_000 if quick else 1_000_000
if delivered < target_abs:
    verdicts.append(f"missed by {1 - delivered / target_abs:.0%} (absolute)")
if batched and delivered < 0.2 * batched:
    verdicts.append(f"{delivered / batched:.1%} of the limit, short of 20 %")
rows.append(("3. Saturation", f">= {n(target_abs)} deliveries/s and >= 20 % of the limit", text, ratio(delivered), "; ".join(verdicts) or "met"))

idle = load("idle")
per = idle["bytes_per_connection"]
rows.append(("4. Idle", "<= 4 KiB (4,096 B) per connection",
             f"{n(per) if per is not None else '-'} B per connection over {n(idle['connected'])} connections "
             f"(RSS {n(idle['rss_before_kib'] or 0)} -> {n(idle['rss_after_kib'] or 0)} KiB; {idle['connect_errors']} connect errors)",
             "-", "met" if per is not None and per <= 4096 else ("missed" if per is None else f"missed by {(per - 4096) / 4096:.0%}")))

v1 = load("v1")
v = v1["v1"]
lat = v1["latency"]
verdicts = []
if not v["cap_held"]:
    verdicts.append(f"cap missed: {v['per_client_second_max']} frames in one second, cap {v['rate_cap']}/s")
if lat["p99_us"] is None or lat["p99_us"] > 10_000:
    verdicts.append("p99 " + ("unmeasured" if lat["p99_us"] is None else over(lat["p99_us"], 10_000)))
rows.append(("5. v1 market_data", "per-client rate <= channel cap, conflation counted, p99 <= 10 ms",
             f"{n(v1['delivered_per_second'])} frames/s to {v1['connected']} clients; busiest client-second {v['per_client_second_max']} frames (cap {v['rate_cap']}/s, +1 for the bucket edge); "
             f"{n(v['seq_gaps'])} ticks conflated (seq gaps); p50 {ms(lat['p50_us'])}, p99 {ms(lat['p99_us'])}, max {ms(lat['max_us'])}; errors {v['error_codes'] or 'none'}",
             ratio(v1["delivered_per_second"]), "; ".join(verdicts) or "met"))

churn = load("churn")
documented = set(re.search(r"enum: \[(invalid_json[^\]]*)\]", open("asyncapi.yaml").read()).group(1).replace(" ", "").split(","))
undocumented = {k: v for k, v in churn["error_codes"].items() if k not in documented}
r = churn["rss_after_over_before"]
verdicts = []
if r is None or abs(r - 1) > 0.10:
    verdicts.append("RSS " + ("unmeasured" if r is None else f"off baseline by {r - 1:+.0%}"))
if undocumented:
    verdicts.append(f"undocumented errors {undocumented}")
rows.append(("6. Churn", "RSS back to baseline +-10 %, only documented error frames",
             f"{n(churn['cycles_done'])} of {n(churn['clients'] * churn['cycles_per_client'])} cycles in {churn['seconds']} s; "
             f"RSS {n(churn['rss_before_kib'] or 0)} -> {n(churn['rss_connected_kib'] or 0)} (connected) -> {n(churn['rss_after_kib'] or 0)} KiB (x{r}); "
             f"errors {churn['error_codes'] or 'none'}; {churn['reply_timeouts']} replies timed out",
             "-", "; ".join(verdicts) or "met"))

def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"
mem = sh("free -g | awk '/^Mem:/ {print $2}'")
cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
lines = []
lines.append("## Fan-out" + (" (quick smoke run: about a tenth of the scenarios' scale)" if quick else ""))
if profile != "release":
    lines.append("")
    lines.append(f"**A {profile} build: these numbers only show that the script works; they say nothing about the gateway.**")
lines.append("")
lines.append("Written by `scripts/bench.sh`" + (" --quick" if quick else "") + (f" --{profile}" if profile != "release" else "") + ". Each scenario runs against a fresh " + profile + " gateway "
             "(simulator off when Redis publishes, `store.ticks = false` so the numbers are fan-out alone), measured by `tickgate bench` "
             "from another process on the same machine. Latency is receive time minus the frame's `timestamp` (the publish time), "
             "on the same clock. The limit is `tickgate bench limit` of the same run: a trivial server writing pre-encoded quote frames "
             "to built-in clients; ratios are delivered frames/s over its batched (64 KiB writes) number.")
lines.append("")
lines.append(f"- Machine: {sh('nproc')} cores ({cpu}), {mem} GiB memory, Linux {platform.release()}")
lines.append(f"- Date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")
lines.append(f"- Load average at the end (1, 5, 15 min): {' '.join(open('/proc/loadavg').read().split()[:3])}; anything above 0 is another process sharing the 2 cores")
lines.append(f"- Limit: {n(limit['single_write_frames_per_second'])} frames/s one frame per write, "
             f"{n(batched)} frames/s in 64 KiB writes ({limit['batched_over_single']}x), {limit['clients']} clients, {limit['frame_bytes']}-byte frames")
lines.append("")
lines.append("| scenario | target | result | ratio to limit | verdict |")
lines.append("|---|---|---|---|---|")
for row in rows:
    lines.append("| " + " | ".join(str(c).replace("|", "/") for c in row) + " |")
lines.append("")
lines.append("Command lines (gateway environment, then the bench command; `$PORT` and `$PID` are the scenario's gateway, "
             "`benchNNN.` a Redis prefix of the run's own):")
lines.append("")
lines.append("```sh")
with open(os.path.join(out, "commands.txt")) as f:
    for line in f:
        name, env, cmd = line.rstrip("\n").split("\t")
        cmd = re.sub(r"127\.0\.0\.1:\d+/", "127.0.0.1:$PORT/", cmd)
        cmd = re.sub(r"--server-pid \d+", "--server-pid $PID", cmd)
        cmd = re.sub(r"--url (\S*\?\S*)", r"--url '\1'", cmd)
        lines.append(f"# {name}" + (f": {env}" if env else ""))
        lines.append(cmd)
lines.append("```")
lines.append("")
section = "\n".join(lines) + "\n"

text = open(doc).read()
parts = re.split(r"(?m)^(?=## )", text)
head, sections = parts[0], parts[1:]
sections = [s for s in sections if not s.startswith("## Fan-out")]
at = next((i for i, s in enumerate(sections) if s.startswith("## Storage ingest")), len(sections))
sections.insert(at, section)
with open(doc, "w") as f:
    f.write(head + "".join(s if s.endswith("\n\n") or s is sections[-1] else s + "\n" for s in sections))
print("\n".join(lines[:12 + len(rows)]), file=sys.stderr)
PY
echo "raw results: $OUT" >&2
