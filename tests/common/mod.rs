//! Interop test harness: drives a real engine over loopback with tools nobody
//! here wrote (sipp, tcpdump) and checks what a caller actually heard.
//!
//! * [`start_engine`]: the engine on free ports with `tests/data/flows-e2e/` and `prompts/`.
//! * [`run_sipp`]: one sipp UAC scenario from `tests/sipp/` as a child process, bounded in time.
//! * [`Capture`]: `tcpdump -i lo` of the engine's RTP port range, stopped with SIGINT.
//! * [`read_pcap`], [`parse_rtp`], [`engine_streams`], [`ulaw_to_linear`]: a small
//!   classic-pcap reader (link types NULL, Ethernet, raw IP, Linux cooked v1/v2),
//!   RTP parsing and G.711 decoding with our own tables.
//! * [`find_prompt`], [`transcript`], [`assert_heard_in_order`]: which prompt WAVs appear
//!   in the decoded audio, where, and for how long (frame-aligned comparison of decoded PCM
//!   with a tolerance for G.711 re-encoding; never byte comparison).
//!
//! Nothing is skipped silently: a missing tool or missing privilege fails the test with
//! the command that fixes it.
#![allow(dead_code)]

pub mod baresip;
pub mod browser;

use phonetree::call::CallRecord;
use phonetree::config::Config;
use phonetree::runtime::Engine;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// Samples per 20 ms packet at 8 kHz (the engine's ptime).
pub const FRAME: usize = 160;
pub const RATE: u32 = 8000;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

// ------------------------------------------------------------------ tools

/// Path of `name` on PATH, or a panic telling how to install it.
pub fn require_tool(name: &str, install: &str) -> PathBuf {
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "interop test needs `{name}`, which is not on PATH.\n  Install it: {install}\n  \
         (these tests drive the engine with real SIP tools; they are never skipped)"
    );
}

pub fn sipp_path() -> PathBuf {
    require_tool("sipp", "sudo apt-get install -y sip-tester")
}

pub fn tcpdump_path() -> PathBuf {
    require_tool("tcpdump", "sudo apt-get install -y tcpdump")
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

const PRIVILEGE_HINT: &str = "capturing on `lo` and sipp's play_pcap_audio (raw sockets) need root or \
     CAP_NET_RAW: run the tests as root (CI: `sudo -E cargo test`), or grant the tools \
     the capability once: `sudo setcap cap_net_raw,cap_net_admin=eip $(command -v tcpdump) \
     $(command -v sipp)`";

// ------------------------------------------------------------------ scratch dirs and ports

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A per-test directory under the system temp dir; removed on success, kept (and
/// printed) when the test panics so its logs and captures can be read.
pub struct Scratch {
    pub path: PathBuf,
}

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("phonetree-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        Scratch { path }
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test artefacts kept in {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A UDP port free on 127.0.0.1 for both UDP and TCP right now.
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let port = udp.local_addr().expect("addr").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1");
}

/// `n` consecutive UDP ports, starting at an even port, all free right now and not handed
/// out before in this process (engines bind their RTP ports only when a call comes, so a
/// block that merely looks free could otherwise go to two engines). Blocks lie in
/// 20000-32767: below the kernel's ephemeral range (where `free_port` and OS-chosen
/// ports land) and above baresip's RTP range (10000-19999 in our configs). The start is
/// spread by pid so parallel test binaries rarely collide.
pub fn free_port_block(n: u16) -> (u16, u16) {
    static CLAIMED: Mutex<Vec<(u16, u16)>> = Mutex::new(Vec::new());
    let step = n.div_ceil(20).max(1) * 20;
    let slots = (32767 - 20000) / step as u32;
    let seed = std::process::id().wrapping_mul(2654435761)
        ^ COUNTER.fetch_add(1, Ordering::Relaxed) * 7919;
    let mut claimed = CLAIMED.lock().unwrap_or_else(|e| e.into_inner());
    for attempt in 0..(slots * 2) {
        let lo = 20000 + ((seed.wrapping_add(attempt * 104729) % slots) as u16) * step;
        let hi = lo + n - 1;
        if claimed.iter().any(|&(a, b)| lo <= b && a <= hi) {
            continue;
        }
        let all_free = (lo..=hi).all(|p| UdpSocket::bind(("127.0.0.1", p)).is_ok());
        if all_free {
            claimed.push((lo, hi));
            return (lo, hi);
        }
    }
    panic!("no free block of {n} UDP ports");
}

// ------------------------------------------------------------------ engine

pub struct TestEngine {
    engine: Option<Engine>,
    pub sip: SocketAddr,
    pub rtp_ports: (u16, u16),
    pub records: broadcast::Receiver<CallRecord>,
    pub scratch: Scratch,
}

/// The engine with the end-to-end flows (`tests/data/flows-e2e/`) and the demo prompts.
pub async fn start_engine(name: &str) -> TestEngine {
    start_engine_with(name, |_| {}).await
}

/// As [`start_engine`], letting the test adjust the config first (e.g. `answer_delay`).
pub async fn start_engine_with(name: &str, adjust: impl FnOnce(&mut Config)) -> TestEngine {
    init_tracing();
    let scratch = Scratch::new(name);
    let mut config = Config::for_tests(repo().join("tests/data/flows-e2e"), repo().join("prompts"));
    config.rtp_ports = free_port_block(40);
    config.data_dir = scratch.path.clone();
    // The engine's own SQLite directory lives in the scratch folder too, removed with it.
    config.directory.path = scratch.path.join("phonetree.db");
    adjust(&mut config);
    let rtp_ports = config.rtp_ports;
    let engine = Engine::start(config)
        .await
        .unwrap_or_else(|e| panic!("engine did not start: {e}"));
    let records = engine.call_records();
    TestEngine {
        sip: engine.sip_addr(),
        rtp_ports,
        records,
        engine: Some(engine),
        scratch,
    }
}

impl TestEngine {
    pub fn engine(&self) -> &Engine {
        self.engine.as_ref().expect("engine running")
    }

    /// The next call record, or a panic after `timeout`.
    pub async fn next_record(&mut self, timeout: Duration) -> CallRecord {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.records.recv()).await {
                Ok(Ok(r)) => return r,
                Ok(Err(broadcast::error::RecvError::Lagged(n))) => {
                    eprintln!("call records: lagged by {n}");
                }
                Ok(Err(broadcast::error::RecvError::Closed)) => {
                    panic!("call record channel closed")
                }
                Err(_) => panic!("no call record within {timeout:?}"),
            }
        }
    }

    /// The record of the call whose SIP Call-ID contains `needle`.
    pub async fn record_for(&mut self, needle: &str, timeout: Duration) -> CallRecord {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let r = self.next_record(left).await;
            if r.call_id.contains(needle) {
                return r;
            }
        }
    }

    pub async fn shutdown(mut self) {
        if let Some(e) = self.engine.take() {
            tokio::time::timeout(Duration::from_secs(10), e.shutdown())
                .await
                .expect("engine shut down within 10 s");
        }
    }
}

