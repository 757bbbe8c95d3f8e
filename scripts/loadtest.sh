#!/usr/bin/env bash
# Load test: start the gateway on a free loopback port, run locust headless against it, write
# CSV + HTML (+ the gateway's log and a /metrics snapshot) to results/loadtest-<timestamp>/,
# stop the gateway, exit with locust's exit code (thresholds: see loadtests/locustfile.py).
#
#   DURATION=60s USERS=3 SPAWN_RATE=2 scripts/loadtest.sh [extra locust args...]
#   e.g. scripts/loadtest.sh --p95-speech-ms 8000 OpenWebUIChatUser
#
# Env: DURATION (default 60s), USERS (3), SPAWN_RATE (2), STOP_TIMEOUT (30: seconds running
# requests may finish after DURATION, so long ones are counted), HOST (reuse a running gateway instead
# of starting one, e.g. http://127.0.0.1:8000), PYTHON (default .venv/bin/python), RESULTS
# (default results), plus any GATEWAY_* setting for the started gateway and LOADTEST_* thresholds.
set -euo pipefail

cd "$(dirname "$0")/.."
# the locust file's audio inputs are built with benchmarks/clips.py, found in the checkout
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PYTHON=${PYTHON:-.venv/bin/python}
DURATION=${DURATION:-60s}
USERS=${USERS:-3}
SPAWN_RATE=${SPAWN_RATE:-2}
case "$DURATION" in *[0-9]) DURATION="${DURATION}s" ;; esac
OUT=${RESULTS:-results}/loadtest-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"

GW_PID=""
stop_gateway() {
  if [ -n "$GW_PID" ] && kill -0 "$GW_PID" 2>/dev/null; then
    kill -TERM "$GW_PID" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$GW_PID" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$GW_PID" 2>/dev/null || true
  fi
}
trap stop_gateway EXIT INT TERM

if [ -z "${HOST:-}" ]; then
  PORT=$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  HOST="http://127.0.0.1:$PORT"
  echo "starting the gateway on $HOST (log: $OUT/gateway.log)"
  "$PYTHON" -m gateway.cli serve --host 127.0.0.1 --port "$PORT" >"$OUT/gateway.log" 2>&1 &
  GW_PID=$!
  ready=""
  for _ in $(seq 1 240); do
    if ! kill -0 "$GW_PID" 2>/dev/null; then echo "the gateway exited; see $OUT/gateway.log" >&2; exit 2; fi
    if "$PYTHON" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/ready", timeout=2)' "$HOST" 2>/dev/null; then
      ready=1; break
    fi
    sleep 0.5
  done
  [ -n "$ready" ] || { echo "the gateway was not ready after 120 s; see $OUT/gateway.log" >&2; exit 2; }
fi

echo "locust: $USERS users, spawn rate $SPAWN_RATE/s, $DURATION -> $OUT"
set +e
"$PYTHON" -m locust -f loadtests/locustfile.py --headless --host "$HOST" \
  -u "$USERS" -r "$SPAWN_RATE" -t "$DURATION" --stop-timeout "${STOP_TIMEOUT:-30}" \
  --csv "$OUT/locust" --html "$OUT/report.html" --only-summary "$@" 2>&1 | tee "$OUT/locust.log"
rc=${PIPESTATUS[0]}
set -e
"$PYTHON" -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1] + "/metrics", timeout=5).read().decode())' "$HOST" >"$OUT/metrics.txt" 2>/dev/null || true
echo "results in $OUT (exit code $rc)"
exit "$rc"
