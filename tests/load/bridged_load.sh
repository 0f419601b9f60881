#!/usr/bin/env bash
# Bridged-call load test: callers (examples/callgen) ↔ phonetree ↔ agents (examples/agentgen)
# on loopback, RTP relayed both ways by the engine's media shards.
#
# Builds the release engine, callgen and agentgen, writes a temporary config with one queue
# (`support`: longest_idle, ring_timeout 10s, wrap_up WRAP, announce_every 0s) and AGENTS
# agents (users 5000.., generated passwords, auto_login), and a flow dir whose `queue` route
# goes straight into the queue (tests/data/flows-agents). Starts the engine, then agentgen,
# waits until agentgen reports every agent registered, then places CALLS calls at RATE/s with
# at most CONCURRENT up at once, each held HOLD s by the caller (callgen BYEs; the engine
# BYEs the agent). Callers and agents both send 20 ms RTP whose payload is one non-silence
# byte, so each side counts the packets that came from the other side through the bridge.
# Samples the engine's CPU (utime+stime from /proc/PID/stat) and RSS each second; the plateau
# is the longest run with the engine's active calls ≥ 98 % of the peak (as media_load.sh).
# Prints bridged calls, loss both ways, engine cores at the plateau, cores per 1,000 bridged
# calls, RSS per bridged call, then both generators' JSON.
#
# Usage: tests/load/bridged_load.sh [-c CONCURRENT] [-H HOLD_S] [-r RATE] [-n CALLS]
#                                   [-a AGENTS] [--codec PCMU|PCMA] [--wrap-up DUR]
#                                   [--no-build] [--json FILE]
#   defaults: -c 500 -H 30 -r 50 -n CONCURRENT -a CONCURRENT*1.05+10 --codec PCMU
#             --wrap-up 0s
# Environment: SIP_PORT (5064) HTTP_PORT (8094) RTP_PORTS (20000-39999) CALLER_RTP_BASE
#   (40000) AGENT_RTP_BASE (52000) RUST_LOG (engine default: warn) KEEP_LOGS (a directory:
#   the engine log, both generators' output and the samples are copied there at the end)
#   WAIT_IDLE (seconds to wait for a quiet host before starting, see below) AGENT_EXPIRES
#   (registration expiry agentgen asks for: 600; agents refresh at 80 % of what is granted)
#   STALL_AGENTGEN (AT:SECS, fault injection: SIGSTOP agentgen AT s into the calls for SECS s).
# Loopback only; bounded in time; kills what it started on exit. The generators run on the
# same cores as the engine.
set -euo pipefail

CONCURRENT=500
HOLD=30
RATE=50
CALLS=
AGENTS=
CODEC=PCMU
WRAP=0s
BUILD=1
JSON_OUT=
while [ $# -gt 0 ]; do
    case "$1" in
        -c) CONCURRENT=$2; shift 2 ;;
        -H) HOLD=$2; shift 2 ;;
        -r) RATE=$2; shift 2 ;;
        -n) CALLS=$2; shift 2 ;;
        -a) AGENTS=$2; shift 2 ;;
        --codec) CODEC=$2; shift 2 ;;
        --wrap-up) WRAP=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --json) JSON_OUT=$2; shift 2 ;;
        -h|--help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bridged_load.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
CALLS=${CALLS:-$CONCURRENT}
AGENTS=${AGENTS:-$((CONCURRENT + CONCURRENT / 20 + 10))}
SIP_PORT=${SIP_PORT:-5064}
HTTP_PORT=${HTTP_PORT:-8094}
RTP_PORTS=${RTP_PORTS:-20000-39999}
CALLER_RTP_BASE=${CALLER_RTP_BASE:-40000}
AGENT_RTP_BASE=${AGENT_RTP_BASE:-52000}
export RUST_LOG=${RUST_LOG:-warn}

repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
log() { printf '[bridged_load %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---- build --------------------------------------------------------------------------------
target_dir=${CARGO_TARGET_DIR:-$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')}
target_dir=${target_dir:-$repo/target}
if [ "$BUILD" = 1 ]; then
    log "building release engine, callgen and agentgen (waits if the target dir is locked)"
    cargo build --release --bin phonetree --example callgen --example agentgen >&2
fi
tmp=$(mktemp -d /tmp/bridged_load.XXXXXX)
# Copies: a shared target dir may be rebuilt from another checkout during the run.
for b in phonetree examples/callgen examples/agentgen; do
    [ -x "$target_dir/release/$b" ] || { echo "bridged_load.sh: $target_dir/release/$b not built" >&2; rm -rf "$tmp"; exit 2; }
    cp "$target_dir/release/$b" "$tmp/"
done
engine_bin=$tmp/phonetree
callgen_bin=$tmp/callgen
agentgen_bin=$tmp/agentgen

engine_pid=
callgen_pid=
agentgen_pid=
cleanup() {
    for p in $callgen_pid $agentgen_pid $engine_pid; do
        if kill -0 "$p" 2>/dev/null; then
            kill -CONT "$p" 2>/dev/null || true
            kill "$p" 2>/dev/null || true
            for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$p" 2>/dev/null || break; sleep 0.3; done
            kill -9 "$p" 2>/dev/null || true
        fi
    done
    if [ -n "${KEEP_LOGS:-}" ]; then
        mkdir -p "$KEEP_LOGS"
        cp "$tmp"/*.log "$tmp"/*.err "$tmp"/*.json "$tmp"/samples "$tmp"/engine.yaml "$KEEP_LOGS"/ 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- limits -------------------------------------------------------------------------------
# agentgen: 2 descriptors per agent; callgen: 1 per call; the engine: 2 RTP sockets per
# bridged call (caller leg + agent leg).
need=$((AGENTS * 2 + CONCURRENT * 3 + 512))
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
have=$(ulimit -n)
if [ "$have" != unlimited ] && [ "$have" -lt "$need" ]; then
    echo "bridged_load.sh: open-file limit is $have, need ≥ $need (ulimit -n 65536)" >&2
    exit 2
fi

# ---- config -------------------------------------------------------------------------------
mkdir -p "$tmp/flows" "$tmp/data"
cp tests/data/flows-agents/*.yaml "$tmp/flows/"
pwprefix="bl$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
{
    cat <<EOF
sip:
  listen: 127.0.0.1:$SIP_PORT
  auth_algorithms: [MD5]
http:
  listen: 127.0.0.1:$HTTP_PORT
media:
  rtp_ports: $RTP_PORTS
  bind: 127.0.0.1
flows_dir: $tmp/flows
prompts_dir: $repo/prompts
data_dir: $tmp/data
call_records_file: false
limits:
  max_calls: $((CONCURRENT * 4 + 100))
queues:
  support:
    strategy: longest_idle
    ring_timeout: 10s
    wrap_up: $WRAP
    announce_every: 0s
    max_wait: 10m
agents:
EOF
    for ((u = 5000; u < 5000 + AGENTS; u++)); do
        printf '  "%d":\n    password: %s%d\n    queues: {support: 0}\n    auto_login: true\n' \
            "$u" "$pwprefix" "$u"
    done
} > "$tmp/engine.yaml"

if curl -s -m 1 -o /dev/null "http://127.0.0.1:$HTTP_PORT/" 2>/dev/null; then
    echo "bridged_load.sh: something already listens on 127.0.0.1:$HTTP_PORT; set SIP_PORT/HTTP_PORT" >&2
    exit 2
fi

# ---- a quiet host -------------------------------------------------------------------------
# The generators share the cores with the engine; other jobs on the host on top make the
# numbers the host's. WAIT_IDLE=SECS waits up to SECS for 3 s in which the host's busy time
# is under 0.3 cores (the run starts anyway after that, and the report shows the others' share).
host_busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
if [ -n "${WAIT_IDLE:-}" ]; then
    until_t=$(( $(date +%s) + WAIT_IDLE ))
    while :; do
        b0=$(host_busy); sleep 3; b1=$(host_busy)
        busy=$(awk -v a="$b0" -v b="$b1" -v hz="$(getconf CLK_TCK 2>/dev/null || echo 100)" 'BEGIN { printf "%.2f", (b - a) / hz / 3 }')
        if awk -v b="$busy" 'BEGIN { exit !(b < 0.3) }'; then log "host busy $busy cores: starting"; break; fi
        if [ "$(date +%s)" -ge "$until_t" ]; then log "host still busy ($busy cores) after ${WAIT_IDLE}s: starting anyway"; break; fi
    done
fi

# ---- engine -------------------------------------------------------------------------------
"$engine_bin" --config "$tmp/engine.yaml" > "$tmp/engine.log" 2>&1 &
engine_pid=$!
health() { curl -s -m 1 "http://127.0.0.1:$HTTP_PORT/api/health" 2>/dev/null || true; }
for _ in $(seq 1 50); do
    case "$(health)" in *'"status":"ok"'*) break ;; esac
    kill -0 "$engine_pid" 2>/dev/null || { cat "$tmp/engine.log" >&2; echo "bridged_load.sh: engine exited" >&2; exit 1; }
    sleep 0.2
done
case "$(health)" in *'"status":"ok"'*) ;; *) cat "$tmp/engine.log" >&2; echo "bridged_load.sh: engine not healthy after 10 s" >&2; exit 1 ;; esac
log "engine pid $engine_pid on SIP 127.0.0.1:$SIP_PORT, $AGENTS agents configured; $(nproc) CPUs"

ticks() { awk '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " "); print f[12] + f[13] }' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
hz=$(getconf CLK_TCK 2>/dev/null || echo 100)
active() { health | sed -n 's/.*"active_calls":\([0-9]*\).*/\1/p'; }
# Busy ticks of the whole host (user nice system irq softirq steal): other processes on the
# same cores show up as host − engine − generators.
host_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
# samples: epoch_s engine_ticks rss_kb active_calls callgen_ticks agentgen_ticks host_ticks
gen_ticks() { if [ -n "$1" ] && [ -r "/proc/$1/stat" ]; then ticks "$1"; else echo 0; fi; }
sample() {
    printf '%s %s %s %s %s %s %s\n' "$(date +%s.%N)" "$(ticks "$engine_pid")" "$(rss_kb "$engine_pid")" \
        "$(active)" "$(gen_ticks "$callgen_pid")" "$(gen_ticks "$agentgen_pid")" "$(host_ticks)"
}

# ---- agents -------------------------------------------------------------------------------
run_limit=$(awk -v c="$CALLS" -v r="$RATE" -v h="$HOLD" 'BEGIN { printf "%d", c / r + h + 60 }')
reg_rate=200
agentgen_cmd=("$agentgen_bin" --target "127.0.0.1:$SIP_PORT" --local 127.0.0.1 --agents "$AGENTS"
    --agent-base-user 5000 --password-prefix "$pwprefix" --codec "$CODEC" --reg-rate "$reg_rate"
    --expires "${AGENT_EXPIRES:-600}" --rtp-base "$AGENT_RTP_BASE" --stop-file "$tmp/stop" --progress 5
    --duration $((run_limit + AGENTS / reg_rate + 120)))
log "running: ${agentgen_cmd[*]}"
"${agentgen_cmd[@]}" > "$tmp/agentgen.json" 2> "$tmp/agentgen.err" &
agentgen_pid=$!
reg_deadline=$(( $(date +%s) + AGENTS / reg_rate + 40 ))
until grep -q 'agents registered' "$tmp/agentgen.err" 2>/dev/null; do
    if ! kill -0 "$agentgen_pid" 2>/dev/null || [ "$(date +%s)" -gt "$reg_deadline" ]; then
        cat "$tmp/agentgen.err" >&2
        echo "bridged_load.sh: agents did not all register" >&2
        exit 1
    fi
    sleep 0.5
done
log "$(grep 'agents registered' "$tmp/agentgen.err")"
# The ACD learns of each registration through the agents task: give it a moment.
sleep 3
idle0=$(sample)
sleep 5
idle1=$(sample)

# UDP datagrams the kernel dropped on a process's sockets (receive buffer full), from the
# `drops` column of /proc/net/udp for the socket inodes the process holds. Tells loss in the
# engine's sockets from loss in a starved generator's.
udp_drops() {
    [ -d "/proc/$1/fd" ] || { echo 0; return; }
    find "/proc/$1/fd" -lname 'socket:*' -printf '%l\n' 2>/dev/null | sed 's/socket:\[\(.*\)\]/\1/' > "$tmp/inodes.$1"
    awk 'NR == FNR { want[$1]; next } FNR > 1 && ($10 in want) { d += $NF } END { print d + 0 }' \
        "$tmp/inodes.$1" /proc/net/udp
}

# ---- callers ------------------------------------------------------------------------------
callgen_cmd=("$callgen_bin" --target "127.0.0.1:$SIP_PORT" --local 127.0.0.1 --number queue
    --calls "$CALLS" --rate "$RATE" --concurrent "$CONCURRENT" --hold "$HOLD"
    --rtp-base "$CALLER_RTP_BASE" --send-rtp --rtp-fill 2A --duration-limit "$run_limit"
    --progress 5 --json)
log "running: ${callgen_cmd[*]}"
"${callgen_cmd[@]}" > "$tmp/callgen.json" 2> "$tmp/callgen.err" &
callgen_pid=$!
: > "$tmp/samples"
deadline=$(( $(date +%s) + run_limit + 15 ))
# Socket drops every 5 s, keeping each process's highest sum: the engine's sockets close
# with their calls (and their counters with them), the generators' live until they exit.
d_eng=0 d_cg=0 d_ag=0
next_drops=$(( $(date +%s) + 5 ))
max() { if [ "$1" -gt "$2" ]; then echo "$1"; else echo "$2"; fi; }
# Fault injection: STALL_AGENTGEN=AT:SECS stops agentgen (SIGSTOP) AT s after the first call
# for SECS s, like a starved phone: its INVITEs, CANCELs and retransmissions queue up.
stall_at= stall_end=
if [ -n "${STALL_AGENTGEN:-}" ]; then
    stall_at=$(( $(date +%s) + ${STALL_AGENTGEN%%:*} ))
    stall_end=$(( stall_at + ${STALL_AGENTGEN##*:} ))
fi
while kill -0 "$callgen_pid" 2>/dev/null; do
    sample >> "$tmp/samples"
    if [ -n "$stall_at" ] && [ "$(date +%s)" -ge "$stall_at" ]; then
        log "stopping agentgen for ${STALL_AGENTGEN##*:} s"; kill -STOP "$agentgen_pid"; stall_at=
    fi
    if [ -n "$stall_end" ] && [ -z "$stall_at" ] && [ "$(date +%s)" -ge "$stall_end" ]; then
        log "continuing agentgen"; kill -CONT "$agentgen_pid"; stall_end=
    fi
    if [ "$(date +%s)" -ge "$next_drops" ]; then
        d_eng=$(max "$d_eng" "$(udp_drops "$engine_pid")")
        d_cg=$(max "$d_cg" "$(udp_drops "$callgen_pid")")
        d_ag=$(max "$d_ag" "$(udp_drops "$agentgen_pid")")
        next_drops=$(( $(date +%s) + 5 ))
    fi
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
d_ag=$(max "$d_ag" "$(udp_drops "$agentgen_pid")")
touch "$tmp/stop"
ag_rc=0
wait "$agentgen_pid" || ag_rc=$?
agentgen_pid=
sleep 2
after2=$(sample)

# ---- report -------------------------------------------------------------------------------
report=$(awk -v hz="$hz" -v idle0="$idle0" -v idle1="$idle1" -v after="$after" -v after2="$after2" '
function cores(a, b,   x, y) { split(a, x, " "); split(b, y, " "); return (y[2] - x[2]) / hz / (y[1] - x[1]) }
{ t[NR] = $1; k[NR] = $2; r[NR] = $3; a[NR] = ($4 == "" ? 0 : $4); cg[NR] = $5; ag[NR] = $6; ho[NR] = $7; if (a[NR] > peak) peak = a[NR] }
END {
    split(idle1, i1, " "); split(after2, a2, " ")
    idle_rss = i1[3]
    printf "H idle (agents registered): engine %.4f cores, RSS %d KiB\n", cores(idle0, idle1), idle_rss
    thr = peak * 0.98; best = 0; s = 0
    for (n = 1; n <= NR; n++) {
        if (peak > 0 && a[n] >= thr) { if (!s) s = n; if (n - s + 1 > best) { best = n - s + 1; bs = s; be = n } }
        else s = 0
    }
    if (best >= 4) {
        ps = bs + 1; pe = be - 1; dt = t[pe] - t[ps]
        pc = (k[pe] - k[ps]) / hz / dt
        cgc = (cg[pe] - cg[ps]) / hz / dt; agc = (ag[pe] - ag[ps]) / hz / dt
        other = (ho[pe] - ho[ps]) / hz / dt - pc - cgc - agc
        rss_max = 0; act = 0; m = 0
        for (n = ps; n <= pe; n++) { if (r[n] > rss_max) rss_max = r[n]; act += a[n]; m++ }
        act = act / m
        printf "J \"plateau\":{\"seconds\":%.1f,\"engine_active_calls\":%.0f,\"engine_cores\":%.4f,\"callgen_cores\":%.4f,\"agentgen_cores\":%.4f,\"other_processes_cores\":%.4f,\"rss_kb\":%d,\"idle_rss_kb\":%d},\n", dt, act, pc, cgc, agc, other, rss_max, idle_rss
        printf "P %.1f %.0f %.4f %.4f %.4f %.4f %d %d\n", dt, act, pc, cgc, agc, other, rss_max, idle_rss
    } else {
        printf "J \"plateau\":null,\n"
        printf "H plateau:  none found (fewer than 4 one-second samples near the peak of %d calls)\n", peak
    }
    printf "H after:    engine %.4f cores, RSS %d KiB, active_calls %s\n", cores(after, after2), a2[3], (a2[4] == "" ? "?" : a2[4])
    printf "J \"peak_active_calls\":%d\n", peak
}' "$tmp/samples")

jnum() { # jnum FILE KEY...: the first number after "KEY": in FILE, following the keys in order
    python3 - "$@" <<'PY' 2>/dev/null || echo null
import json, sys
d = json.load(open(sys.argv[1]))
for k in sys.argv[2:]:
    d = d[k]
print(d)
PY
}

echo "==== bridged_load: $CALLS calls, <= $CONCURRENT concurrent, $RATE/s, hold ${HOLD}s, $AGENTS agents on $CODEC, wrap_up $WRAP ===="
printf '%s\n' "$report" | sed -n 's/^H //p'
cj=$tmp/callgen.json aj=$tmp/agentgen.json
if [ -s "$cj" ] && [ -s "$aj" ]; then
    answered=$(jnum "$cj" calls answered); failed=$(jnum "$cj" calls failed)
    bridged_c=$(jnum "$cj" rtp_rx calls_with_relayed)
    acked=$(jnum "$aj" calls acked); no_rel=$(jnum "$aj" calls without_relayed_audio)
    echo "calls:      callers answered $answered/$CALLS (failed $failed); agents answered $acked;" \
         "bridged (relayed audio seen) callers $bridged_c, agents $((acked - no_rel))"
    echo "loss agent→caller: $(jnum "$cj" rtp_rx lost) of $(( $(jnum "$cj" rtp_rx packets) + $(jnum "$cj" rtp_rx lost) )) packets" \
         "(relayed $(jnum "$cj" rtp_rx relayed)); pacing |Δ−20ms| p50/p99/max" \
         "$(jnum "$cj" rtp_rx interarrival_dev_ms p50)/$(jnum "$cj" rtp_rx interarrival_dev_ms p99)/$(jnum "$cj" rtp_rx interarrival_dev_ms max) ms," \
         "within 2 ms $(jnum "$cj" rtp_rx interarrival_dev_ms within_2ms_pct) %"
    echo "loss caller→agent: $(jnum "$aj" rtp_rx lost) of $(( $(jnum "$aj" rtp_rx packets) + $(jnum "$aj" rtp_rx lost) )) packets" \
         "(relayed $(jnum "$aj" rtp_rx relayed), wrong PT $(jnum "$aj" rtp_rx wrong_pt)); pacing p50/p99/max" \
         "$(jnum "$aj" rtp_rx interarrival_dev_ms p50)/$(jnum "$aj" rtp_rx interarrival_dev_ms p99)/$(jnum "$aj" rtp_rx interarrival_dev_ms max) ms," \
         "within 2 ms $(jnum "$aj" rtp_rx interarrival_dev_ms within_2ms_pct) %"
    echo "kernel UDP drops (receive buffer full; highest of 5 s samples): engine $d_eng, callgen $d_cg, agentgen $d_ag"
    echo "generators: callgen stalls >10ms $(jnum "$cj" callgen_stalls over_10ms), agentgen stalls >10ms $(jnum "$aj" agentgen_stalls over_10ms)"
fi
plat=$(printf '%s\n' "$report" | sed -n 's/^P //p')
if [ -n "$plat" ]; then
    read -r dt act pc cgc agc other rss_max idle_rss <<< "$plat"
    # The engine's active_calls counts the caller's leg; each bridged call also has an agent leg.
    awk -v dt="$dt" -v act="$act" -v pc="$pc" -v cgc="$cgc" -v agc="$agc" -v other="$other" -v rss="$rss_max" -v idle="$idle_rss" 'BEGIN {
        printf "plateau:    %.0f calls up for %.1f s: engine %.3f cores = %.3f cores per 1,000 bridged calls; RSS %d KiB = %.1f KiB per bridged call over idle\n", act, dt, pc, pc / act * 1000, rss, (rss - idle) / act
        printf "            same cores: callgen %.3f + agentgen %.3f cores; other processes on the host %.3f cores\n", cgc, agc, other
    }'
fi
summary="{\"engine\":{$(printf '%s\n' "$report" | sed -n 's/^J //p' | tr -d '\n')},\"callgen_exit\":$cg_rc,\"agentgen_exit\":$ag_rc,\"callgen\":$(cat "$cj" 2>/dev/null || echo null),\"agentgen\":$(cat "$aj" 2>/dev/null || echo null)}"
[ -n "$JSON_OUT" ] && printf '%s\n' "$summary" > "$JSON_OUT"
warn=$(grep -cE '(WARN|ERROR)' "$tmp/engine.log" || true)
if [ "${warn:-0}" -gt 0 ]; then
    echo "---- engine warnings/errors: $warn (first 10) ----"
    grep -E '(WARN|ERROR)' "$tmp/engine.log" | head -10
fi
echo "---- agentgen (last progress) ----"
tail -2 "$tmp/agentgen.err"
echo "---- callgen (stderr tail) ----"
tail -3 "$tmp/callgen.err"
[ "$cg_rc" = 0 ] && [ "$ag_rc" = 0 ]