/// Digits of a record as `(digit, source)` with sources `rfc4733`, `info`, `inband`.
pub fn digits(r: &CallRecord) -> Vec<(char, String)> {
    r.digits
        .iter()
        .map(|d| (d.digit, d.source.clone()))
        .collect()
}

/// Whether the record lists prompt `name` as played (names may carry a language
/// prefix, e.g. `en/hours`).
pub fn played(r: &CallRecord, name: &str) -> bool {
    r.prompts
        .iter()
        .any(|p| p == name || p.rsplit('/').next() == Some(name))
}

pub fn outcome(r: &CallRecord) -> String {
    r.outcome.as_str().to_string()
}

// ------------------------------------------------------------------ child processes

/// Waits for `child` at most `timeout`; kills it when the time is up.
fn wait_bounded(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("wait for child: {e}"),
        }
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args(["-s", sig, &pid.to_string()])
        .status();
}

fn read_lossy(p: &Path) -> String {
    std::fs::read(p)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

// ------------------------------------------------------------------ sipp

pub struct SippOptions<'a> {
    /// Request-URI user part (`-s`): selects the flow.
    pub service: &'a str,
    /// `-t t1` (one TCP connection) instead of UDP.
    pub tcp: bool,
    /// Hard limit for the sipp process; the test fails when it is reached.
    pub timeout: Duration,
    pub extra: Vec<String>,
    /// Fixed SIP port (`-p`), e.g. for an agent phone that registered from that port.
    pub local_port: Option<u16>,
    /// Fixed RTP port (`-mp`).
    pub media_port: Option<u16>,
}

impl Default for SippOptions<'_> {
    fn default() -> Self {
        SippOptions {
            service: "ivr",
            tcp: false,
            timeout: Duration::from_secs(60),
            extra: Vec::new(),
            local_port: None,
            media_port: None,
        }
    }
}

pub struct SippRun {
    pub scenario: String,
    pub status: Option<ExitStatus>,
    /// Every Call-ID sipp uses starts with this.
    pub call_id_prefix: String,
    pub screen: String,
    pub errors: String,
    pub messages: String,
    pub elapsed: Duration,
}

impl SippRun {
    pub fn succeeded(&self) -> bool {
        self.status.map(|s| s.code() == Some(0)).unwrap_or(false)
    }

    pub fn report(&self) -> String {
        format!(
            "sipp {} exit {:?} after {:.1?}\n--- screen (tail)\n{}\n--- errors\n{}\n--- messages (tail)\n{}",
            self.scenario,
            self.status.map(|s| s.code()),
            self.elapsed,
            tail(&self.screen, 30),
            tail(&self.errors, 40),
            tail(&self.messages, 80),
        )
    }

    /// Panics with sipp's screen, error log and message trace unless every call succeeded.
    pub fn assert_success(&self) {
        assert!(
            self.succeeded(),
            "sipp scenario failed (exit 0 expected)\n{}",
            self.report()
        );
    }
}

/// Runs `tests/sipp/<scenario>` against the engine: one call, loopback, bounded in time.
pub async fn run_sipp(engine: &TestEngine, scenario: &str, opts: SippOptions<'_>) -> SippRun {
    let sipp = sipp_path();
    if !is_root() {
        eprintln!("note: not root; play_pcap_audio needs CAP_NET_RAW on sipp. {PRIVILEGE_HINT}");
    }
    let stem = scenario.trim_end_matches(".xml").replace('_', "-");
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let call_id_prefix = format!("pt-{stem}-{}-{n}", std::process::id());
    let dir = &engine.scratch;
    let screen = dir.file(&format!("{stem}-{n}.screen"));
    let errors = dir.file(&format!("{stem}-{n}.errors.log"));
    let messages = dir.file(&format!("{stem}-{n}.messages.log"));
    let local_port = opts.local_port.unwrap_or_else(free_port);
    let media_port = opts.media_port.unwrap_or_else(|| free_port_block(4).0);
    let limit = opts.timeout;
    let mut args: Vec<String> = vec![
        "-sf".into(),
        repo()
            .join("tests/sipp")
            .join(scenario)
            .display()
            .to_string(),
        "-s".into(),
        opts.service.into(),
        "-m".into(),
        "1".into(),
        "-i".into(),
        "127.0.0.1".into(),
        "-mi".into(),
        "127.0.0.1".into(),
        "-p".into(),
        local_port.to_string(),
        "-mp".into(),
        media_port.to_string(),
        "-cid_str".into(),
        format!("{call_id_prefix}-%u@%s"),
        "-timeout".into(),
        format!("{}s", limit.as_secs().max(2) - 1),
        "-timeout_error".into(),
        "-nostdin".into(),
        "-trace_err".into(),
        "-error_file".into(),
        errors.display().to_string(),
        "-trace_msg".into(),
        "-message_file".into(),
        messages.display().to_string(),
    ];
    if opts.tcp {
        args.extend(["-t".into(), "t1".into()]);
    }
    args.extend(opts.extra.iter().cloned());
    args.push(engine.sip.to_string());

    let screen_file = std::fs::File::create(&screen).expect("create screen file");
    let screen_err = screen_file.try_clone().expect("clone");
    let started = Instant::now();
    let status = tokio::task::spawn_blocking({
        let cwd = repo();
        move || {
            let mut child = Command::new(&sipp)
                .args(&args)
                .current_dir(cwd)
                .stdin(Stdio::null())
                .stdout(screen_file)
                .stderr(screen_err)
                .spawn()
                .unwrap_or_else(|e| panic!("could not run {}: {e}", sipp.display()));
            // sipp's own -timeout fires first; this is the backstop.
            wait_bounded(&mut child, limit + Duration::from_secs(5))
        }
    })
    .await
    .expect("sipp waiter");
    SippRun {
        scenario: scenario.into(),
        status,
        call_id_prefix,
        screen: read_lossy(&screen),
        errors: read_lossy(&errors),
        messages: read_lossy(&messages),
        elapsed: started.elapsed(),
    }
}

// ------------------------------------------------------------------ capture

/// `tcpdump -i lo` of UDP in a port range, written to a pcap file.
pub struct Capture {
    child: Child,
    file: PathBuf,
    stderr: Arc<Mutex<String>>,
}

