#!/usr/bin/env bash
# Media load test: phonetree + examples/callgen on loopback.
#
# Builds the release engine and callgen, starts the engine on a temporary config (flows and
# prompts from this repo, records in a temp dir), places CALLS calls at RATE/s with at most
# CONCURRENT up at once, each held HOLD seconds (callgen sends 20 ms PCMU like a phone unless
# --no-send-rtp), and samples the engine's CPU (utime+stime from /proc/PID/stat) and RSS
# (VmRSS) once a second: idle before, at the plateau (health's active_calls ≥ 98 % of the
# peak) and after. Prints engine cores at the plateau, CPU per 1000 calls and RSS per call,
# then callgen's summary (loss, pacing, drift, setup latency).
#
# Usage: tests/load/media_load.sh [-c CONCURRENT] [-H HOLD_S] [-r RATE] [-n CALLS]
#                                 [--no-send-rtp] [--no-build] [--json FILE]
#   defaults: -c 1000 -H 20 -r 100 -n CONCURRENT
# Environment: SIP_PORT (5062) HTTP_PORT (8092) RTP_PORTS (20000-39999) RTP_BASE (40000)
#   RECORDS (1: write call-records.jsonl to the temp dir) RUST_LOG (engine default).
# Needs: cargo, curl, awk. Loopback only; bounded in time; kills what it started on exit.
# One descriptor per call in each process: the script raises `ulimit -n` to 65536 (or the
# hard limit if lower) and refuses to start if that is too low for CONCURRENT.
set -euo pipefail

CONCURRENT=1000
HOLD=20
RATE=100
CALLS=
SEND_RTP=--send-rtp
BUILD=1
JSON_OUT=
while [ $# -gt 0 ]; do
    case "$1" in
        -c) CONCURRENT=$2; shift 2 ;;
        -H) HOLD=$2; shift 2 ;;
        -r) RATE=$2; shift 2 ;;
        -n) CALLS=$2; shift 2 ;;
        --no-send-rtp) SEND_RTP=; shift ;;
        --no-build) BUILD=0; shift ;;
        --json) JSON_OUT=$2; shift 2 ;;
        -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "media_load.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
CALLS=${CALLS:-$CONCURRENT}
SIP_PORT=${SIP_PORT:-5062}
HTTP_PORT=${HTTP_PORT:-8092}
RTP_PORTS=${RTP_PORTS:-20000-39999}
RTP_BASE=${RTP_BASE:-40000}
RECORDS=${RECORDS:-1}

repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"

