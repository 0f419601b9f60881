//! callgen: a lean SIP call generator and RTP sink for load-testing phonetree's media path.
//!
//! sipp reports no RTP loss or jitter and its per-call media threads are too heavy to drive
//! thousands of media calls on the 2 cores it shares with the engine
//! (`performance-anchors.md`). callgen is one thread on mio: one UDP socket for SIP, one
//! non-blocking UDP socket per concurrent call for RTP, a heap of signalling deadlines and a
//! 1 ms timer wheel for the 20 ms RTP sends. Buffers are reused: no allocation per packet.
//! It uses std + mio only, not the phonetree library, so it is independent of the engine.
//!
//! Per call: INVITE (SDP: PCMU + telephone-event/8000 on PT 101) retransmitted on Timer A
//! until a response (Timer B 32 s), ACK for the 200 (re-ACK on each retransmitted 200),
//! optional 20 ms PCMU silence from the call's RTP socket (`--send-rtp`), BYE after `--hold`
//! retransmitted on Timer E until a final response (Timer F 32 s); a BYE from the engine is
//! answered 200 and ends the call. Every received RTP packet is checked: sequence (loss,
//! duplicates, reordering), SSRC, marker, inter-arrival deviation from the RTP timestamp step
//! (|Δarrival − Δts/8 ms|, i.e. |Δ − 20 ms| for consecutive 20 ms frames) and per-call clock
//! drift ((last_ts − first_ts)/8000 s − (last_arrival − first_arrival)).
//!
//! Usage (see `--help`):
//!   ulimit -n 65536   # one descriptor per concurrent call (+ spares)
//!   cargo run --release --example callgen -- --target 127.0.0.1:5060 --calls 1000 \
//!       --rate 50 --concurrent 1000 --hold 20 --send-rtp --json
//!
//! Arrival times are taken in user space when callgen reads the packet, so the jitter
//! figures include callgen's own scheduling delay (it is one thread sharing the cores with
//! the engine): they are an upper bound on the engine's pacing error. `callgen_stalls`
//! counts loop iterations that woke or ran > 10 ms late; when it is not 0, the tail of the
//! jitter and drift figures belongs to callgen (or the host), not to the engine. With no
//! stalls, the figures agreed with tcpdump's kernel timestamps of the engine's packets
//! (p50/p90/p99 within ~0.5 ms). callgen's own sends are on a 1 ms grid (±1 ms).
//!
//! Loss is counted from sequence numbers (RFC 3550 expected − received); a sender that
//! skips frames after a stall keeps its sequence contiguous and jumps the timestamp, which
//! is reported separately as `ts_skipped_frames`.
//!
//! Cost: ~0.25–0.3 core per 1,000 calls with `--send-rtp` (~0.08 without), nearly all of it
//! kernel UDP send/receive; callgen's own code is ~4 % of its profile.

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt::Write as _;
use std::io::{ErrorKind, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const SIP_TOKEN: Token = Token(usize::MAX - 1);
const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
const TIMER_B: Duration = Duration::from_secs(32); // 64 × T1, also Timer F
const FRAME: Duration = Duration::from_millis(20);
const FRAME_US: i64 = 20_000;
const WHEEL: usize = 32; // 1 ms buckets; > 20 ms so one lap holds every pending send
const RTP_LEN: usize = 12 + 160;

const USAGE: &str = "\
callgen: SIP call generator + RTP sink for phonetree load tests (one thread, mio)

USAGE: callgen [OPTIONS]
  --target ADDR          engine SIP address             [127.0.0.1:5060]
  --local IP             local IP for SIP and RTP       [127.0.0.1]
  --number USER          Request-URI user               [ivr]
  --calls N              total calls to place           [100]
  --rate R               new calls per second (float)   [10]
  --concurrent C         cap on simultaneous calls      [min(calls, 1000)]
  --hold SECS            ACK -> our BYE (float)         [5]
  --send-rtp             send 20 ms PCMU silence per call, like a phone
  --rtp-fill HEX         payload byte of those packets [FF = silence]; a non-silence
                         byte lets the far end of a bridge tell our audio from prompts
  --rtp-base PORT        first RTP port (even); uses base+2*i, skipping ports in use [40000]
  --duration-limit SECS  hard stop; default calls/rate + hold + 45
  --progress SECS        progress line on stderr every SECS, 0 = off [5]
  --json                 print one JSON object (on stdout) instead of the human summary
  -h, --help

One UDP socket per concurrent call (+ ~6 % spares) is bound up front. Raise the
descriptor limit first for thousands of calls:   ulimit -n 65536
Exit status: 0 if every call was answered and ended cleanly, 1 otherwise, 2 on usage or
setup errors.
";

// ---------------------------------------------------------------------------------------
// Configuration

struct Config {
    target: SocketAddr,
    local: IpAddr,
    number: String,
    calls: u64,
    rate: f64,
    concurrent: usize,
    hold: Duration,
    send_rtp: bool,
    rtp_fill: u8,
    rtp_base: u16,
    duration_limit: Duration,
    progress: Duration,
    json: bool,
}

fn parse_args() -> Result<Config, String> {
    let mut target: SocketAddr = "127.0.0.1:5060".parse().unwrap();
    let mut local: IpAddr = "127.0.0.1".parse().unwrap();
    let mut number = "ivr".to_string();
    let mut calls: u64 = 100;
    let mut rate: f64 = 10.0;
    let mut concurrent: Option<usize> = None;
    let mut hold = 5.0f64;
    let mut send_rtp = false;
    let mut rtp_fill: u8 = 0xFF;
    let mut rtp_base: u16 = 40000;
    let mut limit: Option<f64> = None;
    let mut progress = 5.0f64;
    let mut json = false;

    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |n: &str| -> Result<String, String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => args.next().ok_or_else(|| format!("{n} needs a value")),
            }
        };
        fn num<T: std::str::FromStr>(n: &str, v: String) -> Result<T, String> {
            v.parse()
                .map_err(|_| format!("{n}: not a valid value: {v:?}"))
        }
        match name.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            "--target" => target = num(&name, value(&name)?)?,
            "--local" => local = num(&name, value(&name)?)?,
            "--number" => number = value(&name)?,
            "--calls" => calls = num(&name, value(&name)?)?,
            "--rate" => rate = num(&name, value(&name)?)?,
            "--concurrent" => concurrent = Some(num(&name, value(&name)?)?),
            "--hold" => hold = num(&name, value(&name)?)?,
            "--send-rtp" => send_rtp = true,
            "--rtp-fill" => {
                let v = value(&name)?;
                rtp_fill = u8::from_str_radix(v.trim_start_matches("0x"), 16)
                    .map_err(|_| format!("--rtp-fill: a byte in hex, not {v:?}"))?;
            }
            "--rtp-base" => rtp_base = num(&name, value(&name)?)?,
            "--duration-limit" => limit = Some(num(&name, value(&name)?)?),
            "--progress" => progress = num(&name, value(&name)?)?,
            "--json" => json = true,
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    if !(rate > 0.0 && rate.is_finite()) {
        return Err("--rate must be > 0".into());
    }
    if !(hold >= 0.0 && hold.is_finite()) {
        return Err("--hold must be >= 0".into());
    }
    if calls == 0 {
        return Err("--calls must be > 0".into());
    }
    let concurrent = concurrent.unwrap_or(calls.min(1000) as usize).max(1);
    let limit = limit.unwrap_or(calls as f64 / rate + hold + 45.0);
    if !(limit > 0.0 && limit.is_finite()) {
        return Err("--duration-limit must be > 0".into());
    }
    if number.is_empty() || number.bytes().any(|b| b <= b' ' || b == b'@' || b == b'>') {
        return Err("--number: not a valid SIP user".into());
    }
    Ok(Config {
        target,
        local,
        number,
        calls,
        rate,
        concurrent,
        hold: Duration::from_secs_f64(hold),
        send_rtp,
        rtp_fill,
        rtp_base: rtp_base & !1,
        duration_limit: Duration::from_secs_f64(limit),
        progress: Duration::from_secs_f64(progress.max(0.0)),
        json,
    })
}