impl Capture {
    /// Starts capturing and returns once tcpdump says it is listening.
    pub fn start(ports: (u16, u16), scratch: &Scratch) -> Capture {
        let tcpdump = tcpdump_path();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let file = scratch.file(&format!("rtp-{n}.pcap"));
        let mut child = Command::new(&tcpdump)
            .args([
                "-i",
                "lo",
                "-n",
                "-U",
                "--immediate-mode",
                "-s",
                "0",
                "-Z",
                "root",
                "-w",
            ])
            .arg(&file)
            .arg(format!("udp portrange {}-{}", ports.0, ports.1))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("could not run {}: {e}", tcpdump.display()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let pipe = child.stderr.take().expect("stderr");
            let stderr = stderr.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(pipe);
                let mut line = String::new();
                let mut told = false;
                while r.read_line(&mut line).unwrap_or(0) > 0 {
                    stderr.lock().unwrap().push_str(&line);
                    if !told && line.contains("listening on") {
                        let _ = tx.send(());
                        told = true;
                    }
                    line.clear();
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if rx.recv_timeout(Duration::from_millis(50)).is_ok() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "tcpdump exited ({status}) before capturing:\n{}\n{PRIVILEGE_HINT}",
                    stderr.lock().unwrap()
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "tcpdump did not start capturing within 10 s:\n{}",
                    stderr.lock().unwrap()
                );
            }
        }
        Capture {
            child,
            file,
            stderr,
        }
    }

    /// Stops tcpdump (SIGINT, then SIGTERM, then kill) and returns the UDP packets captured.
    pub fn stop(mut self) -> Vec<UdpPacket> {
        // Let the last packets reach the capture buffer.
        std::thread::sleep(Duration::from_millis(200));
        signal(self.child.id(), "INT");
        if wait_bounded_soft(&mut self.child, Duration::from_secs(3)).is_none() {
            signal(self.child.id(), "TERM");
            if wait_bounded(&mut self.child, Duration::from_secs(3)).is_none() {
                eprintln!("tcpdump had to be killed");
            }
        }
        let bytes = std::fs::read(&self.file).unwrap_or_else(|e| {
            panic!(
                "read capture {}: {e}\n{}",
                self.file.display(),
                self.stderr.lock().unwrap()
            )
        });
        read_pcap(&bytes).unwrap_or_else(|e| panic!("bad capture {}: {e}", self.file.display()))
    }
}

/// Like [`wait_bounded`] but leaves the child running on timeout.
fn wait_bounded_soft(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ------------------------------------------------------------------ pcap

#[derive(Clone, Debug)]
pub struct UdpPacket {
    /// Seconds since the Unix epoch.
    pub time: f64,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub payload: Vec<u8>,
}

/// Reads a classic pcap file (either byte order, µs or ns timestamps) and returns its
/// UDP datagrams over IPv4/IPv6. Link types: NULL/loopback (0), Ethernet (1),
/// raw IP (101, and 12, 228, 229), Linux cooked v1 (113) and v2 (276).
/// Fragments and non-UDP packets are skipped.
pub fn read_pcap(b: &[u8]) -> Result<Vec<UdpPacket>, String> {
    if b.len() < 24 {
        return Err(format!("{} bytes: too short for a pcap header", b.len()));
    }
    let magic = u32::from_le_bytes(b[0..4].try_into().unwrap());
    let (le, nanos) = match magic {
        0xa1b2c3d4 => (true, false),
        0xd4c3b2a1 => (false, false),
        0xa1b23c4d => (true, true),
        0x4d3cb2a1 => (false, true),
        0x0a0d0d0a => return Err("pcapng is not supported (use tcpdump -w, not dumpcap)".into()),
        m => return Err(format!("not a pcap file (magic {m:#010x})")),
    };
    let u32_at = |o: usize| -> u32 {
        let a: [u8; 4] = b[o..o + 4].try_into().unwrap();
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let linktype = u32_at(20) & 0x0fff_ffff;
    let mut out = Vec::new();
    let mut off = 24;
    while off + 16 <= b.len() {
        let sec = u32_at(off) as f64;
        let frac = u32_at(off + 4) as f64;
        let incl = u32_at(off + 8) as usize;
        off += 16;
        if off + incl > b.len() {
            break; // truncated last record (capture stopped mid-write)
        }
        let frame = &b[off..off + incl];
        off += incl;
        let time = sec + if nanos { frac / 1e9 } else { frac / 1e6 };
        let ip = match linktype {
            0 => {
                if frame.len() < 4 {
                    continue;
                }
                let fam_le = u32::from_le_bytes(frame[0..4].try_into().unwrap());
                let fam_be = u32::from_be_bytes(frame[0..4].try_into().unwrap());
                let fam = if fam_le < 256 { fam_le } else { fam_be };
                match fam {
                    2 | 24 | 28 | 30 => &frame[4..],
                    _ => continue,
                }
            }
            1 => {
                if frame.len() < 14 {
                    continue;
                }
                let mut et = u16::from_be_bytes([frame[12], frame[13]]);
                let mut start = 14;
                while et == 0x8100 || et == 0x88a8 {
                    if frame.len() < start + 4 {
                        break;
                    }
                    et = u16::from_be_bytes([frame[start + 2], frame[start + 3]]);
                    start += 4;
                }
                match et {
                    0x0800 | 0x86dd => &frame[start..],
                    _ => continue,
                }
            }
            12 | 101 | 228 | 229 => frame,
            113 => {
                if frame.len() < 16 {
                    continue;
                }
                match u16::from_be_bytes([frame[14], frame[15]]) {
                    0x0800 | 0x86dd => &frame[16..],
                    _ => continue,
                }
            }
            276 => {
                if frame.len() < 20 {
                    continue;
                }
                match u16::from_be_bytes([frame[0], frame[1]]) {
                    0x0800 | 0x86dd => &frame[20..],
                    _ => continue,
                }
            }
            other => return Err(format!("unsupported link type {other}")),
        };
        if let Some(p) = parse_ip_udp(ip, time) {
            out.push(p);
        }
    }
    Ok(out)
}

fn parse_ip_udp(ip: &[u8], time: f64) -> Option<UdpPacket> {
    let version = ip.first()? >> 4;
    let (src, dst, udp) = match version {
        4 => {
            let ihl = ((ip[0] & 0x0f) as usize) * 4;
            if ip.len() < ihl.max(20) || ip[9] != 17 {
                return None;
            }
            let flags_frag = u16::from_be_bytes([ip[6], ip[7]]);
            if flags_frag & 0x3fff != 0 {
                return None; // fragment
            }
            let total = (u16::from_be_bytes([ip[2], ip[3]]) as usize).min(ip.len());
            let src = IpAddr::V4(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]));
            let dst = IpAddr::V4(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]));
            (src, dst, ip.get(ihl..total)?)
        }
        6 => {
            if ip.len() < 40 || ip[6] != 17 {
                return None;
            }
            let plen = u16::from_be_bytes([ip[4], ip[5]]) as usize;
            let s: [u8; 16] = ip[8..24].try_into().ok()?;
            let d: [u8; 16] = ip[24..40].try_into().ok()?;
            (
                IpAddr::V6(Ipv6Addr::from(s)),
                IpAddr::V6(Ipv6Addr::from(d)),
                ip.get(40..(40 + plen).min(ip.len()))?,
            )
        }
        _ => return None,
    };
    if udp.len() < 8 {
        return None;
    }
    let sport = u16::from_be_bytes([udp[0], udp[1]]);
    let dport = u16::from_be_bytes([udp[2], udp[3]]);
    let ulen = (u16::from_be_bytes([udp[4], udp[5]]) as usize).clamp(8, udp.len());
    Some(UdpPacket {
        time,
        src: SocketAddr::new(src, sport),
        dst: SocketAddr::new(dst, dport),
        payload: udp[8..ulen].to_vec(),
    })
}

