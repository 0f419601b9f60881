//! agentgen: N simulated agent phones for load-testing phonetree's queues and RTP bridge.
//!
//! The counterpart of `examples/callgen.rs` on the agent side of a bridged call
//! (caller ↔ engine ↔ agent). One thread on mio; per agent one UDP socket for SIP (the
//! engine sends an agent's INVITEs to the address its REGISTER came from, so every agent
//! needs its own source port) and one for RTP. It uses std + mio + md-5, not the phonetree
//! library, so it checks the engine from the outside.
//!
//! Per agent:
//! - **REGISTER** (RFC 3261 §10.2) as user `--agent-base-user + i` with password
//!   `--password-prefix` + user, paced at `--reg-rate`/s: the unauthenticated REGISTER gets
//!   401, the retry answers the Digest challenge (RFC 7616 §3.4, MD5, qop=auth, our own
//!   cnonce, nc=00000001). Refreshed at 80 % of the granted expiry with the same Call-ID and
//!   a higher CSeq (§10.2.4), again through a fresh challenge. REGISTER is retransmitted on
//!   Timer E (T1 doubling to T2) until a final response, for Timer F (32 s).
//! - **INVITE** from the engine: `200 OK` at once with an SDP answer (PCMU, or PCMA with
//!   `--codec PCMA` so the engine transcodes), retransmitted on T1…T2 until the ACK
//!   (§13.3.1.4), for 64·T1. A second INVITE while on a call is refused with 486.
//! - After the ACK: 20 ms RTP (every payload byte `--fill`, 0xAA: a constant that is not
//!   G.711 silence, so it cannot be mistaken for a prompt) to the address in the engine's
//!   offer, and every packet received is checked like callgen does: loss from sequence numbers (RFC 3550 §A.1), duplicates, reordering, inter-arrival
//!   deviation |Δarrival − Δts/8 ms|, payload type. Packets whose payload is one repeated
//!   non-silence byte (callgen's `--rtp-fill`; G.711 transcoding keeps a uniform payload
//!   uniform) are counted as *relayed*: they prove the bridge, as the whisper before them
//!   is real audio.
//! - **BYE** from the engine (the caller hung up) is answered 200; with `--hold SECS` the
//!   agent hangs up itself that long after the ACK (BYE retransmitted until a final
//!   response).
//!
//! It runs until `--duration` or until the `--stop-file` exists, then prints one JSON object
//! (stdout) and exits 0 if every agent registered and no call failed. A line
//! `agentgen: all N agents registered` goes to stderr once they are, for scripts to wait on.
//!
//!   ulimit -n 65536   # two descriptors per agent
//!   cargo run --release --example agentgen -- --target 127.0.0.1:5060 --agents 1000

use md5::{Digest as _, Md5};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt::Write as _;
use std::io::{ErrorKind, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
const TIMER_F: Duration = Duration::from_secs(32); // 64 × T1, also the 200's give-up time
const FRAME: Duration = Duration::from_millis(20);
const FRAME_US: i64 = 20_000;
const WHEEL: usize = 32; // 1 ms buckets; > 20 ms so one lap holds every pending send
const RTP_LEN: usize = 12 + 160;

const USAGE: &str = "\
agentgen: simulated agent phones for phonetree queue load tests (one thread, mio)

USAGE: agentgen [OPTIONS]
  --target ADDR          engine SIP address (registrar)          [127.0.0.1:5060]
  --local IP             local IP for SIP and RTP                [127.0.0.1]
  --agents N             agents to register                      [10]
  --agent-base-user U    first agent's SIP user; then U+1, ...   [5000]
  --password-prefix P    agent U's password is P followed by U   [pw]
  --realm R              digest realm expected                   [phonetree]
  --expires SECS         requested registration expiry           [600]
  --reg-rate R           REGISTERs started per second            [200]
  --codec PCMU|PCMA      codec answered (PCMA: engine transcodes) [PCMU]
  --hold SECS            agent hangs up SECS after the ACK; 0 = wait for the engine's BYE [0]
  --rtp-base PORT        first RTP port (even); base+2*i, skipping ports in use [50000]
  --fill HEX             payload byte sent (not silence, so the caller side can tell
                         relayed agent audio from prompts)           [AA]
  --duration SECS        run this long at most                    [3600]
  --stop-file PATH       stop (and report) as soon as this file exists
  --progress SECS        progress line on stderr every SECS, 0 = off [5]
  -h, --help
Exit status: 0 if every agent registered and every call ended cleanly, 1 otherwise,
2 on usage or setup errors.
";

// ---------------------------------------------------------------------------------------
// Configuration

struct Config {
    target: SocketAddr,
    local: IpAddr,
    agents: usize,
    base_user: u64,
    password_prefix: String,
    realm: String,
    expires: u64,
    reg_rate: f64,
    pcma: bool,
    hold: Duration,
    rtp_base: u16,
    fill: u8,
    duration: Duration,
    stop_file: Option<PathBuf>,
    progress: Duration,
}

fn parse_args() -> Result<Config, String> {
    let mut c = Config {
        target: "127.0.0.1:5060".parse().unwrap(),
        local: "127.0.0.1".parse().unwrap(),
        agents: 10,
        base_user: 5000,
        password_prefix: "pw".to_string(),
        realm: "phonetree".to_string(),
        expires: 600,
        reg_rate: 200.0,
        pcma: false,
        hold: Duration::ZERO,
        rtp_base: 50000,
        fill: 0xAA,
        duration: Duration::from_secs(3600),
        stop_file: None,
        progress: Duration::from_secs(5),
    };
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
        let secs = |n: &str, v: String| -> Result<Duration, String> {
            let f: f64 = num(n, v)?;
            if !(0.0..1e7).contains(&f) {
                return Err(format!("{n}: out of range"));
            }
            Ok(Duration::from_secs_f64(f))
        };
        match name.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            "--target" => c.target = num(&name, value(&name)?)?,
            "--local" => c.local = num(&name, value(&name)?)?,
            "--agents" => c.agents = num(&name, value(&name)?)?,
            "--agent-base-user" => c.base_user = num(&name, value(&name)?)?,
            "--password-prefix" => c.password_prefix = value(&name)?,
            "--realm" => c.realm = value(&name)?,
            "--expires" => c.expires = num(&name, value(&name)?)?,
            "--reg-rate" => c.reg_rate = num(&name, value(&name)?)?,
            "--codec" => {
                let v = value(&name)?;
                c.pcma = match v.to_ascii_uppercase().as_str() {
                    "PCMU" => false,
                    "PCMA" => true,
                    _ => return Err(format!("--codec: PCMU or PCMA, not {v:?}")),
                }
            }
            "--hold" => c.hold = secs(&name, value(&name)?)?,
            "--rtp-base" => c.rtp_base = num(&name, value(&name)?)?,
            "--fill" => {
                let v = value(&name)?;
                c.fill = u8::from_str_radix(v.trim_start_matches("0x"), 16)
                    .map_err(|_| format!("--fill: a byte in hex, not {v:?}"))?;
            }
            "--duration" => c.duration = secs(&name, value(&name)?)?,
            "--stop-file" => c.stop_file = Some(PathBuf::from(value(&name)?)),
            "--progress" => c.progress = secs(&name, value(&name)?)?,
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    if c.agents == 0 {
        return Err("--agents must be at least 1".into());
    }
    if c.reg_rate.is_nan() || c.reg_rate <= 0.0 {
        return Err("--reg-rate must be > 0".into());
    }
    Ok(c)
}

// ---------------------------------------------------------------------------------------
// SIP parsing, RTP header and histograms: shared with the other generator.

#[path = "common/wire.rs"]
#[allow(dead_code)] // each generator uses its own part of it
mod wire;
use wire::*;

/// `name=value` or `name="value"` from a Digest challenge (RFC 7616 §3.3).
fn auth_param<'a>(challenge: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let mut rest = challenge.strip_prefix(b"Digest").unwrap_or(challenge);
    loop {
        rest = trim(rest);
        rest = rest.strip_prefix(b",").map(trim).unwrap_or(rest);
        if rest.is_empty() {
            return None;
        }
        let eq = rest.iter().position(|&b| b == b'=')?;
        let key = trim(&rest[..eq]);
        let after = trim(&rest[eq + 1..]);
        let (val, next) = if let Some(q) = after.strip_prefix(b"\"") {
            let end = q.iter().position(|&b| b == b'"')?;
            (&q[..end], &q[end + 1..])
        } else {
            let end = after.iter().position(|&b| b == b',').unwrap_or(after.len());
            (trim(&after[..end]), &after[end..])
        };
        if key.eq_ignore_ascii_case(name.as_bytes()) {
            return Some(val);
        }
        rest = next;
    }
}