log() { printf '[media_load %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---- build --------------------------------------------------------------------------------
target_dir=${CARGO_TARGET_DIR:-$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')}
target_dir=${target_dir:-$repo/target}
if [ "$BUILD" = 1 ]; then
    log "building release engine and callgen (waits if the target dir is locked)"
    cargo build --release --bin phonetree >&2
    cargo build --release --example callgen >&2
fi
engine_bin=$target_dir/release/phonetree
callgen_bin=$target_dir/release/examples/callgen
for b in "$engine_bin" "$callgen_bin"; do
    [ -x "$b" ] || { echo "media_load.sh: $b not built" >&2; exit 2; }
done

# ---- limits -------------------------------------------------------------------------------
need=$((CONCURRENT + CONCURRENT / 16 + 256))
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
have=$(ulimit -n)
if [ "$have" != unlimited ] && [ "$have" -lt "$need" ]; then
    echo "media_load.sh: open-file limit is $have, need ≥ $need for $CONCURRENT calls" \
         "(run as a user allowed to raise it: ulimit -n 65536)" >&2
    exit 2
fi

# ---- engine -------------------------------------------------------------------------------
tmp=$(mktemp -d /tmp/media_load.XXXXXX)
engine_pid=
callgen_pid=
cleanup() {
    for p in $callgen_pid $engine_pid; do
        if kill -0 "$p" 2>/dev/null; then
            kill "$p" 2>/dev/null || true
            for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$p" 2>/dev/null || break; sleep 0.3; done
            kill -9 "$p" 2>/dev/null || true
        fi
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

records=false
[ "$RECORDS" = 1 ] && records=true
cat > "$tmp/engine.yaml" <<EOF
sip:
  listen: 127.0.0.1:$SIP_PORT
http:
  listen: 127.0.0.1:$HTTP_PORT
media:
  rtp_ports: $RTP_PORTS
  bind: 127.0.0.1
flows_dir: $repo/flows
prompts_dir: $repo/prompts
data_dir: $tmp
call_records_file: $records
limits:
  max_calls: $((CONCURRENT * 2 + 100))
EOF

if curl -s -m 1 -o /dev/null "http://127.0.0.1:$HTTP_PORT/" 2>/dev/null ||
   (exec 3<>"/dev/tcp/127.0.0.1/$SIP_PORT") 2>/dev/null; then
    echo "media_load.sh: something already listens on 127.0.0.1:$SIP_PORT or :$HTTP_PORT" \
         "(another engine?); set SIP_PORT/HTTP_PORT" >&2
    exit 2
fi
"$engine_bin" --config "$tmp/engine.yaml" --sip "127.0.0.1:$SIP_PORT" \
    --http "127.0.0.1:$HTTP_PORT" --rtp-ports "$RTP_PORTS" > "$tmp/engine.log" 2>&1 &
engine_pid=$!
health() { curl -s -m 1 "http://127.0.0.1:$HTTP_PORT/api/health" 2>/dev/null || true; }
for _ in $(seq 1 50); do
    case "$(health)" in *'"status":"ok"'*) break ;; esac
    kill -0 "$engine_pid" 2>/dev/null || { cat "$tmp/engine.log" >&2; echo "media_load.sh: engine exited" >&2; exit 1; }
    sleep 0.2
done
case "$(health)" in *'"status":"ok"'*) ;; *) echo "media_load.sh: engine not healthy after 10 s" >&2; exit 1 ;; esac
kill -0 "$engine_pid" 2>/dev/null || { cat "$tmp/engine.log" >&2; echo "media_load.sh: engine exited" >&2; exit 1; }
log "engine pid $engine_pid on SIP 127.0.0.1:$SIP_PORT, RTP $RTP_PORTS; $(nproc) CPUs"