/// Writes UDP datagrams as a classic pcap with link type raw IPv4 (for debugging a test).
pub fn write_pcap(path: &Path, packets: &[UdpPacket]) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    f.write_all(&0xa1b2c3d4u32.to_le_bytes())?;
    f.write_all(&2u16.to_le_bytes())?;
    f.write_all(&4u16.to_le_bytes())?;
    f.write_all(&[0; 8])?;
    f.write_all(&65535u32.to_le_bytes())?;
    f.write_all(&228u32.to_le_bytes())?;
    for p in packets {
        let (IpAddr::V4(s), IpAddr::V4(d)) = (p.src.ip(), p.dst.ip()) else {
            continue;
        };
        let len = 28 + p.payload.len();
        let mut ip = vec![
            0x45,
            0,
            (len >> 8) as u8,
            len as u8,
            0,
            0,
            0x40,
            0,
            64,
            17,
            0,
            0,
        ];
        ip.extend_from_slice(&s.octets());
        ip.extend_from_slice(&d.octets());
        let ulen = 8 + p.payload.len();
        ip.extend_from_slice(&p.src.port().to_be_bytes());
        ip.extend_from_slice(&p.dst.port().to_be_bytes());
        ip.extend_from_slice(&(ulen as u16).to_be_bytes());
        ip.extend_from_slice(&[0, 0]);
        ip.extend_from_slice(&p.payload);
        let sec = p.time.trunc() as u32;
        let usec = ((p.time.fract()) * 1e6) as u32;
        for v in [sec, usec, ip.len() as u32, ip.len() as u32] {
            f.write_all(&v.to_le_bytes())?;
        }
        f.write_all(&ip)?;
    }
    Ok(())
}

// ------------------------------------------------------------------ RTP

#[derive(Clone, Debug)]
pub struct Rtp {
    pub pt: u8,
    pub marker: bool,
    pub seq: u16,
    pub ts: u32,
    pub ssrc: u32,
    pub payload: Vec<u8>,
}

/// RFC 3550 §5.1 header (CSRCs, extension and padding skipped). None when not RTP v2.
pub fn parse_rtp(b: &[u8]) -> Option<Rtp> {
    if b.len() < 12 || b[0] >> 6 != 2 {
        return None;
    }
    let cc = (b[0] & 0x0f) as usize;
    let mut start = 12 + 4 * cc;
    if b[0] & 0x10 != 0 {
        let ext = b.get(start..start + 4)?;
        start += 4 + 4 * u16::from_be_bytes([ext[2], ext[3]]) as usize;
    }
    let mut end = b.len();
    if b[0] & 0x20 != 0 {
        let pad = *b.last()? as usize;
        end = end.checked_sub(pad)?;
    }
    if start > end {
        return None;
    }
    Some(Rtp {
        pt: b[1] & 0x7f,
        marker: b[1] & 0x80 != 0,
        seq: u16::from_be_bytes([b[2], b[3]]),
        ts: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        payload: b[start..end].to_vec(),
    })
}

/// One RTP stream (one SSRC from one source address) in arrival order.
#[derive(Clone, Debug)]
pub struct Stream {
    pub ssrc: u32,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub packets: Vec<(f64, Rtp)>,
}

/// RTP the engine sent: packets whose UDP source port is in `ports`, grouped by SSRC.
pub fn engine_streams(packets: &[UdpPacket], ports: (u16, u16)) -> Vec<Stream> {
    let mut by: BTreeMap<(u32, SocketAddr), Stream> = BTreeMap::new();
    for p in packets {
        if !(ports.0..=ports.1).contains(&p.src.port()) {
            continue;
        }
        let Some(rtp) = parse_rtp(&p.payload) else {
            continue;
        };
        if (72..=79).contains(&rtp.pt) {
            continue; // RTCP (RFC 5761 §4)
        }
        by.entry((rtp.ssrc, p.src))
            .or_insert_with(|| Stream {
                ssrc: rtp.ssrc,
                src: p.src,
                dst: p.dst,
                packets: Vec::new(),
            })
            .packets
            .push((p.time, rtp));
    }
    by.into_values().collect()
}

impl Stream {
    /// Decoded audio on the RTP timeline: sample `i` is timestamp `ts0 + i`, where `ts0`
    /// is the first audio packet's timestamp. PCMU (0) and PCMA (8) are decoded; other
    /// payload types are ignored; missing packets stay silent.
    pub fn decode(&self) -> Vec<i16> {
        let Some((_, first)) = self.packets.iter().find(|(_, r)| r.pt == 0 || r.pt == 8) else {
            return Vec::new();
        };
        let ts0 = first.ts;
        let mut out: Vec<i16> = Vec::new();
        for (_, r) in &self.packets {
            let table = match r.pt {
                0 => &*ULAW,
                8 => &*ALAW,
                _ => continue,
            };
            let at = r.ts.wrapping_sub(ts0) as usize;
            if at > 30 * 60 * RATE as usize {
                continue; // earlier than ts0 (wrapped) or absurd
            }
            if out.len() < at + r.payload.len() {
                out.resize(at + r.payload.len(), 0);
            }
            for (i, &c) in r.payload.iter().enumerate() {
                out[at + i] = table[c as usize];
            }
        }
        out
    }

