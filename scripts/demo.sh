#!/usr/bin/env bash
# npsd demo: everything on this machine, nothing left behind.
#
#   bash scripts/demo.sh [--seconds N] [--rate R]
#
# Installs missing Debian packages, builds, then starts a private
# redis-server, the embedded development Kafka broker (`npsctl broker`,
# in-memory, for demos only) and npsd, generates N seconds (default 60) of
# realistic traffic at R responses/s (default 50) with `npsctl gen`, shows
# `npsctl top` live, and finally prints the cards of the two accounts with
# the lowest NPS and a summary. Ctrl-C stops early; everything started here
# is stopped and the temporary directory removed on exit.
set -euo pipefail

seconds=60
rate=50
accounts=40
while [ $# -gt 0 ]; do
        case "$1" in
        --seconds) seconds="${2:?--seconds needs a value}"; shift 2 ;;
        --seconds=*) seconds="${1#*=}"; shift ;;
        --rate) rate="${2:?--rate needs a value}"; shift 2 ;;
        --rate=*) rate="${1#*=}"; shift ;;
        --accounts) accounts="${2:?--accounts needs a value}"; shift 2 ;;
        -h|--help)
                sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
                exit 0 ;;
        *) echo "demo.sh: unknown argument: $1 (try --help)" >&2; exit 2 ;;
        esac
done
case "$seconds$rate$accounts" in
*[!0-9.]*) echo "demo.sh: --seconds, --rate and --accounts take numbers" >&2; exit 2 ;;
esac

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

say() {
        if [ -t 2 ]; then printf '\033[1m==> %s\033[0m\n' "$*" >&2
        else printf '==> %s\n' "$*" >&2; fi
}

# Python with the Debian confluent_kafka module (install-deps.sh installs
# python3-confluent-kafka for the system interpreter).
py=python3
[ -x /usr/bin/python3 ] && py=/usr/bin/python3

tmp=""
pids=()          # started in this order; stopped in reverse
# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
        local rc=$? i
        trap - EXIT INT TERM
        for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
                kill -TERM "${pids[i]}" 2>/dev/null || true
                # npsd drains and commits on SIGTERM: give each a moment.
                for _ in $(seq 50); do
                        kill -0 "${pids[i]}" 2>/dev/null || break
                        sleep 0.1
                done
                kill -KILL "${pids[i]}" 2>/dev/null || true
                wait "${pids[i]}" 2>/dev/null || true
        done
        if [ -t 1 ]; then printf '\033[?25h'; fi # cursor back, if top hid it
        [ -n "$tmp" ] && rm -rf "$tmp"
        exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "checking packages"
bash scripts/install-deps.sh

say "building (build/)"
cmake -S . -B build >/dev/null
cmake --build build -j2 >/dev/null

tmp="$(mktemp -d "${TMPDIR:-/tmp}/npsd-demo.XXXXXX")"

# A free port for a private Redis: nothing listens there yet.
port=6390
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        port=$((port + 1))
        [ "$port" -lt 6490 ] || { echo "demo.sh: no free port 6390-6489" >&2; exit 1; }
done

say "starting redis-server on 127.0.0.1:$port"
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$tmp" --daemonize no >"$tmp/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && break
        sleep 0.1
done
redis-cli -p "$port" ping >/dev/null 2>&1 || {
        echo "demo.sh: redis-server did not start:" >&2; cat "$tmp/redis.log" >&2; exit 1; }

say "starting the development Kafka broker (in-memory, demo only)"
build/npsctl broker --bootstrap-file "$tmp/bootstrap" >/dev/null 2>"$tmp/broker.log" &
pids+=($!)
for _ in $(seq 100); do
        [ -s "$tmp/bootstrap" ] && break
        sleep 0.1
done
[ -s "$tmp/bootstrap" ] || {
        echo "demo.sh: broker did not start:" >&2; cat "$tmp/broker.log" >&2; exit 1; }
bootstrap="$(cat "$tmp/bootstrap")"
echo "    bootstrap.servers=$bootstrap" >&2

# A free port for /metrics and /healthz (9464 may be another npsd's).
http_port=9464
while (exec 3<>"/dev/tcp/127.0.0.1/$http_port") 2>/dev/null; do
        http_port=$((http_port + 1))
        [ "$http_port" -lt 9564 ] || { echo "demo.sh: no free port 9464-9563" >&2; exit 1; }
done