# ticks (utime+stime, clock ticks) and VmRSS (kB) of a pid
ticks() { awk '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " "); print f[12] + f[13] }' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
hz=$(getconf CLK_TCK 2>/dev/null || echo 100)
active() { health | sed -n 's/.*"active_calls":\([0-9]*\).*/\1/p'; }

# samples: epoch_s ticks rss_kb active_calls
sample() { printf '%s %s %s %s\n' "$(date +%s.%N)" "$(ticks "$engine_pid")" "$(rss_kb "$engine_pid")" "$(active)"; }

sleep 1
idle0=$(sample)
sleep 5
idle1=$(sample)

# ---- load ---------------------------------------------------------------------------------
ramp=$(awk -v c="$CALLS" -v r="$RATE" 'BEGIN { printf "%d", c / r + 0.999 }')
limit=$(awk -v c="$CALLS" -v r="$RATE" -v h="$HOLD" 'BEGIN { printf "%d", c / r + h + 60 }')
cmd=("$callgen_bin" --target "127.0.0.1:$SIP_PORT" --local 127.0.0.1 --calls "$CALLS"
     --rate "$RATE" --concurrent "$CONCURRENT" --hold "$HOLD" --rtp-base "$RTP_BASE"
     --duration-limit "$limit" --progress 5 --json $SEND_RTP)
log "running: ${cmd[*]}"
"${cmd[@]}" > "$tmp/callgen.json" 2> "$tmp/callgen.err" &
callgen_pid=$!
: > "$tmp/samples"
deadline=$(( $(date +%s) + limit + 15 ))
while kill -0 "$callgen_pid" 2>/dev/null; do
    sample >> "$tmp/samples"
    if [ "$(date +%s)" -gt "$deadline" ]; then
        log "callgen overran its own limit; killing it"
        kill "$callgen_pid" 2>/dev/null || true
        break
    fi
    sleep 1
done
cg_rc=0
wait "$callgen_pid" || cg_rc=$?
callgen_pid=
sleep 3
after=$(sample)
sleep 5
after2=$(sample)
cat "$tmp/callgen.err" >&2

# ---- report -------------------------------------------------------------------------------
# awk prints "J <json fragment>" and "H <human line>" lines.
report=$(awk -v hz="$hz" -v idle0="$idle0" -v idle1="$idle1" -v after="$after" \
    -v after2="$after2" -v calls="$CALLS" '
function cores(a, b,   x, y) { split(a, x, " "); split(b, y, " "); return (y[2] - x[2]) / hz / (y[1] - x[1]) }
{ t[NR] = $1; k[NR] = $2; r[NR] = $3; a[NR] = ($4 == "" ? 0 : $4); if (a[NR] > peak) peak = a[NR] }
END {
    split(idle1, i1, " "); split(after2, a2, " ")
    idle_rss = i1[3]; idle_cores = cores(idle0, idle1); after_cores = cores(after, after2)
    printf "H idle:     engine %.4f cores, RSS %d KiB\n", idle_cores, idle_rss
    # plateau: the longest run of samples with active_calls >= 98 % of the peak
    thr = peak * 0.98; best = 0; s = 0
    for (n = 1; n <= NR; n++) {
        if (peak > 0 && a[n] >= thr) { if (!s) s = n; if (n - s + 1 > best) { best = n - s + 1; bs = s; be = n } }
        else s = 0
    }
    run_cpu = (NR > 1) ? (k[NR] - k[1]) / hz : 0
    if (best >= 4) {
        # drop the first and last sample of the window: they straddle ramp-up and hang-ups
        ps = bs + 1; pe = be - 1
        pc = (k[pe] - k[ps]) / hz / (t[pe] - t[ps])
        rss_max = 0; act = 0; m = 0
        for (n = ps; n <= pe; n++) { if (r[n] > rss_max) rss_max = r[n]; act += a[n]; m++ }
        act = act / m
        printf "J \"plateau\":{\"seconds\":%.1f,\"active_calls\":%.0f,\"engine_cores\":%.4f,\"cores_per_1000_calls\":%.4f,\"rss_kb\":%d,\"rss_per_call_kb\":%.2f},\n", \
            t[pe] - t[ps], act, pc, pc / act * 1000, rss_max, (rss_max - idle_rss) / act
        printf "H plateau:  %.0f active calls for %.1f s: engine %.3f cores = %.4f cores per 1000 calls; RSS %d KiB = %.2f KiB per call over idle\n", \
            act, t[pe] - t[ps], pc, pc / act * 1000, rss_max, (rss_max - idle_rss) / act
    } else {
        printf "J \"plateau\":null,\n"
        printf "H plateau:  none found (fewer than 4 one-second samples near the peak of %d calls)\n", peak
    }
    printf "H after:    engine %.4f cores, RSS %d KiB, active_calls %s\n", after_cores, a2[3], (a2[4] == "" ? "?" : a2[4])
    printf "H run:      engine %.2f CPU-s in total = %.3f CPU-s per 1000 calls (setup, media and teardown); peak %d active\n", \
        run_cpu, run_cpu / calls * 1000, peak
    printf "J \"idle\":{\"engine_cores\":%.4f,\"rss_kb\":%d},\n", idle_cores, idle_rss
    printf "J \"after\":{\"engine_cores\":%.4f,\"rss_kb\":%d,\"active_calls\":%s},\n", after_cores, a2[3], (a2[4] == "" ? "null" : a2[4])
    printf "J \"run\":{\"engine_cpu_s\":%.2f,\"cpu_s_per_1000_calls\":%.3f,\"peak_active\":%d}\n", run_cpu, run_cpu / calls * 1000, peak
}' "$tmp/samples")

engine_json=$(printf '%s\n' "$report" | sed -n 's/^J //p' | tr -d '\n')
summary="{\"engine\":{$engine_json},\"callgen_exit\":$cg_rc,\"callgen\":$(cat "$tmp/callgen.json" 2>/dev/null || echo null)}"
[ -n "$JSON_OUT" ] && printf '%s\n' "$summary" > "$JSON_OUT"

echo "==== media_load: $CALLS calls, <= $CONCURRENT concurrent, $RATE/s, hold ${HOLD}s, ${SEND_RTP:-no caller RTP} ===="
printf '%s\n' "$report" | sed -n 's/^H //p'
echo "---- callgen (JSON) ----"
cat "$tmp/callgen.json" 2>/dev/null || true
warn=$(grep -cE ' (WARN|ERROR) ' "$tmp/engine.log" || true)
if [ "${warn:-0}" -gt 0 ]; then
    echo "---- engine warnings/errors: $warn (first 10) ----"
    grep -E ' (WARN|ERROR) ' "$tmp/engine.log" | head -10
fi
exit "$cg_rc"