    /// Marker bit of the packet carrying sample `sample` of [`Stream::decode`]'s timeline.
    pub fn marker_at(&self, sample: usize) -> Option<bool> {
        let (_, first) = self.packets.iter().find(|(_, r)| r.pt == 0 || r.pt == 8)?;
        let ts = first.ts.wrapping_add(sample as u32);
        self.packets
            .iter()
            .find(|(_, r)| r.ts == ts && (r.pt == 0 || r.pt == 8))
            .map(|(_, r)| r.marker)
    }

    /// Pacing problems: sequence gaps, timestamp steps other than 160 per packet,
    /// payload sizes other than 160, and send gaps over 40 ms (arrival times on `lo`).
    pub fn pacing_problems(&self) -> Vec<String> {
        let mut v = Vec::new();
        let audio: Vec<&(f64, Rtp)> = self
            .packets
            .iter()
            .filter(|(_, r)| r.pt == 0 || r.pt == 8)
            .collect();
        for w in audio.windows(2) {
            let (t0, a) = w[0];
            let (t1, b) = w[1];
            if b.seq != a.seq.wrapping_add(1) {
                v.push(format!("seq {} -> {}", a.seq, b.seq));
            }
            // A longer step is the player skipping ahead after a stalled host (it keeps
            // timestamps on real time and marks the resumption); anything else is a bug.
            if b.ts.wrapping_sub(a.ts) != FRAME as u32 && !b.marker {
                v.push(format!(
                    "seq {} -> {}: ts step {}",
                    a.seq,
                    b.seq,
                    b.ts.wrapping_sub(a.ts) as i32
                ));
            }
            // Fine pacing (20 ± 2 ms) is measured by the benchmark (examples/callgen.rs), not
            // asserted here: a busy CI host delays a debug build's sweep. This only catches a
            // stream that stalls.
            if t1 - t0 > 0.250 {
                v.push(format!(
                    "seq {} -> {}: {:.0} ms between packets",
                    a.seq,
                    b.seq,
                    (t1 - t0) * 1e3
                ));
            }
        }
        for (_, r) in &audio {
            if r.payload.len() != FRAME {
                v.push(format!(
                    "seq {}: {} bytes of payload",
                    r.seq,
                    r.payload.len()
                ));
            }
        }
        v
    }
}

// ------------------------------------------------------------------ G.711 decoding

/// ITU-T G.711 µ-law decode table (16-bit linear), computed from the standard.
pub static ULAW: std::sync::LazyLock<[i16; 256]> = std::sync::LazyLock::new(|| {
    let mut t = [0i16; 256];
    for (i, v) in t.iter_mut().enumerate() {
        *v = ulaw_to_linear(i as u8);
    }
    t
});

/// ITU-T G.711 A-law decode table (16-bit linear).
pub static ALAW: std::sync::LazyLock<[i16; 256]> = std::sync::LazyLock::new(|| {
    let mut t = [0i16; 256];
    for (i, v) in t.iter_mut().enumerate() {
        *v = alaw_to_linear(i as u8);
    }
    t
});

pub fn ulaw_to_linear(code: u8) -> i16 {
    let u = !code;
    let exponent = ((u >> 4) & 0x07) as i32;
    let mantissa = (u & 0x0f) as i32;
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    (if u & 0x80 != 0 { -magnitude } else { magnitude }) as i16
}

pub fn alaw_to_linear(code: u8) -> i16 {
    let a = code ^ 0x55;
    let exponent = ((a >> 4) & 0x07) as i32;
    let mantissa = (a & 0x0f) as i32;
    let magnitude = match exponent {
        0 => (mantissa << 4) + 8,
        e => ((mantissa << 4) + 0x108) << (e - 1),
    };
    (if a & 0x80 != 0 { magnitude } else { -magnitude }) as i16
}

// ------------------------------------------------------------------ prompts and matching

/// Samples of `prompts/en/<name>.wav` (must be 8 kHz mono 16-bit PCM).
pub fn load_prompt(name: &str) -> Vec<i16> {
    let path = repo().join("prompts/en").join(format!("{name}.wav"));
    let mut r = hound::WavReader::open(&path)
        .unwrap_or_else(|e| panic!("open {}: {e} (run prompts/generate.sh)", path.display()));
    let s = r.spec();
    assert!(
        s.sample_rate == RATE
            && s.channels == 1
            && s.bits_per_sample == 16
            && s.sample_format == hound::SampleFormat::Int,
        "{} is {s:?}, not 8 kHz mono 16-bit PCM",
        path.display()
    );
    r.samples::<i16>().map(|x| x.expect("sample")).collect()
}

/// Names of all whole prompts in `prompts/en/` (not the `say/` fragments).
pub fn prompt_names() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(repo().join("prompts/en"))
        .expect("prompts/en exists (run prompts/generate.sh)")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let p = e.path();
            (p.extension()? == "wav").then(|| p.file_stem()?.to_str().map(String::from))?
        })
        .collect();
    v.sort();
    v
}

/// Where a prompt was heard.
#[derive(Clone, Debug, PartialEq)]
pub struct Heard {
    pub name: String,
    /// 20 ms frame of the heard timeline where the prompt starts.
    pub start_frame: usize,
    /// Frames from the prompt's start that matched before it stopped (barge-in, hangup).
    pub frames_matched: usize,
    pub prompt_frames: usize,
}

impl Heard {
    pub fn start_secs(&self) -> f64 {
        (self.start_frame * FRAME) as f64 / RATE as f64
    }
    pub fn heard_secs(&self) -> f64 {
        (self.frames_matched * FRAME) as f64 / RATE as f64
    }
    pub fn end_frame(&self) -> usize {
        self.start_frame + self.frames_matched
    }
    /// Heard to the end (the last frame may be padded by the engine).
    pub fn complete(&self) -> bool {
        self.frames_matched + 1 >= self.prompt_frames
    }
}

impl std::fmt::Display for Heard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total = (self.prompt_frames * FRAME) as f64 / RATE as f64;
        if self.complete() {
            write!(
                f,
                "{:7.2}s {} (complete, {:.2}s)",
                self.start_secs(),
                self.name,
                total
            )
        } else {
            write!(
                f,
                "{:7.2}s {} ({:.2}s of {:.2}s, cut)",
                self.start_secs(),
                self.name,
                self.heard_secs(),
                total
            )
        }
    }
}

fn frame_of(x: &[i16], i: usize) -> [i32; FRAME] {
    let mut f = [0i32; FRAME];
    for (k, v) in f.iter_mut().enumerate() {
        *v = x.get(i * FRAME + k).copied().unwrap_or(0) as i32;
    }
    f
}

fn energy(f: &[i32; FRAME]) -> f64 {
    f.iter().map(|&v| (v as f64) * (v as f64)).sum()
}