// ---------------------------------------------------------------------------------------
// SIP parsing, RTP header and histograms: shared with the other generator.

#[path = "common/wire.rs"]
#[allow(dead_code)] // each generator uses its own part of it
mod wire;
use wire::*;

/// True if a To/From value carries a tag parameter.
fn has_tag(v: &[u8]) -> bool {
    let after = match v.iter().rposition(|&b| b == b'>') {
        Some(i) => &v[i..],
        None => v,
    };
    after.windows(5).any(|w| w.eq_ignore_ascii_case(b";tag="))
}

/// RTP destination and whether telephone-event was accepted, from an SDP answer.
fn parse_sdp(body: &[u8]) -> (Option<SocketAddr>, bool) {
    let mut ip: Option<IpAddr> = None;
    let mut port: Option<u16> = None;
    let mut te = false;
    let mut rest = body;
    while !rest.is_empty() {
        let (line, after) = next_line(rest);
        rest = after;
        let line = trim(line);
        if let Some(c) = line.strip_prefix(b"c=") {
            // c=IN IP4 127.0.0.1
            if let Some(addr) = c.rsplit(|&b| b == b' ').next() {
                let addr = addr.split(|&b| b == b'/').next().unwrap_or(addr);
                if let Some(a) = std::str::from_utf8(addr).ok().and_then(|s| s.parse().ok()) {
                    ip = Some(a);
                }
            }
        } else if let Some(mline) = line.strip_prefix(b"m=audio ") {
            if port.is_none() {
                let p = mline.split(|&b| b == b' ').next().unwrap_or(b"");
                port = parse_u64(p).and_then(|p| u16::try_from(p).ok());
            }
        } else if line.starts_with(b"a=rtpmap:") && find(line, b"telephone-event").is_some() {
            te = true;
        }
    }
    match (ip, port) {
        (Some(ip), Some(port)) if port != 0 && !ip.is_unspecified() => {
            (Some(SocketAddr::new(ip, port)), te)
        }
        _ => (None, te),
    }
}

// ---------------------------------------------------------------------------------------
// Per-call state

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum St {
    Free,
    Inviting,
    Proceeding,
    Talking,
    Byeing,
}

/// One received RTP stream (one SSRC) of one call.
#[derive(Default, Clone, Copy)]
struct RxStream {
    packets: u64,
    dups: u64,
    reordered: u64,
    markers: u64,
    te_packets: u64,
    /// Payload one repeated non-silence byte: a load generator's audio relayed to us by a
    /// bridge (examples/agentgen.rs `--fill`), not a prompt.
    relayed: u64,
    ts_step_odd: u64,
    /// 20 ms frames the sender skipped: timestamp jumps between consecutive sequence
    /// numbers (a sender that catches up after a stall by skipping, not by bursting).
    ts_skipped_frames: u64,
    ssrc: u32,
    base_ext: i64,
    max_ext: i64,
    /// Bit k set: max_ext − k was received.
    seen: u64,
    first_arrival: Option<Instant>,
    first_ts: u32,
    /// Arrival and timestamp of the highest sequence number so far.
    last_arrival: Option<Instant>,
    last_ts: u32,
}

impl RxStream {
    fn lost(&self) -> u64 {
        if self.packets == 0 {
            return 0;
        }
        let expected = (self.max_ext - self.base_ext + 1).max(0) as u64;
        expected.saturating_sub(self.packets - self.dups)
    }
    /// (last_ts − first_ts)/8000 s − (last_arrival − first_arrival), µs.
    fn drift_us(&self) -> Option<i64> {
        let (f, l) = (self.first_arrival?, self.last_arrival?);
        if self.packets < 2 {
            return None;
        }
        let media_us = self.last_ts.wrapping_sub(self.first_ts) as i32 as i64 * 125;
        let wall_us = l.duration_since(f).as_micros() as i64;
        Some(media_us - wall_us)
    }
}

struct Slot {
    sock: UdpSocket,
    port: u16,
    epoch: u32,
    st: St,
    /// Only the heap entry carrying this value is live (lazy deletion).
    timer: u32,
    invite_at: Instant,
    rt: Duration,
    ack_at: Option<Instant>,
    bye_at: Instant,
    to_hdr: Vec<u8>,
    remote_uri: Vec<u8>,
    remote_rtp: Option<SocketAddr>,
    rx: RxStream,
    got_rtp: bool,
    tx_on: bool,
    tx_start: Instant,
    tx_n: u64,
    tx_seq: u16,
    tx_ts0: u32,
    tx_ssrc: u32,
}

// ---------------------------------------------------------------------------------------
// Totals

#[derive(Default)]
struct Counters {
    attempted: u64,
    answered: u64,
    failed_non2xx: u64,
    failed_timeout: u64,
    ended_by_us: u64,
    ended_by_engine: u64,
    engine_bye_during_setup: u64,
    bye_timeout: u64,
    bye_error: u64,
    aborted_at_limit: u64,
    answered_no_rtp: u64,
    answer_no_sdp: u64,
    answer_no_te: u64,
    ok_without_to_tag: u64,
    provisional: u64,
    invite_retrans: u64,
    bye_retrans: u64,
    invite_ok_retrans_rx: u64,
    bye_ok_dup_rx: u64,
    final_retrans_rx: u64,
    sip_rx: u64,
    sip_tx: u64,
    sip_send_errors: u64,
    sip_unparsable: u64,
    sip_stray: u64,
    other_requests: u64,
    status_counts: Vec<(u16, u64)>,
    // RTP received
    rtp_rx: u64,
    rtp_lost: u64,
    rtp_dups: u64,
    rtp_reordered: u64,
    rtp_markers: u64,
    rtp_te: u64,
    rtp_relayed: u64,
    calls_with_relayed: u64,
    rtp_ts_step_odd: u64,
    rtp_ts_skipped_frames: u64,
    rtp_ssrc_changes: u64,
    rtp_bad: u64,
    rtp_wrong_source: u64,
    /// The first few unexpected sources, for the report.
    wrong_sources: Vec<(SocketAddr, SocketAddr)>,
    rtp_stray: u64,
    rtp_calls_with_loss: u64,
    drift_max_us: i64,
    drift_calls: u64,
    drift_over_20ms: u64,
    // RTP sent
    rtp_tx: u64,
    rtp_tx_errors: u64,
    rtp_tx_late_skips: u64,
    // callgen's own health: loop iterations that woke > 10 ms after their deadline or took
    // > 10 ms to process (the host or callgen itself was too busy: the RTP timing figures
    // of that moment are callgen's, not the engine's).
    stalls_over_10ms: u64,
    stall_max_us: u64,
}

