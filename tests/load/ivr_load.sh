#!/usr/bin/env bash
# Load test: short IVR calls against the release engine, over loopback.
#
# Each call (tests/sipp/ivr_load.xml): INVITE, 200, ACK, 3 s of prompt, BYE.
# sipp drives calls at -r per second, at most -l at once, -m in total; the engine's RSS
# and CPU are sampled from /proc during the run. Prints: calls attempted / succeeded /
# failed, retransmissions, INVITE->200 latency percentiles, engine RSS per concurrent
# call and CPU per call.
#
# Usage: tests/load/ivr_load.sh [-r RATE] [-l LIMIT] [-m CALLS] [-t MAX_SECONDS] [--no-build]
#   -r  calls per second (default 100)
#   -l  max simultaneous calls (default 5000)
#   -m  total calls (default 10 x rate)
#   -t  hard time limit for the sipp run in seconds (default: calls/rate + 30)
# Environment: SIP_PORT (15060), HTTP_PORT (18080), SIPP_PORT (15070), RTP_PORTS
# (20000-59999), KEEP=1 keeps the work directory, PHONETREE_BIN runs another binary
# (no build).
#
# Needs: sipp (apt-get install -y sip-tester), python3, a Rust toolchain. Loopback only.
set -euo pipefail

RATE=100 LIMIT=5000 CALLS="" MAXT="" BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        -r) RATE=$2; shift 2 ;;
        -l) LIMIT=$2; shift 2 ;;
        -m) CALLS=$2; shift 2 ;;
        -t) MAXT=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
CALLS=${CALLS:-$((RATE * 10))}
MAXT=${MAXT:-$((CALLS / RATE + 30))}
SIP_PORT=${SIP_PORT:-15060}
HTTP_PORT=${HTTP_PORT:-18080}
SIPP_PORT=${SIPP_PORT:-15070}
RTP_PORTS=${RTP_PORTS:-20000-59999}

repo=$(cd "$(dirname "$0")/../.." && pwd)
command -v sipp >/dev/null || { echo "ivr_load.sh: sipp not found: sudo apt-get install -y sip-tester" >&2; exit 1; }
command -v python3 >/dev/null || { echo "ivr_load.sh: python3 not found" >&2; exit 1; }