/// Error allowed between a prompt frame and what was heard: 5 % of the frame's energy
/// (G.711 re-encoding costs ~0.02–0.3 %; unrelated audio costs ≥100 %) plus a floor of
/// 48 per sample for quiet frames (one µ-law step at low level is 8–32).
fn frames_match(p: &[i32; FRAME], h: &[i32; FRAME]) -> bool {
    let err: f64 = p
        .iter()
        .zip(h)
        .map(|(&a, &b)| ((a - b) as f64).powi(2))
        .sum();
    err <= 0.05 * energy(p) + (FRAME as f64) * 48.0 * 48.0
}

/// Frames loud enough (RMS > 300) to identify a prompt by.
const LOUD: f64 = (FRAME as f64) * 300.0 * 300.0;

/// First place at or after `from_frame` where `prompt` starts in `heard` (frame-aligned:
/// the engine starts every prompt on a packet boundary), with how much of it matched.
/// At least `min_frames` (or the whole prompt if shorter) must match.
pub fn find_prompt(
    name: &str,
    heard: &[i16],
    prompt: &[i16],
    from_frame: usize,
    min_frames: usize,
) -> Option<Heard> {
    let pf = prompt.len().div_ceil(FRAME);
    let hf = heard.len().div_ceil(FRAME);
    let pframes: Vec<[i32; FRAME]> = (0..pf).map(|i| frame_of(prompt, i)).collect();
    let loud: Vec<usize> = (0..pf).filter(|&i| energy(&pframes[i]) > LOUD).collect();
    let screen: Vec<usize> = loud.iter().copied().take(3).collect();
    if screen.is_empty() {
        return None; // a silent prompt cannot be identified
    }
    let need = min_frames.min(pf);
    for s in from_frame..hf {
        if s + screen[0] >= hf {
            break;
        }
        if !screen
            .iter()
            .all(|&j| s + j < hf && frames_match(&pframes[j], &frame_of(heard, s + j)))
        {
            continue;
        }
        // Walk from the prompt's start; it ends at the first loud frame that differs,
        // or after three differing frames in a row.
        let mut matched = 0;
        let mut misses = 0;
        for j in 0..pf {
            if s + j >= hf {
                break;
            }
            if frames_match(&pframes[j], &frame_of(heard, s + j)) {
                matched = j + 1;
                misses = 0;
            } else {
                misses += 1;
                if energy(&pframes[j]) > LOUD || misses >= 3 {
                    break;
                }
            }
        }
        if matched >= need {
            return Some(Heard {
                name: name.into(),
                start_frame: s,
                frames_matched: matched,
                prompt_frames: pf,
            });
        }
    }
    None
}

/// Every whole prompt of `prompts/en/` heard in `heard` (at least 0.3 s of each), in order.
pub fn transcript(heard: &[i16]) -> Vec<Heard> {
    let mut all = Vec::new();
    for name in prompt_names() {
        let p = load_prompt(&name);
        let mut from = 0;
        while let Some(h) = find_prompt(&name, heard, &p, from, 15) {
            from = h.end_frame().max(h.start_frame + 1);
            all.push(h);
        }
    }
    // Prompts can share their opening words ("Thank you for calling ..."): at one start,
    // keep only the prompt that matched longest.
    all.sort_by_key(|h| (h.start_frame, std::cmp::Reverse(h.frames_matched)));
    all.dedup_by(|later, first| later.start_frame == first.start_frame);
    all
}

pub fn describe(t: &[Heard]) -> String {
    if t.is_empty() {
        return "  (no known prompt)".into();
    }
    t.iter()
        .map(|h| format!("  {h}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// How much of a prompt the caller must have heard.
#[derive(Clone, Copy, Debug)]
pub enum Need {
    /// From its first to its last frame.
    Complete,
    /// At least this much from its start (it may have been cut by a key).
    AtLeast(Duration),
}

/// Asserts the prompts were heard in this order (each starting after the previous one
/// started) and returns where. The panic message lists everything that was heard.
pub fn assert_heard_in_order(heard: &[i16], expected: &[(&str, Need)]) -> Vec<Heard> {
    let mut from = 0;
    let mut found = Vec::new();
    for (name, need) in expected {
        let p = load_prompt(name);
        let min = match need {
            Need::Complete => p.len().div_ceil(FRAME),
            Need::AtLeast(d) => (d.as_millis() as usize / 20).max(1),
        };
        let Some(h) = find_prompt(name, heard, &p, from, min) else {
            panic!(
                "caller did not hear `{name}` ({need:?}) after {:.2}s.\nexpected order: {:?}\n\
                 audio from the engine ({:.2}s) contained:\n{}",
                (from * FRAME) as f64 / RATE as f64,
                expected.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
                heard.len() as f64 / RATE as f64,
                describe(&transcript(heard))
            );
        };
        from = h.start_frame + 1;
        found.push(h);
    }
    found
}

// ------------------------------------------------------------------ say fragments

/// Names of the `say` fragments in `prompts/en/say/` (`say/1`, `say/hundred`, ...).
pub fn fragment_names() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(repo().join("prompts/en/say"))
        .expect("prompts/en/say exists (run prompts/generate.sh)")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let p = e.path();
            (p.extension()? == "wav")
                .then(|| p.file_stem()?.to_str().map(|s| format!("say/{s}")))?
        })
        .collect();
    v.sort();
    v
}

/// Every `say` fragment heard *completely* in frames `from_frame..to_frame` of `heard`, in
/// order (fragments are short, so only a whole one counts; at one start the longest wins).
pub fn fragments_heard(heard: &[i16], from_frame: usize, to_frame: usize) -> Vec<Heard> {
    let end = (to_frame * FRAME).min(heard.len());
    let window = &heard[..end];
    let mut all = Vec::new();
    for name in fragment_names() {
        let p = load_prompt(&name);
        let pf = p.len().div_ceil(FRAME);
        let mut from = from_frame;
        while let Some(h) = find_prompt(&name, window, &p, from, pf) {
            from = h.start_frame + 1;
            all.push(h);
        }
    }
    all.sort_by_key(|h| (h.start_frame, std::cmp::Reverse(h.prompt_frames)));
    all.dedup_by(|later, first| later.start_frame == first.start_frame);
    all
}