/// `expires=` of the Contact in a REGISTER's 200 (the granted time, §10.3 step 8).
fn contact_expires(contact: &[u8]) -> Option<u64> {
    let i = find(contact, b";expires=")?;
    let v = &contact[i + 9..];
    let end = v
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(v.len());
    parse_u64(&v[..end])
}

/// RTP destination from the engine's SDP offer, and which of PCMU/PCMA it offered.
fn parse_sdp(body: &[u8]) -> (Option<SocketAddr>, bool, bool) {
    let mut ip: Option<IpAddr> = None;
    let mut port: Option<u16> = None;
    let (mut pcmu, mut pcma) = (false, false);
    let mut rest = body;
    while !rest.is_empty() {
        let (line, after) = next_line(rest);
        rest = after;
        let line = trim(line);
        if let Some(c) = line.strip_prefix(b"c=") {
            if let Some(addr) = c.rsplit(|&b| b == b' ').next() {
                let addr = addr.split(|&b| b == b'/').next().unwrap_or(addr);
                if let Some(a) = std::str::from_utf8(addr).ok().and_then(|s| s.parse().ok()) {
                    ip = Some(a);
                }
            }
        } else if let Some(mline) = line.strip_prefix(b"m=audio ") {
            let mut f = mline.split(|&b| b == b' ');
            port = f
                .next()
                .and_then(parse_u64)
                .and_then(|p| u16::try_from(p).ok());
            for pt in f.skip(1) {
                match parse_u64(pt) {
                    Some(0) => pcmu = true,
                    Some(8) => pcma = true,
                    _ => {}
                }
            }
        }
    }
    match (ip, port) {
        (Some(ip), Some(port)) if port != 0 && !ip.is_unspecified() => {
            (Some(SocketAddr::new(ip, port)), pcmu, pcma)
        }
        _ => (None, pcmu, pcma),
    }
}

/// A payload of one repeated byte that is not G.711 silence (µ-law 0xFF/0x7F, A-law
/// 0xD5/0x55): what the load generators send (`--fill`), and what no prompt contains. G.711
/// transcoding maps sample by sample, so a uniform payload stays uniform through the relay.
fn is_marker_payload(p: &[u8]) -> bool {
    p.len() >= 80 && !matches!(p[0], 0xFF | 0x7F | 0xD5 | 0x55) && p.iter().all(|&b| b == p[0])
}

fn md5_hex(data: &str) -> String {
    let d = Md5::digest(data.as_bytes());
    let mut s = String::with_capacity(32);
    for b in d.iter() {
        let _ = write!(s, "{b:02x}");
    }
    s
}