impl Counters {
    fn status(&mut self, code: u16) {
        match self.status_counts.iter_mut().find(|(c, _)| *c == code) {
            Some((_, n)) => *n += 1,
            None => self.status_counts.push((code, 1)),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The generator

struct Gen {
    cfg: Config,
    run: u32,
    start: Instant,
    poll: Poll,
    sip: UdpSocket,
    sip_local: SocketAddr,
    slots: Vec<Slot>,
    free: VecDeque<u32>,
    active: usize,
    heap: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    wheel: Vec<Vec<(u32, u32)>>,
    wheel_scratch: Vec<(u32, u32)>,
    wheel_cursor: u64,
    wheel_len: usize,
    out: Vec<u8>,
    body: Vec<u8>,
    rx_buf: Vec<u8>,
    rtp_out: [u8; RTP_LEN],
    rng: u64,
    c: Counters,
    invite_to_200: Hist,
    invite_to_rtp: Hist,
    ack_to_rtp: Hist,
    interarrival: Hist,
    stopping: bool,
}

impl Gen {
    fn new(cfg: Config) -> Result<Gen, String> {
        let poll = Poll::new().map_err(|e| format!("epoll: {e}"))?;
        let mut sip = UdpSocket::bind(SocketAddr::new(cfg.local, 0))
            .map_err(|e| format!("binding the SIP socket on {}: {e}", cfg.local))?;
        let sip_local = sip.local_addr().map_err(|e| e.to_string())?;
        poll.registry()
            .register(&mut sip, SIP_TOKEN, Interest::READABLE)
            .map_err(|e| e.to_string())?;

        let want = (cfg.concurrent as u64).min(cfg.calls) as usize;
        let spares = (want / 16).max(8);
        let total = want + spares;
        let mut slots = Vec::with_capacity(total);
        let mut port = cfg.rtp_base as u32;
        let now = Instant::now();
        while slots.len() < total {
            if port > 65534 {
                if slots.len() >= want {
                    break;
                }
                return Err(format!(
                    "ran out of RTP ports above --rtp-base {} after {} sockets (need {want}); \
                     lower --rtp-base or --concurrent",
                    cfg.rtp_base,
                    slots.len()
                ));
            }
            let addr = SocketAddr::new(cfg.local, port as u16);
            port += 2;
            let mut sock = match UdpSocket::bind(addr) {
                Ok(s) => s,
                Err(e) if e.kind() == ErrorKind::AddrInUse => continue,
                Err(e) if matches!(e.raw_os_error(), Some(23) | Some(24)) => {
                    if slots.len() >= want {
                        break; // spares are optional
                    }
                    return Err(format!(
                        "out of file descriptors after binding {} RTP sockets ({e}); \
                         callgen needs one per concurrent call: run `ulimit -n 65536` \
                         (or at least {}) first",
                        slots.len(),
                        want + 64
                    ));
                }
                Err(e) => return Err(format!("binding RTP socket {addr}: {e}")),
            };
            let i = slots.len();
            poll.registry()
                .register(&mut sock, Token(i), Interest::READABLE)
                .map_err(|e| format!("registering RTP socket: {e}"))?;
            slots.push(Slot {
                sock,
                port: addr.port(),
                epoch: 0,
                st: St::Free,
                timer: 0,
                invite_at: now,
                rt: T1,
                ack_at: None,
                bye_at: now,
                to_hdr: Vec::with_capacity(128),
                remote_uri: Vec::with_capacity(64),
                remote_rtp: None,
                rx: RxStream::default(),
                got_rtp: false,
                tx_on: false,
                tx_start: now,
                tx_n: 0,
                tx_seq: 0,
                tx_ts0: 0,
                tx_ssrc: 0,
            });
        }
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            ^ ((std::process::id() as u64) << 32);
        let mut rtp_out = [cfg.rtp_fill; RTP_LEN]; // 0xFF: PCMU silence
        rtp_header(&mut rtp_out, false, 0, 0, 0, 0);
        let n = slots.len();
        let mut g = Gen {
            run: 0,
            start: Instant::now(),
            poll,
            sip,
            sip_local,
            free: (0..n as u32).collect(),
            slots,
            active: 0,
            heap: BinaryHeap::with_capacity(n * 2),
            wheel: (0..WHEEL).map(|_| Vec::with_capacity(n / 16 + 4)).collect(),
            wheel_scratch: Vec::with_capacity(n / 16 + 4),
            wheel_cursor: 0,
            wheel_len: 0,
            out: Vec::with_capacity(2048),
            body: Vec::with_capacity(512),
            rx_buf: vec![0u8; 65536],
            rtp_out,
            rng: seed | 1,
            c: Counters::default(),
            invite_to_200: Hist::log(),
            invite_to_rtp: Hist::log(),
            ack_to_rtp: Hist::log(),
            interarrival: Hist::linear(100, 100_000),
            stopping: false,
            cfg,
        };
        g.run = (g.random() & 0xFFFF_FFFF) as u32;
        Ok(g)
    }

    fn random(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn ms_since_start(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.start).as_millis() as u64
    }

    // ---- timers ----

    fn set_timer(&mut self, i: u32, at: Instant) {
        let s = &mut self.slots[i as usize];
        s.timer = s.timer.wrapping_add(1);
        self.heap.push(Reverse((at, i, s.timer)));
    }

    fn wheel_add(&mut self, i: u32, epoch: u32, at: Instant) {
        let m = self.ms_since_start(at).max(self.wheel_cursor);
        self.wheel[(m as usize) % WHEEL].push((i, epoch));
        self.wheel_len += 1;
    }

    fn next_deadline(&self, now: Instant) -> Instant {
        let mut d = now + Duration::from_millis(250);
        if let Some(Reverse((at, _, _))) = self.heap.peek() {
            d = d.min(*at);
        }
        if self.wheel_len > 0 {
            d = d.min(self.start + Duration::from_millis(self.wheel_cursor));
        }
        d
    }

    // ---- SIP output ----

    fn send_sip(&mut self) {
        match self.sip.send_to(&self.out, self.cfg.target) {
            Ok(_) => self.c.sip_tx += 1,
            Err(_) => self.c.sip_send_errors += 1,
        }
    }

    fn send_sip_to(&mut self, to: SocketAddr) {
        match self.sip.send_to(&self.out, to) {
            Ok(_) => self.c.sip_tx += 1,
            Err(_) => self.c.sip_send_errors += 1,
        }
    }

    fn write_call_id(out: &mut Vec<u8>, run: u32, i: u32, epoch: u32, local: IpAddr) {
        let _ = write!(out, "cg{run:08x}-{i}-{epoch}@{local}");
    }

    fn write_from(&mut self, i: u32, epoch: u32) {
        let _ = write!(
            self.out,
            "From: <sip:callgen@{}>;tag=cgt{i}x{epoch}\r\n",
            self.sip_local
        );
    }

    fn build_invite(&mut self, i: u32) {
        let (epoch, port) = (self.slots[i as usize].epoch, self.slots[i as usize].port);
        let local = self.cfg.local;
        let ipv = if local.is_ipv4() { "IP4" } else { "IP6" };
        self.body.clear();
        let _ = write!(
            self.body,
            "v=0\r\no=callgen {i}{epoch} 1 IN {ipv} {local}\r\ns=callgen\r\nc=IN {ipv} {local}\r\n\
             t=0 0\r\nm=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
        );
        self.out.clear();
        let _ = write!(
            self.out,
            "INVITE sip:{num}@{t} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {me};branch=z9hG4bK{run:08x}i{i}x{epoch};rport\r\n\
             Max-Forwards: 70\r\n",
            num = self.cfg.number,
            t = self.cfg.target,
            me = self.sip_local,
            run = self.run,
        );
        self.write_from(i, epoch);
        let _ = write!(
            self.out,
            "To: <sip:{}@{}>\r\nCall-ID: ",
            self.cfg.number, self.cfg.target
        );
        Self::write_call_id(&mut self.out, self.run, i, epoch, local);
        let _ = write!(
            self.out,
            "\r\nCSeq: 1 INVITE\r\nContact: <sip:callgen@{me}>\r\n\
             Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, INFO\r\n\
             User-Agent: phonetree-callgen\r\nContent-Type: application/sdp\r\n\
             Content-Length: {len}\r\n\r\n",
            me = self.sip_local,
            len = self.body.len()
        );
        self.out.extend_from_slice(&self.body);
    }

    /// ACK for a 2xx (its own transaction, new branch) or, with `non2xx`, for a failure
    /// response (same branch as the INVITE, Request-URI of the INVITE). Built from the
    /// response itself so stale calls can be re-ACKed too.
    fn build_ack(&mut self, m: &Msg<'_>, non2xx: bool) {
        self.out.clear();
        // Empty: fall back to the INVITE's Request-URI.
        let uri: &[u8] = if non2xx { b"" } else { m.contact_uri };
        self.out.extend_from_slice(b"ACK ");
        if uri.is_empty() {
            let _ = write!(self.out, "sip:{}@{}", self.cfg.number, self.cfg.target);
        } else {
            self.out.extend_from_slice(uri);
        }
        self.out.extend_from_slice(b" SIP/2.0\r\n");
        if non2xx {
            // §17.1.1.3: the ACK for a failure response reuses the INVITE's top Via.
            if m.n_via > 0 {
                self.out.extend_from_slice(b"Via: ");
                self.out.extend_from_slice(m.vias[0]);
                self.out.extend_from_slice(b"\r\n");
            }
        } else {
            let _ = write!(
                self.out,
                "Via: SIP/2.0/UDP {};branch=z9hG4bK{:08x}a{:x};rport\r\n",
                self.sip_local, self.run, self.rng
            );
            self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        }
        self.out.extend_from_slice(b"Max-Forwards: 70\r\nFrom: ");
        self.out.extend_from_slice(m.from);
        self.out.extend_from_slice(b"\r\nTo: ");
        self.out.extend_from_slice(m.to);
        self.out.extend_from_slice(b"\r\nCall-ID: ");
        self.out.extend_from_slice(m.call_id);
        let n = m.cseq.split(|&b| b == b' ').next().unwrap_or(b"1");
        self.out.extend_from_slice(b"\r\nCSeq: ");
        self.out.extend_from_slice(n);
        self.out
            .extend_from_slice(b" ACK\r\nContent-Length: 0\r\n\r\n");
    }

    fn build_bye(&mut self, i: u32) {
        let epoch = self.slots[i as usize].epoch;
        self.out.clear();
        self.out.extend_from_slice(b"BYE ");
        let s = &self.slots[i as usize];
        if s.remote_uri.is_empty() {
            let _ = write!(self.out, "sip:{}@{}", self.cfg.number, self.cfg.target);
        } else {
            self.out.extend_from_slice(&s.remote_uri);
        }
        let _ = write!(
            self.out,
            " SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK{:08x}b{i}x{epoch};rport\r\n\
             Max-Forwards: 70\r\n",
            self.sip_local, self.run
        );
        self.write_from(i, epoch);
        self.out.extend_from_slice(b"To: ");
        self.out.extend_from_slice(&self.slots[i as usize].to_hdr);
        self.out.extend_from_slice(b"\r\nCall-ID: ");
        Self::write_call_id(&mut self.out, self.run, i, epoch, self.cfg.local);
        self.out
            .extend_from_slice(b"\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n");
    }

    /// Response to a request from the engine (BYE, OPTIONS, ...).
    fn build_response(&mut self, m: &Msg<'_>, code: u16, reason: &str) {
        self.out.clear();
        let _ = write!(self.out, "SIP/2.0 {code} {reason}\r\n");
        for v in &m.vias[..m.n_via] {
            self.out.extend_from_slice(b"Via: ");
            self.out.extend_from_slice(v);
            self.out.extend_from_slice(b"\r\n");
        }
        for (name, v) in [
            (&b"From: "[..], m.from),
            (b"To: ", m.to),
            (b"Call-ID: ", m.call_id),
            (b"CSeq: ", m.cseq),
        ] {
            self.out.extend_from_slice(name);
            self.out.extend_from_slice(v);
            self.out.extend_from_slice(b"\r\n");
        }
        self.out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    }

    // ---- call lifecycle ----

    fn start_call(&mut self, now: Instant) {
        let Some(i) = self.free.pop_front() else {
            return;
        };
        let ssrc = self.random() as u32;
        let ts0 = self.random() as u32;
        let seq0 = self.random() as u16;
        let s = &mut self.slots[i as usize];
        s.st = St::Inviting;
        s.invite_at = now;
        s.rt = T1;
        s.ack_at = None;
        s.to_hdr.clear();
        s.remote_uri.clear();
        s.remote_rtp = None;
        s.rx = RxStream::default();
        s.got_rtp = false;
        s.tx_on = false;
        s.tx_ssrc = ssrc;
        s.tx_ts0 = ts0;
        s.tx_seq = seq0;
        s.tx_n = 0;
        self.active += 1;
        self.c.attempted += 1;
        self.build_invite(i);
        self.send_sip();
        self.set_timer(i, now + T1);
    }

    fn end_call(&mut self, i: u32) {
        let s = &mut self.slots[i as usize];
        if s.st == St::Free {
            return;
        }
        let answered = s.ack_at.is_some();
        let rx = s.rx;
        s.st = St::Free;
        s.epoch = s.epoch.wrapping_add(1);
        s.timer = s.timer.wrapping_add(1);
        s.tx_on = false;
        s.remote_rtp = None;
        self.free.push_back(i);
        self.active -= 1;
        self.fold_stream(&rx);
        if rx.relayed > 0 {
            self.c.calls_with_relayed += 1;
        }
        if answered && !self.slots[i as usize].got_rtp {
            self.c.answered_no_rtp += 1;
        }
        if let Some(d) = rx.drift_us() {
            self.c.drift_calls += 1;
            if d.abs() > self.c.drift_max_us.abs() {
                self.c.drift_max_us = d;
            }
            if d.abs() > 20_000 {
                self.c.drift_over_20ms += 1;
            }
        }
    }

    fn fold_stream(&mut self, rx: &RxStream) {
        let c = &mut self.c;
        c.rtp_rx += rx.packets;
        let lost = rx.lost();
        c.rtp_lost += lost;
        if lost > 0 {
            c.rtp_calls_with_loss += 1;
        }
        c.rtp_dups += rx.dups;
        c.rtp_reordered += rx.reordered;
        c.rtp_markers += rx.markers;
        c.rtp_te += rx.te_packets;
        c.rtp_relayed += rx.relayed;
        c.rtp_ts_step_odd += rx.ts_step_odd;
        c.rtp_ts_skipped_frames += rx.ts_skipped_frames;
    }

    fn on_timer(&mut self, i: u32, now: Instant) {
        let st = self.slots[i as usize].st;
        match st {
            St::Free => {}
            St::Inviting => {
                let s = &self.slots[i as usize];
                if now.duration_since(s.invite_at) >= TIMER_B {
                    self.c.failed_timeout += 1;
                    self.end_call(i);
                    return;
                }
                self.build_invite(i);
                self.send_sip();
                self.c.invite_retrans += 1;
                let s = &mut self.slots[i as usize];
                s.rt *= 2;
                let at = (now + s.rt).min(s.invite_at + TIMER_B);
                self.set_timer(i, at);
            }
            St::Proceeding => {
                // Timer B (kept after a provisional so no call can hang forever).
                self.c.failed_timeout += 1;
                self.end_call(i);
            }
            St::Talking => self.send_bye(i, now),
            St::Byeing => {
                let s = &self.slots[i as usize];
                if now.duration_since(s.bye_at) >= TIMER_B {
                    self.c.bye_timeout += 1;
                    self.end_call(i);
                    return;
                }
                self.build_bye(i);
                self.send_sip();
                self.c.bye_retrans += 1;
                let s = &mut self.slots[i as usize];
                s.rt = (s.rt * 2).min(T2);
                let at = (now + s.rt).min(s.bye_at + TIMER_B);
                self.set_timer(i, at);
            }
        }
    }

    fn send_bye(&mut self, i: u32, now: Instant) {
        let s = &mut self.slots[i as usize];
        s.st = St::Byeing;
        s.bye_at = now;
        s.rt = T1;
        s.tx_on = false;
        self.build_bye(i);
        self.send_sip();
        self.set_timer(i, now + T1);
    }

    /// Slot index of one of our Call-IDs from this run, if its generation is current.
    fn lookup(&self, call_id: &[u8]) -> Result<u32, ()> {
        // cg{run:08x}-{i}-{epoch}@...
        let rest = call_id.strip_prefix(b"cg").ok_or(())?;
        if rest.len() < 9 || rest[8] != b'-' {
            return Err(());
        }
        let run = std::str::from_utf8(&rest[..8])
            .ok()
            .and_then(|s| u32::from_str_radix(s, 16).ok())
            .ok_or(())?;
        if run != self.run {
            return Err(());
        }
        let rest = &rest[9..];
        let at = rest.iter().position(|&b| b == b'@').ok_or(())?;
        let mut parts = rest[..at].split(|&b| b == b'-');
        let i = parse_u64(parts.next().ok_or(())?).ok_or(())? as usize;
        let epoch = parse_u64(parts.next().ok_or(())?).ok_or(())? as u32;
        let s = self.slots.get(i).ok_or(())?;
        if s.epoch != epoch || s.st == St::Free {
            return Err(());
        }
        Ok(i as u32)
    }

    fn on_sip(&mut self, len: usize, from: SocketAddr, now: Instant) {
        self.c.sip_rx += 1;
        // The receive buffer is borrowed by the parsed message while we write `out`, so
        // move it out for the duration (no allocation: it is put back).
        let buf = std::mem::take(&mut self.rx_buf);
        if let Some(m) = parse_sip(&buf[..len]) {
            if m.status == 0 {
                self.on_request(&m, from);
            } else {
                self.on_response(&m, now);
            }
        } else {
            self.c.sip_unparsable += 1;
        }
        self.rx_buf = buf;
    }

    fn on_request(&mut self, m: &Msg<'_>, from: SocketAddr) {
        let call = self.lookup(m.call_id);
        if m.method == b"ACK" {
            return;
        }
        if m.method == b"BYE" {
            self.build_response(m, 200, "OK");
            self.send_sip_to(from);
            if let Ok(i) = call {
                match self.slots[i as usize].st {
                    St::Talking | St::Byeing => self.c.ended_by_engine += 1,
                    _ => self.c.engine_bye_during_setup += 1,
                }
                self.end_call(i);
            } else {
                self.c.sip_stray += 1;
            }
            return;
        }
        self.c.other_requests += 1;
        if m.method == b"INVITE" {
            self.build_response(m, 488, "Not Acceptable Here");
        } else {
            self.build_response(m, 200, "OK");
        }
        self.send_sip_to(from);
    }

    fn on_response(&mut self, m: &Msg<'_>, now: Instant) {
        let call = self.lookup(m.call_id).ok();
        let status = m.status;
        if m.cseq_method.eq_ignore_ascii_case(b"INVITE") {
            let st = call.map(|i| self.slots[i as usize].st);
            let setting_up = matches!(st, Some(St::Inviting | St::Proceeding));
            if status < 200 {
                self.c.provisional += 1;
                if let (Some(i), Some(St::Inviting)) = (call, st) {
                    let s = &mut self.slots[i as usize];
                    s.st = St::Proceeding;
                    let at = s.invite_at + TIMER_B;
                    self.set_timer(i, at);
                }
                return;
            }
            if status >= 300 {
                self.build_ack(m, true);
                self.send_sip();
                match call {
                    Some(i) if setting_up => {
                        self.c.failed_non2xx += 1;
                        self.c.status(status);
                        self.end_call(i);
                    }
                    _ => self.c.final_retrans_rx += 1,
                }
                return;
            }
            // 2xx: ACK it whatever the state (a retransmitted 200 needs a new ACK).
            self.build_ack(m, false);
            self.send_sip();
            let Some(i) = call.filter(|_| setting_up) else {
                self.c.invite_ok_retrans_rx += 1;
                return;
            };
            self.c.answered += 1;
            self.c.status(status);
            if !has_tag(m.to) {
                self.c.ok_without_to_tag += 1;
            }
            let (rtp, te) = parse_sdp(m.body);
            if rtp.is_none() {
                self.c.answer_no_sdp += 1;
            } else if !te {
                self.c.answer_no_te += 1;
            }
            let lat = now.duration_since(self.slots[i as usize].invite_at);
            self.invite_to_200.record(lat.as_micros() as u64);
            let s = &mut self.slots[i as usize];
            s.to_hdr.extend_from_slice(m.to);
            s.remote_uri.extend_from_slice(m.contact_uri);
            s.remote_rtp = rtp;
            s.st = St::Talking;
            s.ack_at = Some(now);
            let epoch = s.epoch;
            if self.cfg.send_rtp && rtp.is_some() {
                s.tx_on = true;
                s.tx_start = now;
                s.tx_n = 0;
                self.wheel_add(i, epoch, now);
            }
            let at = if self.stopping {
                now
            } else {
                now + self.cfg.hold
            };
            self.set_timer(i, at);
        } else if m.cseq_method.eq_ignore_ascii_case(b"BYE") {
            if status < 200 {
                return;
            }
            match call {
                Some(i) if self.slots[i as usize].st == St::Byeing => {
                    if (200..300).contains(&status) {
                        if !self.stopping {
                            self.c.ended_by_us += 1;
                        }
                    } else {
                        self.c.bye_error += 1;
                        self.c.status(status);
                    }
                    self.end_call(i);
                }
                _ => self.c.bye_ok_dup_rx += 1,
            }
        } else {
            self.c.sip_stray += 1;
        }
    }

    // ---- RTP ----

    fn on_rtp_readable(&mut self, i: usize) {
        let mut errors = 0;
        loop {
            let r = self.slots[i].sock.recv_from(&mut self.rx_buf);
            let (n, src) = match r {
                Ok(x) => x,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                // Edge-triggered: keep draining past errors (e.g. an ICMP error queued on
                // the socket), or the datagrams behind it would never wake us.
                Err(_) if errors < 16 => {
                    errors += 1;
                    continue;
                }
                Err(_) => return,
            };
            let now = Instant::now();
            let s = &mut self.slots[i];
            if s.st == St::Free || s.remote_rtp.is_none() {
                self.c.rtp_stray += 1;
                continue;
            }
            if Some(src) != s.remote_rtp {
                self.c.rtp_wrong_source += 1;
                if self.c.wrong_sources.len() < 4 {
                    let expected = s.remote_rtp.unwrap_or(src);
                    self.c.wrong_sources.push((src, expected));
                }
                continue;
            }
            let p = &self.rx_buf[..n];
            if n < 12 || p[0] >> 6 != 2 {
                self.c.rtp_bad += 1;
                continue;
            }
            let marker = p[1] & 0x80 != 0;
            let pt = p[1] & 0x7F;
            let seq = u16::from_be_bytes([p[2], p[3]]);
            let ts = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
            let ssrc = u32::from_be_bytes([p[8], p[9], p[10], p[11]]);
            let cc = (p[0] & 0x0F) as usize;
            let payload = p.get(12 + 4 * cc..).unwrap_or(&[]);
            let relayed = payload.len() >= 80
                && !matches!(payload[0], 0xFF | 0x7F | 0xD5 | 0x55)
                && payload.iter().all(|&b| b == payload[0]);

            if !s.got_rtp {
                s.got_rtp = true;
                let inv = now.duration_since(s.invite_at).as_micros() as u64;
                let ack = s.ack_at.map(|a| now.duration_since(a).as_micros() as u64);
                self.invite_to_rtp.record(inv);
                if let Some(a) = ack {
                    self.ack_to_rtp.record(a);
                }
            }
            let s = &mut self.slots[i];
            if s.rx.packets > 0 && s.rx.ssrc != ssrc {
                // A new stream: close the old one into the totals.
                self.c.rtp_ssrc_changes += 1;
                let old = s.rx;
                s.rx = RxStream::default();
                self.fold_stream(&old);
            }
            let s = &mut self.slots[i];
            let rx = &mut s.rx;
            if marker {
                rx.markers += 1;
            }
            if pt == 101 {
                rx.te_packets += 1;
            }
            if relayed {
                rx.relayed += 1;
            }
            if rx.packets == 0 {
                rx.packets = 1;
                rx.ssrc = ssrc;
                rx.base_ext = seq as i64;
                rx.max_ext = seq as i64;
                rx.seen = 1;
                rx.first_arrival = Some(now);
                rx.first_ts = ts;
                rx.last_arrival = Some(now);
                rx.last_ts = ts;
                continue;
            }
            rx.packets += 1;
            let delta = seq.wrapping_sub(rx.max_ext as u16) as i16 as i64;
            if delta > 0 {
                if delta == 1 {
                    // Consecutive frames: arrival spacing vs the media clock step.
                    let d_arr = now
                        .duration_since(rx.last_arrival.unwrap_or(now))
                        .as_micros() as i64;
                    let d_ts = ts.wrapping_sub(rx.last_ts) as i32 as i64 * 125;
                    if d_ts != FRAME_US {
                        rx.ts_step_odd += 1;
                        if d_ts > FRAME_US {
                            rx.ts_skipped_frames += (d_ts / FRAME_US - 1) as u64;
                        }
                    }
                    let dev = (d_arr - d_ts).unsigned_abs();
                    self.interarrival.record(dev);
                }
                rx.seen = if delta >= 64 { 0 } else { rx.seen << delta };
                rx.seen |= 1;
                rx.max_ext += delta;
                rx.last_arrival = Some(now);
                rx.last_ts = ts;
            } else if delta == 0 {
                rx.dups += 1;
            } else if -delta < 64 {
                let bit = 1u64 << (-delta);
                if rx.seen & bit != 0 {
                    rx.dups += 1;
                } else {
                    rx.seen |= bit;
                    rx.reordered += 1;
                }
            } else {
                rx.reordered += 1; // very late; not in the window
            }
        }
    }

    fn wheel_run(&mut self, now: Instant) {
        let now_ms = self.ms_since_start(now);
        if now_ms >= self.wheel_cursor + WHEEL as u64 {
            // A stall longer than one lap of the wheel: every pending send is due. Walking the
            // cursor up to now would visit each bucket again every lap, and a send re-queued
            // a lap ahead would go out once per lap: a burst of stall/32 ms packets per call
            // (it overflowed the engine's sockets after a 15 s stall). Take them all out,
            // jump the cursor to now, and send each once; send_frame keeps the 20 ms grid.
            let mut due = std::mem::take(&mut self.wheel_scratch);
            for bucket in &mut self.wheel {
                due.append(bucket);
            }
            self.wheel_len -= due.len();
            self.wheel_cursor = now_ms;
            for &(i, epoch) in &due {
                self.send_frame(i, epoch, now);
            }
            due.clear();
            self.wheel_scratch = due;
            self.wheel_cursor = now_ms + 1;
            return;
        }
        while self.wheel_cursor <= now_ms {
            let b = (self.wheel_cursor as usize) % WHEEL;
            std::mem::swap(&mut self.wheel[b], &mut self.wheel_scratch);
            let mut due = std::mem::take(&mut self.wheel_scratch);
            self.wheel_len -= due.len();
            for &(i, epoch) in &due {
                self.send_frame(i, epoch, now);
            }
            due.clear();
            self.wheel_scratch = due;
            self.wheel_cursor += 1;
        }
    }

    fn send_frame(&mut self, i: u32, epoch: u32, now: Instant) {
        let s = &mut self.slots[i as usize];
        if s.epoch != epoch || !s.tx_on {
            return;
        }
        let Some(dst) = s.remote_rtp else { return };
        let ts = s.tx_ts0.wrapping_add((s.tx_n as u32).wrapping_mul(160));
        rtp_header(&mut self.rtp_out, s.tx_n == 0, 0, s.tx_seq, ts, s.tx_ssrc);
        match s.sock.send_to(&self.rtp_out, dst) {
            Ok(_) => self.c.rtp_tx += 1,
            Err(_) => self.c.rtp_tx_errors += 1,
        }
        s.tx_seq = s.tx_seq.wrapping_add(1);
        s.tx_n += 1;
        let mut next = s.tx_start + FRAME * s.tx_n as u32;
        if next + FRAME < now {
            // More than a frame behind (callgen starved): skip, keep the grid.
            let behind = now.duration_since(s.tx_start).as_micros() as u64 / 20_000;
            s.tx_n = behind + 1;
            next = s.tx_start + FRAME * s.tx_n as u32;
            self.c.rtp_tx_late_skips += 1;
        }
        let m = self.ms_since_start(next).max(self.wheel_cursor + 1);
        self.wheel[(m as usize) % WHEEL].push((i, epoch));
        self.wheel_len += 1;
    }

    // ---- main loop ----

    fn run(&mut self) {
        let mut events = Events::with_capacity(4096);
        let interval = Duration::from_secs_f64(1.0 / self.cfg.rate);
        let mut sched_base = self.start;
        let mut sched_k: u32 = 0;
        let limit_at = self.start + self.cfg.duration_limit;
        let mut stop_deadline: Option<Instant> = None;
        let mut next_progress = self.start + self.cfg.progress;
        let mut last_rx = 0u64;
        let mut last_progress = self.start;

        loop {
            let now = Instant::now();
            let mut deadline = self.next_deadline(now);
            let launching = !self.stopping && self.c.attempted < self.cfg.calls;
            let next_invite = sched_base + interval * sched_k;
            if launching && self.active < self.cfg.concurrent {
                deadline = deadline.min(next_invite);
            }
            if !self.cfg.progress.is_zero() {
                deadline = deadline.min(next_progress);
            }
            deadline = deadline.min(stop_deadline.unwrap_or(limit_at));
            let timeout = deadline.saturating_duration_since(now);
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != ErrorKind::Interrupted
            {
                eprintln!("callgen: poll: {e}");
                return;
            }
            let woke = Instant::now();
            // epoll rounds the timeout up to the next millisecond: allow for it.
            self.stall(woke.saturating_duration_since(deadline + Duration::from_millis(1)));
            for ev in events.iter() {
                if ev.token() == SIP_TOKEN {
                    let mut errors = 0;
                    loop {
                        match self.sip.recv_from(&mut self.rx_buf) {
                            Ok((n, from)) => {
                                let now = Instant::now();
                                self.on_sip(n, from, now);
                            }
                            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                            Err(_) if errors < 16 => errors += 1,
                            Err(_) => break,
                        }
                    }
                } else {
                    self.on_rtp_readable(ev.token().0);
                }
            }
            let now = Instant::now();
            // Signalling deadlines.
            while let Some(&Reverse((at, i, t))) = self.heap.peek() {
                if at > now {
                    break;
                }
                self.heap.pop();
                if self.slots[i as usize].timer == t {
                    self.on_timer(i, now);
                }
            }
            // RTP sends.
            if self.wheel_len > 0 {
                self.wheel_run(now);
            } else {
                self.wheel_cursor = self.ms_since_start(now) + 1;
            }
            // New calls, paced on an absolute schedule; when capped by --concurrent the
            // schedule restarts from now (no burst of catch-up calls).
            if !self.stopping {
                while self.c.attempted < self.cfg.calls {
                    let due = sched_base + interval * sched_k;
                    if due > now {
                        break;
                    }
                    if self.active >= self.cfg.concurrent || self.free.is_empty() {
                        sched_base = now;
                        sched_k = 0;
                        break;
                    }
                    self.start_call(due.max(now - Duration::from_millis(1)).min(now));
                    sched_k += 1;
                    if sched_k > 1_000_000 {
                        sched_base += interval * sched_k;
                        sched_k = 0;
                    }
                }
            }
            if !self.cfg.progress.is_zero() && now >= next_progress {
                let dt = now.duration_since(last_progress).as_secs_f64().max(1e-3);
                let rx_live: u64 = self.live_rx();
                let rx = self.c.rtp_rx + rx_live;
                eprintln!(
                    "[{:7.1}s] attempted {} answered {} active {} failed {} by-engine {} | \
                     rtp rx {:.0} pps tx {} lost {} | retrans inv {} bye {} 200-rx {}",
                    now.duration_since(self.start).as_secs_f64(),
                    self.c.attempted,
                    self.c.answered,
                    self.active,
                    self.c.failed_non2xx + self.c.failed_timeout,
                    self.c.ended_by_engine,
                    (rx.saturating_sub(last_rx)) as f64 / dt,
                    self.c.rtp_tx,
                    self.c.rtp_lost,
                    self.c.invite_retrans,
                    self.c.bye_retrans,
                    self.c.invite_ok_retrans_rx,
                );
                last_rx = rx;
                last_progress = now;
                next_progress += self.cfg.progress;
                if next_progress <= now {
                    next_progress = now + self.cfg.progress;
                }
            }
            self.stall(Instant::now().saturating_duration_since(woke));
            // Termination.
            if self.c.attempted >= self.cfg.calls && self.active == 0 {
                return;
            }
            if let Some(d) = stop_deadline {
                if now >= d {
                    self.abort_all();
                    return;
                }
            } else if now >= limit_at {
                // Hard stop: one BYE per answered call, 2 s to collect the answers.
                eprintln!(
                    "callgen: --duration-limit reached with {} calls active; stopping",
                    self.active
                );
                self.stopping = true;
                for i in 0..self.slots.len() as u32 {
                    match self.slots[i as usize].st {
                        St::Talking => {
                            self.c.aborted_at_limit += 1;
                            self.send_bye(i, now);
                        }
                        St::Inviting | St::Proceeding | St::Byeing => {
                            self.c.aborted_at_limit += 1;
                        }
                        St::Free => {}
                    }
                }
                stop_deadline = Some(now + Duration::from_secs(2));
            }
        }
    }

    fn stall(&mut self, late: Duration) {
        let us = late.as_micros() as u64;
        if us > 10_000 {
            self.c.stalls_over_10ms += 1;
        }
        self.c.stall_max_us = self.c.stall_max_us.max(us);
    }

    fn live_rx(&self) -> u64 {
        self.slots
            .iter()
            .filter(|s| s.st != St::Free)
            .map(|s| s.rx.packets)
            .sum()
    }

    fn abort_all(&mut self) {
        for i in 0..self.slots.len() as u32 {
            self.end_call(i);
        }
    }

    // ---- reporting ----

    fn own_cpu_seconds() -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let after = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        Some(ticks as f64 / 100.0) // USER_HZ is 100 on Linux
    }

    fn failed(&self) -> u64 {
        self.c.failed_non2xx + self.c.failed_timeout
    }

    fn clean(&self) -> bool {
        self.failed() == 0
            && self.c.answered == self.cfg.calls
            && self.c.bye_timeout == 0
            && self.c.bye_error == 0
            && self.c.aborted_at_limit == 0
    }

    fn report_json(&self, elapsed: f64, cpu: Option<f64>) -> String {
        let c = &self.c;
        let mut j = String::with_capacity(4096);
        let hist = |h: &Hist| {
            format!(
                "{{\"count\":{},\"mean\":{:.3},\"p50\":{:.3},\"p90\":{:.3},\"p99\":{:.3},\"p999\":{:.3},\"max\":{:.3}}}",
                h.count,
                ms(h.mean()),
                ms(h.quantile(0.5)),
                ms(h.quantile(0.9)),
                ms(h.quantile(0.99)),
                ms(h.quantile(0.999)),
                ms(h.max)
            )
        };
        let statuses: Vec<String> = c
            .status_counts
            .iter()
            .map(|(code, n)| format!("\"{code}\":{n}"))
            .collect();
        let _ = write!(
            j,
            "{{\"config\":{{\"target\":\"{}\",\"calls\":{},\"rate\":{},\"concurrent\":{},\"hold_s\":{},\"send_rtp\":{}}},",
            self.cfg.target,
            self.cfg.calls,
            self.cfg.rate,
            self.cfg.concurrent,
            self.cfg.hold.as_secs_f64(),
            self.cfg.send_rtp
        );
        let _ = write!(
            j,
            "\"elapsed_s\":{elapsed:.3},\"callgen_cpu_s\":{},",
            cpu.map_or("null".to_string(), |c| format!("{c:.2}"))
        );
        let _ = write!(
            j,
            "\"calls\":{{\"attempted\":{},\"answered\":{},\"failed\":{},\"failed_non2xx\":{},\"failed_timeout\":{},\"ended_by_us\":{},\"ended_by_engine\":{},\"engine_bye_during_setup\":{},\"bye_timeout\":{},\"bye_error\":{},\"aborted_at_limit\":{},\"answered_no_rtp\":{},\"answer_no_sdp\":{},\"answer_no_telephone_event\":{},\"ok_without_to_tag\":{},\"final_status\":{{{}}}}},",
            c.attempted,
            c.answered,
            self.failed(),
            c.failed_non2xx,
            c.failed_timeout,
            c.ended_by_us,
            c.ended_by_engine,
            c.engine_bye_during_setup,
            c.bye_timeout,
            c.bye_error,
            c.aborted_at_limit,
            c.answered_no_rtp,
            c.answer_no_sdp,
            c.answer_no_te,
            c.ok_without_to_tag,
            statuses.join(",")
        );
        let _ = write!(
            j,
            "\"sip\":{{\"tx\":{},\"rx\":{},\"send_errors\":{},\"unparsable\":{},\"stray\":{},\"provisional_rx\":{},\"invite_retrans\":{},\"bye_retrans\":{},\"invite_200_retrans_rx\":{},\"bye_200_dup_rx\":{},\"failure_retrans_rx\":{},\"other_requests_rx\":{}}},",
            c.sip_tx,
            c.sip_rx,
            c.sip_send_errors,
            c.sip_unparsable,
            c.sip_stray,
            c.provisional,
            c.invite_retrans,
            c.bye_retrans,
            c.invite_ok_retrans_rx,
            c.bye_ok_dup_rx,
            c.final_retrans_rx,
            c.other_requests
        );
        let _ = write!(
            j,
            "\"latency_ms\":{{\"invite_to_200\":{},\"invite_to_first_rtp\":{},\"ack_to_first_rtp\":{}}},",
            hist(&self.invite_to_200),
            hist(&self.invite_to_rtp),
            hist(&self.ack_to_rtp)
        );
        let ws: Vec<String> = c
            .wrong_sources
            .iter()
            .map(|(s, e)| format!("{{\"from\":\"{s}\",\"expected\":\"{e}\"}}"))
            .collect();
        let _ = write!(j, "\"rtp_wrong_source_examples\":[{}],", ws.join(","));
        let ia = &self.interarrival;
        let _ = write!(
            j,
            "\"rtp_rx\":{{\"packets\":{},\"lost\":{},\"loss_pct\":{:.5},\"calls_with_loss\":{},\"duplicates\":{},\"reordered\":{},\"ssrc_changes\":{},\"markers\":{},\"telephone_event\":{},\"relayed\":{},\"calls_with_relayed\":{},\"ts_step_not_160\":{},\"ts_skipped_frames\":{},\"bad\":{},\"wrong_source\":{},\"stray\":{},\
             \"interarrival_dev_ms\":{{\"count\":{},\"p50\":{:.1},\"p90\":{:.1},\"p99\":{:.1},\"p999\":{:.1},\"max\":{:.3},\"over_100ms\":{},\"within_2ms_pct\":{:.4}}},\
             \"drift_ms\":{{\"calls\":{},\"max_abs\":{:.3},\"calls_over_20ms\":{}}}}},",
            c.rtp_rx,
            c.rtp_lost,
            if c.rtp_rx + c.rtp_lost > 0 {
                100.0 * c.rtp_lost as f64 / (c.rtp_rx + c.rtp_lost) as f64
            } else {
                0.0
            },
            c.rtp_calls_with_loss,
            c.rtp_dups,
            c.rtp_reordered,
            c.rtp_ssrc_changes,
            c.rtp_markers,
            c.rtp_te,
            c.rtp_relayed,
            c.calls_with_relayed,
            c.rtp_ts_step_odd,
            c.rtp_ts_skipped_frames,
            c.rtp_bad,
            c.rtp_wrong_source,
            c.rtp_stray,
            ia.count,
            ms(ia.quantile(0.5)),
            ms(ia.quantile(0.9)),
            ms(ia.quantile(0.99)),
            ms(ia.quantile(0.999)),
            ms(ia.max),
            ia.overflow,
            100.0 * ia.fraction_below(2_000),
            c.drift_calls,
            c.drift_max_us.abs() as f64 / 1000.0,
            c.drift_over_20ms
        );
        let _ = write!(
            j,
            "\"rtp_tx\":{{\"packets\":{},\"errors\":{},\"late_skips\":{}}},\"callgen_stalls\":{{\"over_10ms\":{},\"max_ms\":{:.3}}},\"clean\":{}}}",
            c.rtp_tx,
            c.rtp_tx_errors,
            c.rtp_tx_late_skips,
            c.stalls_over_10ms,
            ms(c.stall_max_us),
            self.clean()
        );
        j
    }

    fn report_human(&self, elapsed: f64, cpu: Option<f64>) -> String {
        let c = &self.c;
        let mut o = String::with_capacity(4096);
        let h = |name: &str, h: &Hist, o: &mut String| {
            let _ = writeln!(
                o,
                "  {name:<22} n={:<7} mean {:7.2}  p50 {:7.2}  p90 {:7.2}  p99 {:7.2}  max {:8.2} ms",
                h.count,
                ms(h.mean()),
                ms(h.quantile(0.5)),
                ms(h.quantile(0.9)),
                ms(h.quantile(0.99)),
                ms(h.max)
            );
        };
        let _ = writeln!(
            o,
            "callgen: {} calls to {} at {}/s, concurrent ≤ {}, hold {:.1}s, send-rtp {}; {:.1}s, callgen CPU {}",
            self.cfg.calls,
            self.cfg.target,
            self.cfg.rate,
            self.cfg.concurrent,
            self.cfg.hold.as_secs_f64(),
            self.cfg.send_rtp,
            elapsed,
            cpu.map_or("?".to_string(), |c| format!(
                "{c:.2}s ({:.1} % of a core)",
                100.0 * c / elapsed.max(1e-3)
            ))
        );
        let _ = writeln!(
            o,
            "calls: attempted {} answered {} failed {} (non-2xx {}, timeout {}) | ended by us {} by engine {} (during setup {}) | BYE timeout {} error {} | aborted at limit {} | answered without RTP {}",
            c.attempted,
            c.answered,
            self.failed(),
            c.failed_non2xx,
            c.failed_timeout,
            c.ended_by_us,
            c.ended_by_engine,
            c.engine_bye_during_setup,
            c.bye_timeout,
            c.bye_error,
            c.aborted_at_limit,
            c.answered_no_rtp
        );
        if !c.status_counts.is_empty() {
            let s: Vec<String> = c
                .status_counts
                .iter()
                .map(|(code, n)| format!("{code}×{n}"))
                .collect();
            let _ = writeln!(o, "final statuses: {}", s.join(" "));
        }
        let _ = writeln!(
            o,
            "sip: tx {} rx {} | retransmitted INVITE {} BYE {} | 200 retransmissions received {} (INVITE) {} (BYE) | provisional {} | unparsable {} stray {} send errors {}",
            c.sip_tx,
            c.sip_rx,
            c.invite_retrans,
            c.bye_retrans,
            c.invite_ok_retrans_rx,
            c.bye_ok_dup_rx,
            c.provisional,
            c.sip_unparsable,
            c.sip_stray,
            c.sip_send_errors
        );
        if c.answer_no_sdp + c.answer_no_te + c.ok_without_to_tag > 0 {
            let _ = writeln!(
                o,
                "sip oddities: 200 without usable SDP {} | without telephone-event {} | without To tag {}",
                c.answer_no_sdp, c.answer_no_te, c.ok_without_to_tag
            );
        }
        let _ = writeln!(o, "latency:");
        h("INVITE -> 200", &self.invite_to_200, &mut o);
        h("INVITE -> first RTP", &self.invite_to_rtp, &mut o);
        h("ACK -> first RTP", &self.ack_to_rtp, &mut o);
        let lost_pct = if c.rtp_rx + c.rtp_lost > 0 {
            100.0 * c.rtp_lost as f64 / (c.rtp_rx + c.rtp_lost) as f64
        } else {
            0.0
        };
        let _ = writeln!(
            o,
            "rtp rx: {} packets, lost {} ({:.4} %, {} calls), dup {}, reordered {}, SSRC changes {}, markers {}, telephone-event {}, relayed (uniform non-silence payload) {} in {} calls, ts step≠160 {} (frames skipped by the sender {}), bad {}, wrong source {}, stray {}",
            c.rtp_rx,
            c.rtp_lost,
            lost_pct,
            c.rtp_calls_with_loss,
            c.rtp_dups,
            c.rtp_reordered,
            c.rtp_ssrc_changes,
            c.rtp_markers,
            c.rtp_te,
            c.rtp_relayed,
            c.calls_with_relayed,
            c.rtp_ts_step_odd,
            c.rtp_ts_skipped_frames,
            c.rtp_bad,
            c.rtp_wrong_source,
            c.rtp_stray
        );
        let ia = &self.interarrival;
        for (src, expected) in &c.wrong_sources {
            let _ = writeln!(o, "  RTP from {src} where the SDP answer said {expected}");
        }
        let _ = writeln!(
            o,
            "rtp pacing |Δ−20ms|: n={} p50 {:.1} p90 {:.1} p99 {:.1} p99.9 {:.1} max {:.2} ms, ≥100 ms {}, within 2 ms {:.3} %",
            ia.count,
            ms(ia.quantile(0.5)),
            ms(ia.quantile(0.9)),
            ms(ia.quantile(0.99)),
            ms(ia.quantile(0.999)),
            ms(ia.max),
            ia.overflow,
            100.0 * ia.fraction_below(2_000)
        );
        let _ = writeln!(
            o,
            "rtp drift (media clock − wall clock per call): max |drift| {:.2} ms over {} calls, {} calls > 20 ms",
            c.drift_max_us.abs() as f64 / 1000.0,
            c.drift_calls,
            c.drift_over_20ms
        );
        let _ = writeln!(
            o,
            "rtp tx: {} packets, errors {}, late skips {} | callgen stalls > 10 ms: {} (max {:.1} ms){}",
            c.rtp_tx,
            c.rtp_tx_errors,
            c.rtp_tx_late_skips,
            c.stalls_over_10ms,
            ms(c.stall_max_us),
            if c.stalls_over_10ms > 0 {
                " — RTP timing of those moments is callgen's, not the engine's"
            } else {
                ""
            }
        );
        let _ = write!(
            o,
            "result: {}",
            if self.clean() { "CLEAN" } else { "NOT CLEAN" }
        );
        o
    }
}

fn main() -> ExitCode {
    let cfg = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("callgen: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let json = cfg.json;
    let mut g = match Gen::new(cfg) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("callgen: {e}");
            return ExitCode::from(2);
        }
    };
    g.start = Instant::now();
    g.wheel_cursor = 0;
    g.run();
    let elapsed = g.start.elapsed().as_secs_f64();
    let cpu = Gen::own_cpu_seconds();
    if json {
        println!("{}", g.report_json(elapsed, cpu));
    } else {
        println!("{}", g.report_human(elapsed, cpu));
    }
    let _ = std::io::stdout().flush();
    if g.clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