say "starting npsd (log: npsd.log in the demo's temporary directory)"
echo "    metrics: http://127.0.0.1:$http_port/metrics  health: http://127.0.0.1:$http_port/healthz" >&2
build/npsd --config config/npsd.conf \
        --set "kafka.bootstrap.servers=$bootstrap" \
        --set kafka.auto.offset.reset=earliest \
        --set redis.host=127.0.0.1 --set "redis.port=$port" \
        --set "http.listen=127.0.0.1:$http_port" \
        >"$tmp/npsd.log" 2>&1 &
npsd_pid=$!
pids+=("$npsd_pid")
sleep 2
kill -0 "$npsd_pid" 2>/dev/null || {
        echo "demo.sh: npsd exited:" >&2; tail -n 30 "$tmp/npsd.log" >&2; exit 1; }

say "generating ${seconds}s of traffic at ${rate} responses/s for ${accounts} accounts"
build/npsctl gen --bootstrap "$bootstrap" --accounts "$accounts" \
        --rate "$rate" --duration "$seconds" --days 120 \
        --bad-ratio 0.02 --dup-ratio 0.02 --usage-per-response 2 \
        --followup-ratio 0.6 >/dev/null 2>"$tmp/gen.log" &
gen_pid=$!
pids+=("$gen_pid")

gen_running() { kill -0 "$gen_pid" 2>/dev/null; }

if [ -t 1 ]; then
        build/npsctl top --redis-port "$port" --interval 2 &
        top_pid=$!
        pids+=("$top_pid")
        while gen_running; do sleep 1; done
        kill -INT "$top_pid" 2>/dev/null || true
        wait "$top_pid" 2>/dev/null || true
        unset 'pids[${#pids[@]}-1]'
        echo
else
        # Not a terminal (CI, a pipe): a plain snapshot every 10 s.
        while gen_running; do
                for _ in $(seq 10); do gen_running && sleep 1; done
                echo "--- $(date -u +%H:%M:%SZ)"
                build/npsctl top --redis-port "$port" --once || true
        done
fi

gen_rc=0
wait "$gen_pid" || gen_rc=$?
say "generator finished (exit $gen_rc); letting npsd drain"
sleep 5
kill -0 "$npsd_pid" 2>/dev/null || echo "demo.sh: warning: npsd is no longer running" >&2

build/npsctl top --redis-port "$port" --once || true

mapfile -t lowest < <(redis-cli -p "$port" --raw ZRANGE nps:rank:nps_90d 0 1)
for acct in "${lowest[@]}"; do
        [ -n "$acct" ] || continue
        echo
        build/npsctl account "$acct" --redis-port "$port" || true
done

# DLQ: the broker's watermarks of nps.dlq (every rejected input lands there).
dlq="$("$py" - "$bootstrap" <<'EOF' 2>/dev/null || echo "?"
import sys
from confluent_kafka import Consumer, TopicPartition
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": "npsd-demo-dlq-count"})
md = c.list_topics("nps.dlq", timeout=10).topics["nps.dlq"]
n = 0
for p in md.partitions:
    lo, hi = c.get_watermark_offsets(TopicPartition("nps.dlq", p), timeout=10)
    n += hi - lo
c.close()
print(n)
EOF
)"

echo
say "summary"
echo "generator : $(tail -n 1 "$tmp/gen.log")"
echo "dlq       : $dlq messages in nps.dlq (the generator sent $(sed -n 's/.* invalid=\([0-9]*\).*/\1/p' "$tmp/gen.log" | tail -n 1) invalid ones)"
echo "npsd log  : $(wc -l <"$tmp/npsd.log") lines, $(grep -c 'level=error' "$tmp/npsd.log" || true) errors, $(grep -c 'level=warn' "$tmp/npsd.log" || true) warnings; last lines:"
tail -n 5 "$tmp/npsd.log" | sed 's/^/    /'
echo "redis     : $(redis-cli -p "$port" dbsize) keys"
# /healthz and a few /metrics counters, read with bash's /dev/tcp (no curl).
http_get() {
        (exec 3<>"/dev/tcp/127.0.0.1/$http_port" &&
                printf 'GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n' "$1" >&3 &&
                cat <&3) 2>/dev/null | tr -d '\r'
}
echo "healthz   : $(http_get /healthz | sed -n '1s/^HTTP\/[0-9.]* //p')"
echo "metrics   :"
http_get /metrics | grep -E '^npsd_(messages_(consumed|produced)_total|responses_accepted_total|processing_latency_seconds_count|consumer_lag)' | sed 's/^/    /'
exit "$gen_rc"