// ---------------------------------------------------------------------------------------
// Per-agent state

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Reg {
    /// Not yet started, or waiting to refresh.
    Idle,
    /// REGISTER sent; `authed`: it carried credentials.
    Sent {
        authed: bool,
    },
    Registered,
    Failed,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum CallSt {
    Free,
    /// 200 sent, waiting for the ACK.
    Answered,
    Talking,
    Byeing,
}

/// The received RTP of one call (callgen's accounting; one SSRC expected per leg).
#[derive(Default, Clone, Copy)]
struct RxStream {
    packets: u64,
    dups: u64,
    reordered: u64,
    relayed: u64,
    wrong_pt: u64,
    ssrc: u32,
    base_ext: i64,
    max_ext: i64,
    seen: u64,
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
}

struct Agent {
    user: u64,
    sip: UdpSocket,
    sip_local: SocketAddr,
    rtp: UdpSocket,
    rtp_port: u16,
    // registration
    reg: Reg,
    reg_cseq: u32,
    reg_timer: u32,
    reg_sent_at: Instant,
    reg_rt: Duration,
    reg_challenge: Option<(String, String, Option<String>)>, // nonce, opaque, realm
    reg_nc: u32,
    ever_registered: bool,
    // the current call
    call: CallSt,
    call_epoch: u32,
    call_timer: u32,
    call_id: Vec<u8>,
    /// Call-IDs of the last few ended calls: a retransmitted INVITE of one of them that was
    /// still queued on the socket (agentgen starved) belongs to a finished transaction and
    /// must not be answered as a new call (RFC 3261 §17.2.1: a UA absorbs it).
    ended_ids: std::collections::VecDeque<Vec<u8>>,
    invite_resp: Vec<u8>,
    invite_src: SocketAddr,
    answered_at: Instant,
    rt: Duration,
    peer_from: Vec<u8>,
    our_to: Vec<u8>,
    peer_contact: Vec<u8>,
    remote_rtp: Option<SocketAddr>,
    bye_at: Instant,
    rx: RxStream,
    tx_on: bool,
    tx_start: Instant,
    tx_n: u64,
    tx_seq: u16,
    tx_ts0: u32,
    tx_ssrc: u32,
}

#[derive(Default)]
struct Counters {
    registered_first: u64,
    refreshes: u64,
    reg_401: u64,
    reg_rejected: u64,
    reg_timeouts: u64,
    reg_retrans: u64,
    invites: u64,
    invite_retrans_rx: u64,
    stale_invites: u64,
    busy_486: u64,
    no_usable_offer: u64,
    acked: u64,
    ack_timeouts: u64,
    ended_by_engine: u64,
    ended_by_us: u64,
    bye_timeouts: u64,
    bye_errors: u64,
    cancels: u64,
    other_requests: u64,
    sip_unparsable: u64,
    sip_stray: u64,
    ok_retrans: u64,
    // RTP received
    rtp_rx: u64,
    rtp_lost: u64,
    calls_with_loss: u64,
    rtp_dups: u64,
    rtp_reordered: u64,
    rtp_ssrc_changes: u64,
    rtp_relayed: u64,
    rtp_wrong_pt: u64,
    rtp_wrong_source: u64,
    rtp_stray: u64,
    calls_ended: u64,
    calls_without_rtp: u64,
    calls_without_relayed: u64,
    // RTP sent
    rtp_tx: u64,
    rtp_tx_errors: u64,
    rtp_tx_late_skips: u64,
    stalls_over_10ms: u64,
    stall_max_us: u64,
}

// ---------------------------------------------------------------------------------------
// The generator

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Reg,
    Call,
}

struct Gen {
    cfg: Config,
    run: u32,
    start: Instant,
    poll: Poll,
    agents: Vec<Agent>,
    heap: BinaryHeap<Reverse<(Instant, u32, Kind, u32)>>,
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
    interarrival: Hist,
    reported_all: bool,
    all_registered_after: Option<Duration>,
}

fn is_fd_limit(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(23) | Some(24))
}