/// Asserts that the fragments `names` (e.g. `say/1`, `say/hundred`) were heard completely
/// and back to back, as one `say` node plays them: the first starts at most `max_lead`
/// frames after `after_frame`, each next one on the frame where the previous one ended,
/// and nothing else comes between them. Returns where each was heard; the panic message
/// lists the fragments that were heard instead.
pub fn assert_fragments_back_to_back(
    heard: &[i16],
    after_frame: usize,
    max_lead: usize,
    names: &[String],
) -> Vec<Heard> {
    let expected_len: usize = names
        .iter()
        .map(|n| load_prompt(n).len().div_ceil(FRAME))
        .sum();
    let explain = |what: String| -> String {
        let window_end = after_frame + max_lead + expected_len + 50;
        format!(
            "{what}\nexpected, back to back from {:.2}s: {names:?}\n\
             fragments heard from there:\n{}\nwhole prompts heard:\n{}",
            (after_frame * FRAME) as f64 / RATE as f64,
            describe(&fragments_heard(heard, after_frame, window_end)),
            describe(&transcript(heard))
        )
    };
    let mut found: Vec<Heard> = Vec::new();
    for name in names {
        let p = load_prompt(name);
        let pf = p.len().div_ceil(FRAME);
        let (from, latest) = match found.last() {
            None => (after_frame, after_frame + max_lead),
            Some(prev) => (prev.end_frame(), prev.end_frame()),
        };
        let h = find_prompt(name, heard, &p, from, pf)
            .filter(|h| h.start_frame <= latest)
            .unwrap_or_else(|| {
                panic!(
                    "{}",
                    explain(format!(
                        "caller did not hear `{name}` completely at {:.2}s{}",
                        (from * FRAME) as f64 / RATE as f64,
                        if found.is_empty() {
                            format!(" (or up to {max_lead} frames later)")
                        } else {
                            format!(" (right after `{}`)", found.last().unwrap().name)
                        }
                    ))
                )
            });
        found.push(h);
    }
    found
}

/// The single audio stream the engine sent in a capture, decoded; panics with a summary otherwise.
pub fn engine_audio(packets: &[UdpPacket], ports: (u16, u16)) -> (Stream, Vec<i16>) {
    let streams = engine_streams(packets, ports);
    let summary = format!(
        "{} UDP packets captured; engine streams (ssrc, from, to, packets): {:?}",
        packets.len(),
        streams
            .iter()
            .map(|s| (format!("{:#x}", s.ssrc), s.src, s.dst, s.packets.len()))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        streams.len(),
        1,
        "expected exactly one RTP stream from the engine\n{summary}"
    );
    let s = streams.into_iter().next().unwrap();
    let pcm = s.decode();
    assert!(
        !pcm.is_empty(),
        "engine stream carries no PCMU/PCMA\n{summary}"
    );
    (s, pcm)
}

/// A stream's G.711 audio packet after packet, in arrival order, ignoring timestamps: every
/// packet of ours and of sipp's pcaps carries 160 samples, so prompts and relayed voice stay
/// frame-aligned even where a relay rebased the timestamps.
pub fn packet_audio(stream: &Stream) -> Vec<i16> {
    let mut out = Vec::new();
    for (_, r) in &stream.packets {
        match r.pt {
            0 => out.extend(r.payload.iter().map(|&b| ulaw_to_linear(b))),
            8 => out.extend(r.payload.iter().map(|&b| alaw_to_linear(b))),
            _ => {}
        }
    }
    out
}

/// True when `prompt` (a file under `prompts/en/`) is heard in `audio`, at least 1 s of it.
pub fn hears(audio: &[i16], prompt: &str) -> bool {
    let p = load_prompt(prompt);
    find_prompt(prompt, audio, &p, 0, 50).is_some()
}

/// Checks the marker bit is set on the first packet of each heard prompt.
pub fn assert_markers(stream: &Stream, heard: &[Heard]) {
    for h in heard {
        assert_eq!(
            stream.marker_at(h.start_frame * FRAME),
            Some(true),
            "marker bit not set on the first packet of `{}` (at {:.2}s)",
            h.name,
            h.start_secs()
        );
    }
}

// ------------------------------------------------------------------ small SIP client

/// A parsed SIP response: status code and headers (names lower-cased, compact forms expanded).
#[derive(Clone, Debug)]
pub struct SipResponse {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub raw: Vec<u8>,
}