work=$(mktemp -d /tmp/phonetree-load.XXXXXX)
engine_pid=""
sampler_pid=""
cleanup() {
    [ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null || true
    if [ -n "$engine_pid" ] && kill -0 "$engine_pid" 2>/dev/null; then
        kill -TERM "$engine_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$engine_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$engine_pid" 2>/dev/null || true
    fi
    if [ "${KEEP:-0}" = 1 ]; then echo "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

bin=${PHONETREE_BIN:-$repo/target/release/phonetree}
if [ "$BUILD" = 1 ] && [ -z "${PHONETREE_BIN:-}" ]; then
    (cd "$repo" && cargo build --release --bin phonetree >&2)
fi
[ -x "$bin" ] || { echo "ivr_load.sh: $bin missing (run without --no-build)" >&2; exit 1; }

cat > "$work/phonetree.yaml" <<YAML
sip:
  listen: 127.0.0.1:$SIP_PORT
http:
  listen: 127.0.0.1:$HTTP_PORT
media:
  rtp_ports: $RTP_PORTS
  bind: 127.0.0.1
  rtp_timeout: 30s
flows_dir: $repo/flows
prompts_dir: $repo/prompts
data_dir: $work
call_records_file: false
limits:
  max_calls: 100000
YAML

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
RUST_LOG=${RUST_LOG:-warn} "$bin" serve --config "$work/phonetree.yaml" > "$work/engine.log" 2>&1 &
engine_pid=$!

# Ready when /api/health answers 200 (at most 20 s).
python3 - "$HTTP_PORT" <<'PY' || { echo "engine did not become ready; log:" >&2; tail -20 "$work/engine.log" >&2; exit 1; }
import sys, time, urllib.request
deadline = time.time() + 20
while time.time() < deadline:
    try:
        if urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/api/health", timeout=1).status == 200:
            sys.exit(0)
    except Exception:
        time.sleep(0.2)
sys.exit(1)
PY
sleep 1

# Sampler: one line per 0.5 s: unix time, VmRSS kB, utime+stime ticks, threads.
sample() {
    local pid=$1
    while kill -0 "$pid" 2>/dev/null; do
        local rss ticks threads
        rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        threads=$(awk '/^Threads:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        # fields 14 and 15 of /proc/PID/stat, counted after the ")" that ends the command name
        ticks=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13}' || echo 0)
        echo "$(date +%s.%N) $rss $ticks $threads"
        sleep 0.5
    done
}
sample "$engine_pid" > "$work/samples.txt" &
sampler_pid=$!
sleep 1.2   # idle baseline samples

echo "== sipp: $CALLS calls at $RATE/s (max $LIMIT at once, limit ${MAXT}s) against 127.0.0.1:$SIP_PORT" >&2
set +e
(cd "$work" && timeout $((MAXT + 15)) sipp -sf "$repo/tests/sipp/ivr_load.xml" -s ivr \
    -i 127.0.0.1 -p "$SIPP_PORT" -mi 127.0.0.1 -mp $((SIPP_PORT + 10)) \
    -r "$RATE" -l "$LIMIT" -m "$CALLS" \
    -timeout "${MAXT}s" -nostdin -skip_rlimit \
    -trace_stat -stf "$work/stat.csv" -fd 1 \
    -trace_rtt -rtt_freq 1 \
    -trace_err -error_file "$work/errors.log" \
    "127.0.0.1:$SIP_PORT" > "$work/sipp.screen" 2>&1)
sipp_rc=$?
set -e
sleep 1.2   # settle: calls ended, samples after the run
kill "$sampler_pid" 2>/dev/null || true
wait "$sampler_pid" 2>/dev/null || true
sampler_pid=""

rtt=$(ls "$work"/ivr_load_*_rtt.csv 2>/dev/null | head -1 || true)
python3 - "$work/stat.csv" "${rtt:-}" "$work/samples.txt" "$sipp_rc" "$RATE" "$CALLS" "$(getconf CLK_TCK)" <<'PY'
import csv, sys
stat_path, rtt_path, samples_path, rc, rate, calls, hz = sys.argv[1:8]
hz = float(hz)

rows = list(csv.reader(open(stat_path), delimiter=";"))
head, last = rows[0], rows[-1]
col = {name: i for i, name in enumerate(head)}
def get(name, default="0"):
    i = col.get(name)
    return last[i] if i is not None and i < len(last) else default
def num(name):
    try:
        return float(get(name))
    except ValueError:
        return 0.0

created = int(num("TotalCallCreated"))
ok = int(num("SuccessfulCall(C)"))
failed = int(num("FailedCall(C)"))
retrans = int(num("Retransmissions(C)"))
peak_calls = max(int(float(r[col["CurrentCall"]] or 0)) for r in rows[1:] if len(r) > col["CurrentCall"])
elapsed = get("ElapsedTime(C)")

lat = []
if rtt_path:
    for line in open(rtt_path):
        parts = line.strip().split(";")
        if len(parts) >= 2:
            try:
                lat.append(float(parts[1]))
            except ValueError:
                pass
lat.sort()
def pct(p):
    if not lat:
        return float("nan")
    return lat[min(len(lat) - 1, int(round(p / 100 * (len(lat) - 1))))]

samples = []
for line in open(samples_path):
    t, rss, ticks, threads = line.split()
    samples.append((float(t), int(rss), int(ticks), int(threads)))
idle_rss = samples[0][1]
peak_rss = max(s[1] for s in samples)
end_rss = samples[-1][1]
cpu_s = (samples[-1][2] - samples[0][2]) / hz
wall = samples[-1][0] - samples[0][0]

print(f"sipp exit code            {rc}  (0 = every call succeeded)")
print(f"rate / total              {rate}/s, {calls} calls, sipp elapsed {elapsed}")
print(f"calls attempted           {created}")
print(f"calls succeeded           {ok}")
print(f"calls failed              {failed}")
print(f"retransmissions           {retrans}")
print(f"peak concurrent calls     {peak_calls}")
print(f"INVITE->200 latency (ms)  (sipp resolution 1 ms)\n                          p50 {pct(50):.2f}  p90 {pct(90):.2f}  p99 {pct(99):.2f}  max {lat[-1] if lat else float('nan'):.2f}  (n={len(lat)})")
print(f"engine RSS (MiB)          idle {idle_rss/1024:.1f}  peak {peak_rss/1024:.1f}  after {end_rss/1024:.1f}")
if peak_calls:
    print(f"engine RSS per call       {(peak_rss - idle_rss) / peak_calls:.1f} KiB  ((peak - idle) / peak concurrent calls)")
print(f"engine CPU                {cpu_s:.2f} s over {wall:.1f} s wall = {cpu_s / wall if wall else 0:.2f} cores average")
if ok:
    print(f"engine CPU per call       {cpu_s / ok * 1000:.3f} ms  (CPU s / successful calls)")
print(f"engine threads            {max(s[3] for s in samples)}")
PY
if [ "$sipp_rc" != 0 ]; then
    echo "-- sipp errors (tail):" >&2
    tail -5 "$work/errors.log" 2>/dev/null >&2 || true
fi
exit "$sipp_rc"