impl Gen {
    fn new(cfg: Config) -> Result<Gen, String> {
        let poll = Poll::new().map_err(|e| format!("epoll: {e}"))?;
        let now = Instant::now();
        let mut agents = Vec::with_capacity(cfg.agents);
        let mut port = cfg.rtp_base as u32;
        let fd_hint = |e: &std::io::Error, n: usize| {
            format!(
                "{e} after {n} agents; agentgen needs two descriptors per agent: run `ulimit -n 65536` first"
            )
        };
        for i in 0..cfg.agents {
            let mut sip = UdpSocket::bind(SocketAddr::new(cfg.local, 0)).map_err(|e| {
                if is_fd_limit(&e) {
                    fd_hint(&e, i)
                } else {
                    format!("binding a SIP socket on {}: {e}", cfg.local)
                }
            })?;
            let sip_local = sip.local_addr().map_err(|e| e.to_string())?;
            let mut rtp = loop {
                if port > 65534 {
                    return Err(format!(
                        "ran out of RTP ports above --rtp-base {} after {i} agents",
                        cfg.rtp_base
                    ));
                }
                let addr = SocketAddr::new(cfg.local, port as u16);
                port += 2;
                match UdpSocket::bind(addr) {
                    Ok(s) => break s,
                    Err(e) if e.kind() == ErrorKind::AddrInUse => continue,
                    Err(e) if is_fd_limit(&e) => return Err(fd_hint(&e, i)),
                    Err(e) => return Err(format!("binding RTP socket {addr}: {e}")),
                }
            };
            let rtp_port = rtp.local_addr().map_err(|e| e.to_string())?.port();
            poll.registry()
                .register(&mut sip, Token(2 * i), Interest::READABLE)
                .map_err(|e| e.to_string())?;
            poll.registry()
                .register(&mut rtp, Token(2 * i + 1), Interest::READABLE)
                .map_err(|e| e.to_string())?;
            agents.push(Agent {
                user: cfg.base_user + i as u64,
                sip,
                sip_local,
                rtp,
                rtp_port,
                reg: Reg::Idle,
                reg_cseq: 0,
                reg_timer: 0,
                reg_sent_at: now,
                reg_rt: T1,
                reg_challenge: None,
                reg_nc: 0,
                ever_registered: false,
                call: CallSt::Free,
                call_epoch: 0,
                call_timer: 0,
                call_id: Vec::with_capacity(96),
                ended_ids: std::collections::VecDeque::with_capacity(4),
                invite_resp: Vec::with_capacity(1024),
                invite_src: cfg.target,
                answered_at: now,
                rt: T1,
                peer_from: Vec::with_capacity(128),
                our_to: Vec::with_capacity(128),
                peer_contact: Vec::with_capacity(96),
                remote_rtp: None,
                bye_at: now,
                rx: RxStream::default(),
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
        let pt = if cfg.pcma { 8 } else { 0 };
        let mut rtp_out = [cfg.fill; RTP_LEN];
        rtp_header(&mut rtp_out, false, pt, 0, 0, 0);
        let n = agents.len();
        let mut g = Gen {
            run: 0,
            start: Instant::now(),
            poll,
            agents,
            heap: BinaryHeap::with_capacity(n * 4),
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
            interarrival: Hist::linear(100, 100_000),
            reported_all: false,
            all_registered_after: None,
            cfg,
        };
        g.run = g.random() as u32;
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

    fn pt(&self) -> u8 {
        if self.cfg.pcma { 8 } else { 0 }
    }

    fn ms_since_start(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.start).as_millis() as u64
    }

    fn set_timer(&mut self, i: u32, kind: Kind, at: Instant) {
        let a = &mut self.agents[i as usize];
        let gen_ = match kind {
            Kind::Reg => {
                a.reg_timer = a.reg_timer.wrapping_add(1);
                a.reg_timer
            }
            Kind::Call => {
                a.call_timer = a.call_timer.wrapping_add(1);
                a.call_timer
            }
        };
        self.heap.push(Reverse((at, i, kind, gen_)));
    }

    fn send(&mut self, i: u32, to: SocketAddr) {
        let _ = self.agents[i as usize].sip.send_to(&self.out, to);
    }

    // ---- registration ----

    fn build_register(&mut self, i: u32) {
        let cfg = &self.cfg;
        let a = &self.agents[i as usize];
        let (user, me, run, target) = (a.user, a.sip_local, self.run, cfg.target);
        self.out.clear();
        let _ = write!(
            self.out,
            "REGISTER sip:{target} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {me};branch=z9hG4bK{run:08x}r{user}c{cseq};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{user}@{target}>;tag=ag{run:08x}{user}\r\n\
             To: <sip:{user}@{target}>\r\n\
             Call-ID: agreg-{run:08x}-{user}@{local}\r\n\
             CSeq: {cseq} REGISTER\r\n\
             Contact: <sip:{user}@{me};transport=udp>\r\n\
             Expires: {exp}\r\n\
             User-Agent: phonetree-agentgen\r\n",
            cseq = a.reg_cseq,
            local = cfg.local,
            exp = cfg.expires,
        );
        if let (Reg::Sent { authed: true }, Some((nonce, opaque, realm))) =
            (a.reg, a.reg_challenge.as_ref())
        {
            // RFC 7616 §3.4.1 with qop=auth: response = H(HA1:nonce:nc:cnonce:qop:H(method:uri)).
            let realm = realm.as_deref().unwrap_or(&cfg.realm);
            let uri = format!("sip:{target}");
            let ha1 = md5_hex(&format!("{user}:{realm}:{}{user}", cfg.password_prefix));
            let ha2 = md5_hex(&format!("REGISTER:{uri}"));
            let nc = format!("{:08x}", a.reg_nc);
            let cnonce = format!("{run:08x}{user:x}{:x}", a.reg_cseq);
            let resp = md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
            let _ = write!(
                self.out,
                "Authorization: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", \
                 uri=\"{uri}\", response=\"{resp}\", algorithm=MD5, cnonce=\"{cnonce}\", qop=auth, \
                 nc={nc}, opaque=\"{opaque}\"\r\n"
            );
        }
        self.out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    }

    fn send_register(&mut self, i: u32, authed: bool, now: Instant) {
        let a = &mut self.agents[i as usize];
        a.reg_cseq += 1;
        a.reg = Reg::Sent { authed };
        a.reg_sent_at = now;
        a.reg_rt = T1;
        if authed {
            a.reg_nc += 1;
        }
        self.build_register(i);
        let to = self.cfg.target;
        self.send(i, to);
        self.set_timer(i, Kind::Reg, now + T1);
    }

    fn on_reg_timer(&mut self, i: u32, now: Instant) {
        match self.agents[i as usize].reg {
            Reg::Idle | Reg::Registered => {
                if self.agents[i as usize].reg == Reg::Registered {
                    self.c.refreshes += 1;
                }
                self.send_register(i, false, now)
            }
            Reg::Sent { .. } => {
                let a = &mut self.agents[i as usize];
                if now.duration_since(a.reg_sent_at) >= TIMER_F {
                    self.c.reg_timeouts += 1;
                    a.reg = Reg::Failed;
                    return;
                }
                // Timer E (§17.1.2.2): the same request again.
                a.reg_rt = (a.reg_rt * 2).min(T2);
                let at = (now + a.reg_rt).min(a.reg_sent_at + TIMER_F);
                self.c.reg_retrans += 1;
                self.build_register(i);
                let to = self.cfg.target;
                self.send(i, to);
                self.set_timer(i, Kind::Reg, at);
            }
            Reg::Failed => {}
        }
    }

    fn on_register_response(&mut self, i: u32, m: &Msg<'_>, now: Instant) {
        let a = &self.agents[i as usize];
        let Reg::Sent { authed } = a.reg else {
            self.c.sip_stray += 1;
            return;
        };
        let cseq = m
            .cseq
            .split(|&b| b == b' ')
            .next()
            .and_then(parse_u64)
            .unwrap_or(0);
        if cseq != a.reg_cseq as u64 || m.status < 200 {
            return; // a retransmission's answer or a provisional
        }
        match m.status {
            401 | 407 => {
                let ch = m.www_authenticate;
                let stale =
                    auth_param(ch, "stale").is_some_and(|v| v.eq_ignore_ascii_case(b"true"));
                let nonce =
                    auth_param(ch, "nonce").map(|v| String::from_utf8_lossy(v).into_owned());
                if authed && !stale {
                    // Our credentials were refused: a wrong password or a broken digest.
                    self.c.reg_rejected += 1;
                    self.agents[i as usize].reg = Reg::Failed;
                    return;
                }
                let Some(nonce) = nonce else {
                    self.c.reg_rejected += 1;
                    self.agents[i as usize].reg = Reg::Failed;
                    return;
                };
                self.c.reg_401 += 1;
                let opaque = auth_param(ch, "opaque")
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                let realm =
                    auth_param(ch, "realm").map(|v| String::from_utf8_lossy(v).into_owned());
                let a = &mut self.agents[i as usize];
                a.reg_challenge = Some((nonce, opaque, realm));
                a.reg_nc = 0;
                self.send_register(i, true, now);
            }
            200..=299 => {
                let granted = contact_expires(m.contact)
                    .or(m.expires)
                    .unwrap_or(self.cfg.expires)
                    .max(1);
                let a = &mut self.agents[i as usize];
                a.reg = Reg::Registered;
                if !a.ever_registered {
                    a.ever_registered = true;
                    self.c.registered_first += 1;
                }
                // Refresh at 80 % of the granted time, before the binding expires.
                let at = now + Duration::from_millis(granted * 800);
                self.set_timer(i, Kind::Reg, at);
            }
            _ => {
                self.c.reg_rejected += 1;
                self.agents[i as usize].reg = Reg::Failed;
            }
        }
    }

    // ---- calls ----

    /// A response to the engine's request `m` (copying Via, From, Call-ID, CSeq; To with
    /// our tag when `to_tag`).
    fn build_response(&mut self, m: &Msg<'_>, code: u16, reason: &str, to: &[u8]) {
        self.out.clear();
        let _ = write!(self.out, "SIP/2.0 {code} {reason}\r\n");
        for v in &m.vias[..m.n_via] {
            self.out.extend_from_slice(b"Via: ");
            self.out.extend_from_slice(v);
            self.out.extend_from_slice(b"\r\n");
        }
        for (name, v) in [
            (&b"From: "[..], m.from),
            (b"To: ", to),
            (b"Call-ID: ", m.call_id),
            (b"CSeq: ", m.cseq),
        ] {
            self.out.extend_from_slice(name);
            self.out.extend_from_slice(v);
            self.out.extend_from_slice(b"\r\n");
        }
    }

    fn on_invite(&mut self, i: u32, m: &Msg<'_>, from: SocketAddr, now: Instant) {
        let a = &self.agents[i as usize];
        if a.ended_ids.iter().any(|id| id.as_slice() == m.call_id) {
            self.c.stale_invites += 1;
            return;
        }
        if a.call != CallSt::Free {
            if a.call_id == m.call_id {
                // The engine retransmitted its INVITE: our 200 is on its way or was lost.
                self.c.invite_retrans_rx += 1;
                if a.call == CallSt::Answered {
                    let resp = a.invite_resp.clone();
                    let _ = self.agents[i as usize].sip.send_to(&resp, from);
                }
                return;
            }
            self.c.busy_486 += 1;
            let to = m.to.to_vec();
            self.build_response(m, 486, "Busy Here", &to);
            self.out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
            self.send(i, from);
            return;
        }
        self.c.invites += 1;
        let (rtp, pcmu, pcma) = parse_sdp(m.body);
        let offered = if self.cfg.pcma { pcma } else { pcmu };
        if rtp.is_none() || !offered {
            self.c.no_usable_offer += 1;
            let to = m.to.to_vec();
            self.build_response(m, 488, "Not Acceptable Here", &to);
            self.out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
            self.send(i, from);
            return;
        }
        let (ssrc, ts0, seq0) = (
            self.random() as u32,
            self.random() as u32,
            self.random() as u16,
        );
        let (pt, name) = if self.cfg.pcma {
            (8, "PCMA")
        } else {
            (0, "PCMU")
        };
        let a = &mut self.agents[i as usize];
        a.call = CallSt::Answered;
        a.call_epoch = a.call_epoch.wrapping_add(1);
        a.call_id.clear();
        a.call_id.extend_from_slice(m.call_id);
        a.invite_src = from;
        a.answered_at = now;
        a.rt = T1;
        a.peer_from.clear();
        a.peer_from.extend_from_slice(m.from);
        a.our_to.clear();
        a.our_to.extend_from_slice(m.to);
        let _ = write!(a.our_to, ";tag=agt{}x{}", a.user, a.call_epoch);
        a.peer_contact.clear();
        a.peer_contact.extend_from_slice(m.contact_uri);
        a.remote_rtp = rtp;
        a.rx = RxStream::default();
        a.tx_on = false;
        a.tx_ssrc = ssrc;
        a.tx_ts0 = ts0;
        a.tx_seq = seq0;
        a.tx_n = 0;
        let (user, me, port, local, epoch) = (
            a.user,
            a.sip_local,
            a.rtp_port,
            self.cfg.local,
            a.call_epoch,
        );
        let to = a.our_to.clone();
        self.body.clear();
        let ipv = if local.is_ipv4() { "IP4" } else { "IP6" };
        let _ = write!(
            self.body,
            "v=0\r\no=agent{user} {epoch} 1 IN {ipv} {local}\r\ns=agentgen\r\nc=IN {ipv} {local}\r\n\
             t=0 0\r\nm=audio {port} RTP/AVP {pt}\r\na=rtpmap:{pt} {name}/8000\r\na=ptime:20\r\na=sendrecv\r\n"
        );
        self.build_response(m, 200, "OK", &to);
        let _ = write!(
            self.out,
            "Contact: <sip:{user}@{me};transport=udp>\r\nContent-Type: application/sdp\r\n\
             Content-Length: {}\r\n\r\n",
            self.body.len()
        );
        self.out.extend_from_slice(&self.body);
        let a = &mut self.agents[i as usize];
        a.invite_resp.clear();
        a.invite_resp.extend_from_slice(&self.out);
        self.send(i, from);
        self.set_timer(i, Kind::Call, now + T1);
    }

    fn on_ack(&mut self, i: u32, m: &Msg<'_>, now: Instant) {
        let a = &mut self.agents[i as usize];
        if a.call != CallSt::Answered || a.call_id != m.call_id {
            return;
        }
        self.c.acked += 1;
        a.call = CallSt::Talking;
        a.tx_on = true;
        a.tx_start = now;
        let epoch = a.call_epoch;
        let m_ = self.ms_since_start(now).max(self.wheel_cursor);
        self.wheel[(m_ as usize) % WHEEL].push((i, epoch));
        self.wheel_len += 1;
        if self.cfg.hold.is_zero() {
            // Nothing to time until the engine's BYE.
            let a = &mut self.agents[i as usize];
            a.call_timer = a.call_timer.wrapping_add(1);
        } else {
            let at = now + self.cfg.hold;
            self.set_timer(i, Kind::Call, at);
        }
    }

    fn build_bye(&mut self, i: u32) {
        let a = &self.agents[i as usize];
        self.out.clear();
        self.out.extend_from_slice(b"BYE ");
        if a.peer_contact.is_empty() {
            let _ = write!(self.out, "sip:{}", self.cfg.target);
        } else {
            self.out.extend_from_slice(&a.peer_contact);
        }
        let _ = write!(
            self.out,
            " SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK{:08x}b{}x{};rport\r\nMax-Forwards: 70\r\nFrom: ",
            a.sip_local, self.run, a.user, a.call_epoch
        );
        self.out.extend_from_slice(&a.our_to);
        self.out.extend_from_slice(b"\r\nTo: ");
        self.out.extend_from_slice(&a.peer_from);
        self.out.extend_from_slice(b"\r\nCall-ID: ");
        self.out.extend_from_slice(&a.call_id);
        self.out
            .extend_from_slice(b"\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n");
    }

    fn on_call_timer(&mut self, i: u32, now: Instant) {
        let a = &mut self.agents[i as usize];
        match a.call {
            CallSt::Free => {}
            CallSt::Answered => {
                if now.duration_since(a.answered_at) >= TIMER_F {
                    // §13.3.1.4: no ACK in 64·T1; the call is over.
                    self.c.ack_timeouts += 1;
                    self.end_call(i);
                    return;
                }
                a.rt = (a.rt * 2).min(T2);
                let at = now + a.rt;
                let (resp, to) = (a.invite_resp.clone(), a.invite_src);
                let _ = a.sip.send_to(&resp, to);
                self.c.ok_retrans += 1;
                self.set_timer(i, Kind::Call, at);
            }
            CallSt::Talking => {
                a.call = CallSt::Byeing;
                a.tx_on = false;
                a.bye_at = now;
                a.rt = T1;
                let to = a.invite_src;
                self.build_bye(i);
                self.send(i, to);
                self.set_timer(i, Kind::Call, now + T1);
            }
            CallSt::Byeing => {
                if now.duration_since(a.bye_at) >= TIMER_F {
                    self.c.bye_timeouts += 1;
                    self.end_call(i);
                    return;
                }
                a.rt = (a.rt * 2).min(T2);
                let at = now + a.rt;
                let to = a.invite_src;
                self.build_bye(i);
                self.send(i, to);
                self.set_timer(i, Kind::Call, at);
            }
        }
    }

    fn end_call(&mut self, i: u32) {
        let a = &mut self.agents[i as usize];
        if a.call == CallSt::Free {
            return;
        }
        let was_talking = matches!(a.call, CallSt::Talking | CallSt::Byeing);
        a.call = CallSt::Free;
        a.tx_on = false;
        a.remote_rtp = None;
        if a.ended_ids.len() == 4 {
            a.ended_ids.pop_front();
        }
        let id = std::mem::take(&mut a.call_id);
        a.ended_ids.push_back(id);
        a.call_timer = a.call_timer.wrapping_add(1);
        let rx = a.rx;
        self.fold(&rx);
        if was_talking {
            self.c.calls_ended += 1;
            if rx.packets == 0 {
                self.c.calls_without_rtp += 1;
            }
            if rx.relayed == 0 {
                self.c.calls_without_relayed += 1;
            }
        }
    }

    fn fold(&mut self, rx: &RxStream) {
        let c = &mut self.c;
        c.rtp_rx += rx.packets;
        let lost = rx.lost();
        c.rtp_lost += lost;
        if lost > 0 {
            c.calls_with_loss += 1;
        }
        c.rtp_dups += rx.dups;
        c.rtp_reordered += rx.reordered;
        c.rtp_relayed += rx.relayed;
        c.rtp_wrong_pt += rx.wrong_pt;
    }

    fn on_sip(&mut self, i: u32, len: usize, from: SocketAddr, now: Instant) {
        // The parsed message borrows the receive buffer while we write `out`: move it out
        // for the duration (no allocation: it is put back).
        let buf = std::mem::take(&mut self.rx_buf);
        match parse_sip(&buf[..len]) {
            None => self.c.sip_unparsable += 1,
            Some(m) if m.status != 0 => {
                if m.cseq_method.eq_ignore_ascii_case(b"REGISTER") {
                    self.on_register_response(i, &m, now);
                } else if m.cseq_method.eq_ignore_ascii_case(b"BYE") {
                    let a = &self.agents[i as usize];
                    if a.call == CallSt::Byeing && a.call_id == m.call_id && m.status >= 200 {
                        if m.status < 300 {
                            self.c.ended_by_us += 1;
                        } else {
                            self.c.bye_errors += 1;
                        }
                        self.end_call(i);
                    }
                } else {
                    self.c.sip_stray += 1;
                }
            }
            Some(m) => match m.method {
                b"INVITE" => self.on_invite(i, &m, from, now),
                b"ACK" => self.on_ack(i, &m, now),
                b"BYE" => {
                    let to = m.to.to_vec();
                    self.build_response(&m, 200, "OK", &to);
                    self.out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
                    self.send(i, from);
                    let a = &self.agents[i as usize];
                    if a.call != CallSt::Free && a.call_id == m.call_id {
                        self.c.ended_by_engine += 1;
                        self.end_call(i);
                    } else {
                        self.c.sip_stray += 1;
                    }
                }
                b"CANCEL" => {
                    // We answer at once, so a CANCEL crosses our 200 (§9.2): 200 to the
                    // CANCEL, and the INVITE stays answered (the engine BYEs it).
                    self.c.cancels += 1;
                    let to = m.to.to_vec();
                    self.build_response(&m, 200, "OK", &to);
                    self.out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
                    self.send(i, from);
                }
                _ => {
                    self.c.other_requests += 1;
                    let to = m.to.to_vec();
                    self.build_response(&m, 200, "OK", &to);
                    self.out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
                    self.send(i, from);
                }
            },
        }
        self.rx_buf = buf;
    }

    fn on_rtp(&mut self, i: usize) {
        let mut errors = 0;
        let our_pt = self.pt();
        loop {
            let (n, src) = match self.agents[i].rtp.recv_from(&mut self.rx_buf) {
                Ok(x) => x,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) if errors < 16 => {
                    errors += 1;
                    continue;
                }
                Err(_) => return,
            };
            let now = Instant::now();
            let a = &mut self.agents[i];
            if !matches!(a.call, CallSt::Talking | CallSt::Byeing) {
                self.c.rtp_stray += 1;
                continue;
            }
            if Some(src) != a.remote_rtp {
                self.c.rtp_wrong_source += 1;
                continue;
            }
            let p = &self.rx_buf[..n];
            if n < 12 || p[0] >> 6 != 2 {
                continue;
            }
            let pt = p[1] & 0x7F;
            let seq = u16::from_be_bytes([p[2], p[3]]);
            let ts = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
            let ssrc = u32::from_be_bytes([p[8], p[9], p[10], p[11]]);
            let cc = (p[0] & 0x0F) as usize;
            let payload = p.get(12 + 4 * cc..).unwrap_or(&[]);
            let rx = &mut a.rx;
            if pt != our_pt {
                rx.wrong_pt += 1;
            } else if is_marker_payload(payload) {
                rx.relayed += 1;
            }
            if rx.packets > 0 && rx.ssrc != ssrc {
                // The engine is one endpoint to us (a B2BUA): its stream should keep one
                // SSRC across whisper → caller. Count it and start a new stream.
                self.c.rtp_ssrc_changes += 1;
                let old = a.rx;
                a.rx = RxStream::default();
                self.fold(&old);
            }
            let rx = &mut self.agents[i].rx;
            if rx.packets == 0 {
                *rx = RxStream {
                    packets: 1,
                    ssrc,
                    base_ext: seq as i64,
                    max_ext: seq as i64,
                    seen: 1,
                    last_arrival: Some(now),
                    last_ts: ts,
                    relayed: rx.relayed,
                    wrong_pt: rx.wrong_pt,
                    ..RxStream::default()
                };
                continue;
            }
            rx.packets += 1;
            let delta = seq.wrapping_sub(rx.max_ext as u16) as i16 as i64;
            if delta > 0 {
                if delta == 1 {
                    let d_arr = now
                        .duration_since(rx.last_arrival.unwrap_or(now))
                        .as_micros() as i64;
                    let d_ts = ts.wrapping_sub(rx.last_ts) as i32 as i64 * 125;
                    // Only the steady 20 ms frames: the timestamp jump where the engine
                    // switches from the whisper to the relayed caller is not pacing.
                    if d_ts == FRAME_US {
                        self.interarrival.record((d_arr - d_ts).unsigned_abs());
                    }
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
                rx.reordered += 1;
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
        let pt = self.pt();
        let a = &mut self.agents[i as usize];
        if a.call_epoch != epoch || !a.tx_on {
            return;
        }
        let Some(dst) = a.remote_rtp else { return };
        let ts = a.tx_ts0.wrapping_add((a.tx_n as u32).wrapping_mul(160));
        rtp_header(&mut self.rtp_out, a.tx_n == 0, pt, a.tx_seq, ts, a.tx_ssrc);
        match a.rtp.send_to(&self.rtp_out, dst) {
            Ok(_) => self.c.rtp_tx += 1,
            Err(_) => self.c.rtp_tx_errors += 1,
        }
        a.tx_seq = a.tx_seq.wrapping_add(1);
        a.tx_n += 1;
        let mut next = a.tx_start + FRAME * a.tx_n as u32;
        if next + FRAME < now {
            // More than a frame behind (agentgen starved): skip, keep the grid.
            let behind = now.duration_since(a.tx_start).as_micros() as u64 / 20_000;
            a.tx_n = behind + 1;
            next = a.tx_start + FRAME * a.tx_n as u32;
            self.c.rtp_tx_late_skips += 1;
        }
        let m = self.ms_since_start(next).max(self.wheel_cursor + 1);
        self.wheel[(m as usize) % WHEEL].push((i, epoch));
        self.wheel_len += 1;
    }

    fn stall(&mut self, late: Duration) {
        let us = late.as_micros() as u64;
        if us > 10_000 {
            self.c.stalls_over_10ms += 1;
        }
        self.c.stall_max_us = self.c.stall_max_us.max(us);
    }

    fn count(&self, f: impl Fn(&Agent) -> bool) -> usize {
        self.agents.iter().filter(|a| f(a)).count()
    }

    fn run(&mut self) {
        let mut events = Events::with_capacity(4096);
        let interval = Duration::from_secs_f64(1.0 / self.cfg.reg_rate);
        let mut next_reg = 0usize;
        let end_at = self.start + self.cfg.duration;
        let mut next_check = self.start;
        let mut next_progress = self.start + self.cfg.progress;
        loop {
            let now = Instant::now();
            let mut deadline = (now + Duration::from_millis(250))
                .min(end_at)
                .min(next_check);
            if let Some(Reverse((at, ..))) = self.heap.peek() {
                deadline = deadline.min(*at);
            }
            if self.wheel_len > 0 {
                deadline = deadline.min(self.start + Duration::from_millis(self.wheel_cursor));
            }
            if next_reg < self.agents.len() {
                deadline = deadline.min(self.start + interval * next_reg as u32);
            }
            if !self.cfg.progress.is_zero() {
                deadline = deadline.min(next_progress);
            }
            if let Err(e) = self
                .poll
                .poll(&mut events, Some(deadline.saturating_duration_since(now)))
                && e.kind() != ErrorKind::Interrupted
            {
                eprintln!("agentgen: poll: {e}");
                return;
            }
            let woke = Instant::now();
            self.stall(woke.saturating_duration_since(deadline + Duration::from_millis(1)));
            for ev in events.iter() {
                let t = ev.token().0;
                let i = t / 2;
                if t % 2 == 1 {
                    self.on_rtp(i);
                    continue;
                }
                let mut errors = 0;
                loop {
                    match self.agents[i].sip.recv_from(&mut self.rx_buf) {
                        Ok((n, from)) => self.on_sip(i as u32, n, from, Instant::now()),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(_) if errors < 16 => errors += 1,
                        Err(_) => break,
                    }
                }
            }
            let now = Instant::now();
            while let Some(&Reverse((at, i, kind, g))) = self.heap.peek() {
                if at > now {
                    break;
                }
                self.heap.pop();
                let a = &self.agents[i as usize];
                match kind {
                    Kind::Reg if a.reg_timer == g => self.on_reg_timer(i, now),
                    Kind::Call if a.call_timer == g => self.on_call_timer(i, now),
                    _ => {}
                }
            }
            if self.wheel_len > 0 {
                self.wheel_run(now);
            } else {
                self.wheel_cursor = self.ms_since_start(now) + 1;
            }
            while next_reg < self.agents.len() && self.start + interval * next_reg as u32 <= now {
                self.send_register(next_reg as u32, false, now);
                next_reg += 1;
            }
            if !self.reported_all && self.c.registered_first as usize == self.agents.len() {
                self.reported_all = true;
                let after = now.duration_since(self.start);
                self.all_registered_after = Some(after);
                eprintln!(
                    "agentgen: all {} agents registered in {:.2} s",
                    self.agents.len(),
                    after.as_secs_f64()
                );
            }
            if !self.cfg.progress.is_zero() && now >= next_progress {
                let on_call = self.count(|a| a.call != CallSt::Free);
                let reg = self.count(|a| a.reg == Reg::Registered);
                eprintln!(
                    "[agentgen {:6.1}s] registered {reg}/{} | on call {on_call} | invites {} acked {} ended by engine {} by us {} | rtp tx {} rx(ended calls) {} lost {} relayed {}",
                    now.duration_since(self.start).as_secs_f64(),
                    self.agents.len(),
                    self.c.invites,
                    self.c.acked,
                    self.c.ended_by_engine,
                    self.c.ended_by_us,
                    self.c.rtp_tx,
                    self.c.rtp_rx,
                    self.c.rtp_lost,
                    self.c.rtp_relayed,
                );
                next_progress += self.cfg.progress;
                if next_progress <= now {
                    next_progress = now + self.cfg.progress;
                }
            }
            self.stall(Instant::now().saturating_duration_since(woke));
            if now >= end_at {
                return;
            }
            if now >= next_check {
                next_check = now + Duration::from_millis(250);
                if let Some(p) = &self.cfg.stop_file
                    && p.exists()
                {
                    return;
                }
            }
        }
    }

    /// Calls still up at the end are folded into the totals as they stand.
    fn finish(&mut self) -> u64 {
        let mut open = 0;
        for i in 0..self.agents.len() as u32 {
            if self.agents[i as usize].call != CallSt::Free {
                open += 1;
                self.end_call(i);
            }
        }
        open
    }

    fn own_cpu_seconds() -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let after = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        Some(ticks as f64 / 100.0) // USER_HZ is 100 on Linux
    }

    fn clean(&self) -> bool {
        let c = &self.c;
        c.registered_first as usize == self.agents.len()
            && c.reg_rejected + c.reg_timeouts == 0
            && c.ack_timeouts + c.bye_timeouts + c.bye_errors + c.no_usable_offer == 0
    }

    fn report_json(&self, elapsed: f64, open: u64) -> String {
        let c = &self.c;
        let ia = &self.interarrival;
        let mut j = String::with_capacity(2048);
        let _ = write!(
            j,
            "{{\"config\":{{\"target\":\"{}\",\"agents\":{},\"base_user\":{},\"codec\":\"{}\",\"expires\":{},\"hold_s\":{}}},\
             \"elapsed_s\":{elapsed:.3},\"agentgen_cpu_s\":{},",
            self.cfg.target,
            self.agents.len(),
            self.cfg.base_user,
            if self.cfg.pcma { "PCMA" } else { "PCMU" },
            self.cfg.expires,
            self.cfg.hold.as_secs_f64(),
            Self::own_cpu_seconds().map_or("null".into(), |s| format!("{s:.2}")),
        );
        let _ = write!(
            j,
            "\"registration\":{{\"registered\":{},\"all_registered_s\":{},\"refreshes\":{},\"challenges\":{},\"rejected\":{},\"timeouts\":{},\"retransmissions\":{},\"registered_at_end\":{}}},",
            c.registered_first,
            self.all_registered_after
                .map_or("null".into(), |d| format!("{:.3}", d.as_secs_f64())),
            c.refreshes,
            c.reg_401,
            c.reg_rejected,
            c.reg_timeouts,
            c.reg_retrans,
            self.count(|a| a.reg == Reg::Registered),
        );
        let _ = write!(
            j,
            "\"calls\":{{\"invites\":{},\"acked\":{},\"ended_by_engine\":{},\"ended_by_us\":{},\"open_at_end\":{open},\"busy_486\":{},\"no_usable_offer\":{},\"ack_timeouts\":{},\"bye_timeouts\":{},\"bye_errors\":{},\"cancels\":{},\"invite_retrans_rx\":{},\"stale_invites_ignored\":{},\"ok_retrans\":{},\"without_rtp\":{},\"without_relayed_audio\":{}}},\
             \"sip\":{{\"unparsable\":{},\"stray\":{},\"other_requests\":{}}},",
            c.invites,
            c.acked,
            c.ended_by_engine,
            c.ended_by_us,
            c.busy_486,
            c.no_usable_offer,
            c.ack_timeouts,
            c.bye_timeouts,
            c.bye_errors,
            c.cancels,
            c.invite_retrans_rx,
            c.stale_invites,
            c.ok_retrans,
            c.calls_without_rtp,
            c.calls_without_relayed,
            c.sip_unparsable,
            c.sip_stray,
            c.other_requests,
        );
        let _ = write!(
            j,
            "\"rtp_rx\":{{\"packets\":{},\"lost\":{},\"loss_pct\":{:.5},\"calls_with_loss\":{},\"duplicates\":{},\"reordered\":{},\"ssrc_changes\":{},\"relayed\":{},\"wrong_pt\":{},\"wrong_source\":{},\"stray\":{},\
             \"interarrival_dev_ms\":{{\"count\":{},\"p50\":{:.1},\"p90\":{:.1},\"p99\":{:.1},\"max\":{:.3},\"over_100ms\":{},\"within_2ms_pct\":{:.3}}}}},\
             \"rtp_tx\":{{\"packets\":{},\"errors\":{},\"late_skips\":{}}},\"agentgen_stalls\":{{\"over_10ms\":{},\"max_ms\":{:.3}}},\"clean\":{}}}",
            c.rtp_rx,
            c.rtp_lost,
            if c.rtp_rx + c.rtp_lost > 0 {
                100.0 * c.rtp_lost as f64 / (c.rtp_rx + c.rtp_lost) as f64
            } else {
                0.0
            },
            c.calls_with_loss,
            c.rtp_dups,
            c.rtp_reordered,
            c.rtp_ssrc_changes,
            c.rtp_relayed,
            c.rtp_wrong_pt,
            c.rtp_wrong_source,
            c.rtp_stray,
            ia.count,
            ms(ia.quantile(0.5)),
            ms(ia.quantile(0.9)),
            ms(ia.quantile(0.99)),
            ms(ia.max),
            ia.overflow,
            100.0 * ia.fraction_below(2_000),
            c.rtp_tx,
            c.rtp_tx_errors,
            c.rtp_tx_late_skips,
            c.stalls_over_10ms,
            ms(c.stall_max_us),
            self.clean(),
        );
        j
    }
}

fn main() -> ExitCode {
    let cfg = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("agentgen: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut g = match Gen::new(cfg) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("agentgen: {e}");
            return ExitCode::from(2);
        }
    };
    g.start = Instant::now();
    g.wheel_cursor = 0;
    g.run();
    let elapsed = g.start.elapsed().as_secs_f64();
    let open = g.finish();
    println!("{}", g.report_json(elapsed, open));
    let _ = std::io::stdout().flush();
    if g.clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