impl SipResponse {
    pub fn parse(raw: &[u8]) -> Option<SipResponse> {
        let text = String::from_utf8_lossy(raw);
        let (head, _) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let body_at = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|p| p + 4)
            .unwrap_or(raw.len());
        let mut lines = head.split("\r\n");
        let first = lines.next()?;
        let rest = first.strip_prefix("SIP/2.0 ")?;
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let status = code.trim().parse().ok()?;
        let mut headers: Vec<(String, String)> = Vec::new();
        for l in lines {
            if l.starts_with([' ', '\t']) {
                if let Some(last) = headers.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(l.trim());
                }
                continue;
            }
            if let Some((n, v)) = l.split_once(':') {
                let n = n.trim().to_ascii_lowercase();
                let n = match n.as_str() {
                    "v" => "via",
                    "f" => "from",
                    "t" => "to",
                    "i" => "call-id",
                    "m" => "contact",
                    "l" => "content-length",
                    "c" => "content-type",
                    "k" => "supported",
                    _ => &n,
                }
                .to_string();
                headers.push((n, v.trim().to_string()));
            }
        }
        Some(SipResponse {
            status,
            reason: reason.into(),
            headers,
            body: raw[body_at..].to_vec(),
            raw: raw.to_vec(),
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `(number, method)` from CSeq.
    pub fn cseq(&self) -> Option<(u32, String)> {
        let v = self.header("cseq")?;
        let mut it = v.split_whitespace();
        Some((it.next()?.parse().ok()?, it.next()?.to_string()))
    }
}

/// Sends an OPTIONS from `sock` and waits for its 200 (other responses are skipped).
pub fn options_ping(
    sock: &UdpSocket,
    engine: SocketAddr,
    tag: &str,
) -> Result<SipResponse, String> {
    let me = sock.local_addr().map_err(|e| e.to_string())?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let call_id = format!("ping-{tag}-{n}-{}", std::process::id());
    let msg = format!(
        "OPTIONS sip:ivr@{engine} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-ping-{n}-{tag};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:ping@{me}>;tag=p{n}\r\nTo: <sip:ivr@{engine}>\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(msg.as_bytes(), engine)
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut buf = vec![0u8; 65536];
    while Instant::now() < deadline {
        sock.set_read_timeout(Some(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ))
        .map_err(|e| e.to_string())?;
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => {
                if let Some(r) = SipResponse::parse(&buf[..n]) {
                    if r.header("call-id") == Some(call_id.as_str()) && r.status >= 200 {
                        return Ok(r);
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Err("no final response to OPTIONS within 3 s".into())
}

/// Reads a whole file (for fixtures).
pub fn read_fixture(rel: &str) -> Vec<u8> {
    let p = repo().join(rel);
    let mut v = Vec::new();
    std::fs::File::open(&p)
        .and_then(|mut f| f.read_to_end(&mut v))
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    v
}

// ------------------------------------------------------------------ self-tests of the harness

/// Sanity checks of the harness itself, run from each test binary that calls it
/// (cheap: tables and a synthetic stream).
pub fn self_check() {
    // µ-law: 0xFF and 0x7F are zero; 0x00 / 0x80 are the extremes.
    assert_eq!(ulaw_to_linear(0xff), 0);
    assert_eq!(ulaw_to_linear(0x7f), 0);
    assert_eq!(ulaw_to_linear(0x80), 32124);
    assert_eq!(ulaw_to_linear(0x00), -32124);
    // A-law: 0xD5 is the smallest positive step, 0xAA the largest.
    assert_eq!(alaw_to_linear(0xd5), 8);
    assert_eq!(alaw_to_linear(0xaa), 32256);
    assert_eq!(alaw_to_linear(0x2a), -32256);
}

/// The caller pressed 1 at the main menu, by `source` (`rfc4733`, `info`, `inband`): in the
/// engine's RTP they heard the welcome in full, the menu cut short by the key, then the
/// opening hours in full, with a marker bit at each prompt start and no stall; the record
/// holds exactly that key, the `hours` node and a caller hang-up.
pub fn assert_key_1_took_the_hours_branch(
    stream: &Stream,
    heard: &[i16],
    record: &CallRecord,
    source: &str,
) {
    let found = assert_heard_in_order(
        heard,
        &[
            ("welcome", Need::Complete),
            ("main-menu", Need::AtLeast(Duration::from_millis(300))),
            ("hours", Need::Complete),
        ],
    );
    assert!(
        !found[1].complete(),
        "the menu should have been cut by the key: {}",
        found[1]
    );
    assert_markers(stream, &found);
    let pacing = stream.pacing_problems();
    assert!(pacing.is_empty(), "RTP pacing problems: {pacing:?}");
    assert_eq!(
        digits(record),
        vec![('1', source.to_string())],
        "record: {record:?}"
    );
    assert_eq!(outcome(record), "caller_hangup", "record: {record:?}");
    assert!(
        record.path.iter().any(|n| n == "hours"),
        "path {:?} does not reach `hours`",
        record.path
    );
}

// ------------------------------------------------------------------ the engine as a process

/// The real `phonetree serve` binary on a config of its own (loopback ports, demo flows
/// and prompts, a fresh SQLite directory loaded from data/customers.csv), stderr to `log`.
pub struct EngineProcess {
    pub child: std::process::Child,
    pub log: PathBuf,
    pub sip: SocketAddr,
    pub data: PathBuf,
}

impl Drop for EngineProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl EngineProcess {
    pub fn spawn(scratch: &Scratch, env: &[(&str, &str)]) -> EngineProcess {
        let root = repo();
        let sip_port = free_port();
        let http_port = free_port();
        let (rtp_lo, rtp_hi) = free_port_block(40);
        let data = scratch.file("data");
        std::fs::create_dir_all(&data).unwrap();
        let config = format!(
            "sip:\n  listen: 127.0.0.1:{sip_port}\nhttp:\n  listen: 127.0.0.1:{http_port}\n\
         media:\n  rtp_ports: {rtp_lo}-{rtp_hi}\n  bind: 127.0.0.1\n  threads: 1\n\
         flows_dir: {flows}\nprompts_dir: {prompts}\ndata_dir: {data}\n\
         directory:\n  kind: sqlite\n  path: {db}\n  import: {csv}\n",
            flows = root.join("flows").display(),
            prompts = root.join("prompts").display(),
            data = data.display(),
            db = data.join("phonetree.db").display(),
            csv = root.join("data/customers.csv").display(),
        );
        let config_path = scratch.file("phonetree.yaml");
        std::fs::write(&config_path, config).unwrap();
        let log = scratch.file("engine.log");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_phonetree"))
            .args(["serve", "--config"])
            .arg(&config_path)
            .env_remove("PHONETREE_ADMIN_TOKEN")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start phonetree");
        let sip: SocketAddr = format!("127.0.0.1:{sip_port}").parse().unwrap();
        let running = EngineProcess {
            child,
            log,
            sip,
            data,
        };
        // Up when it answers OPTIONS.
        let deadline = Instant::now() + Duration::from_secs(30);
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        loop {
            probe
                .set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            if options_ping(&probe, sip, "pin-log").is_ok() {
                return running;
            }
            assert!(
                Instant::now() < deadline,
                "the engine did not answer OPTIONS"
            );
        }
    }
}

// ------------------------------------------------------------------ a plain UDP caller

/// An SDP offer for a caller that never listens: PCMU + telephone-event on port 40000.
pub const PLAIN_SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";

/// An INVITE from `+15551234567` with `PLAIN_SDP`; From-tag `c-{call_id}`.
pub fn plain_invite(
    me: SocketAddr,
    engine: SocketAddr,
    call_id: &str,
    max_forwards: u32,
) -> String {
    format!(
        "INVITE sip:ivr@{engine} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{call_id};rport\r\n\
         Max-Forwards: {max_forwards}\r\nFrom: <sip:+15551234567@{me}>;tag=c-{call_id}\r\nTo: <sip:ivr@{engine}>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@{me}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{PLAIN_SDP}",
        PLAIN_SDP.len()
    )
}

/// A body-less request in the dialog of `plain_invite` (`to` is the 200's To, with the
/// engine's tag); `from_tag` is the caller's (`c-{call_id}`) unless a test forges it.
pub fn plain_in_dialog(
    method: &str,
    cseq: u32,
    me: SocketAddr,
    engine: SocketAddr,
    to: &str,
    call_id: &str,
    from_tag: &str,
) -> String {
    format!(
        "{method} sip:ivr@{engine} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{method}-{cseq}-{from_tag}-{call_id};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:+15551234567@{me}>;tag={from_tag}\r\nTo: {to}\r\n\
         Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    )
}

/// The first final response to `method` for `call_id` on `sock`, within `within`.
pub fn final_response_to(
    sock: &UdpSocket,
    call_id: &str,
    method: &str,
    within: Duration,
) -> SipResponse {
    let deadline = Instant::now() + within;
    let mut buf = vec![0u8; 65536];
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    while Instant::now() < deadline {
        if let Ok((n, _)) = sock.recv_from(&mut buf)
            && let Some(r) = SipResponse::parse(&buf[..n])
            && r.header("call-id") == Some(call_id)
            && r.cseq().is_some_and(|(_, m)| m == method)
            && r.status >= 200
        {
            return r;
        }
    }
    panic!("no final response to {method} for {call_id}");
}
