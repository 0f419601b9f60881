//! Admission control for hostile traffic: which datagrams from which sources the engine
//! takes on, decided before the SIP stack spends a transaction (and its 32 s of timers,
//! RFC 3261 §17.2) on them.
//!
//! - **Owns:** per-source token buckets (requests, new INVITEs, stateless refusals), the
//!   unconfirmed calls (INVITE admitted, no ACK yet), the blocked sources, and the scanner
//!   patterns (User-Agent, many distinct user parts).
//! - **Takes:** `now`, the source IP, and a [`Peek`] at each datagram (a cheap look at its
//!   start line and a few headers, no full parse).
//! - **Gives:** a [`Verdict`] per request and [`SecurityEvent`]s for every block.
//! - **Never:** pushes out a confirmed call (confirmed calls are not in its tables; it only
//!   refuses new INVITEs), grows a table past its bound, or reads the clock.
//!
//! Trusted sources (a proxy in front) and agents' registered phones skip all of it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An IP network, `192.0.2.0/24` or `2001:db8::/32` (a bare address is a /32 or /128).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not an address or network like 10.0.0.0/8"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}`: prefix must be 0-{max}"))?,
        };
        Ok(Cidr { net, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// What to do with a recognised scanner's requests (the source is blocked either way).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScannerAction {
    /// No answer at all: to the scanner we look like nothing listens.
    Drop,
    /// A stateless 403, no transaction.
    Reply,
}

/// The limits (`security:` in phonetree.yaml). A rate or count of 0 means no limit.
#[derive(Clone, Debug, PartialEq)]
pub struct AdmissionConfig {
    /// Sources that skip every check (a proxy or SBC in front, a load generator).
    pub trusted: Vec<Cidr>,
    /// Requests of any method per second from one source, and the burst allowed.
    pub requests_per_second: u32,
    pub request_burst: u32,
    /// New INVITEs (no To tag) per second from one source, and the burst allowed.
    pub invites_per_second: u32,
    pub invite_burst: u32,
    /// Calls admitted from one source and not yet confirmed by ACK.
    pub unconfirmed_per_source: usize,
    /// Calls admitted from all sources and not yet confirmed: each holds RTP ports.
    pub max_unconfirmed: usize,
    /// An admitted INVITE with no ACK is forgotten after this (64·T1, RFC 3261 Timer H/L).
    pub unconfirmed_timeout: Duration,
    /// Stateless 503s per second to one source; refusals past it are dropped unanswered.
    pub refusals_per_second: u32,
    /// `Retry-After` of the 503 (RFC 3261 §21.5.4), seconds.
    pub retry_after: u32,
    /// Requests over its limits a source may send in one second before it is blocked.
    pub flood_block_after: u32,
    /// How long a blocked source stays blocked (all its datagrams dropped).
    pub block_for: Duration,
    /// User-Agent substrings (compared lowercase) of known scanners.
    pub scanner_user_agents: Vec<String>,
    pub scanner_action: ScannerAction,
    /// Distinct user parts (Request-URI) a source may try outside dialogs per
    /// `distinct_users_window` before it counts as an extension scan.
    pub distinct_users: usize,
    pub distinct_users_window: Duration,
    /// Table bounds: sources tracked, sources blocked at once.
    pub max_sources: usize,
    pub max_blocked: usize,
}

/// The User-Agents of SIP scanners seen in the wild (sipvicious and its forks, SIPcli,
/// VaxSIP, pplsip, sundayddr, iWar, sip-scan, SIPp-derived "smap").
pub const SCANNER_USER_AGENTS: &[&str] = &[
    "friendly-scanner",
    "sipvicious",
    "sipcli",
    "vaxsipuseragent",
    "pplsip",
    "sundayddr",
    "iwar",
    "sip-scan",
    "sipscan",
    "smap",
    "siparmyknife",
    "voip sip scanner",
];

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            trusted: Vec::new(),
            requests_per_second: 100,
            request_burst: 200,
            invites_per_second: 10,
            invite_burst: 20,
            unconfirmed_per_source: 20,
            max_unconfirmed: 200,
            unconfirmed_timeout: Duration::from_secs(32),
            refusals_per_second: 10,
            retry_after: 5,
            flood_block_after: 500,
            block_for: Duration::from_secs(600),
            scanner_user_agents: SCANNER_USER_AGENTS.iter().map(|s| s.to_string()).collect(),
            scanner_action: ScannerAction::Drop,
            distinct_users: 20,
            distinct_users_window: Duration::from_secs(10),
            max_sources: 16_384,
            max_blocked: 4_096,
        }
    }
}

/// The parts of a datagram admission looks at, found without parsing the message.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Peek<'a> {
    /// Request method, or `None` for a response.
    pub method: Option<&'a str>,
    /// Response status.
    pub status: Option<u16>,
    pub request_user: Option<&'a str>,
    pub call_id: Option<&'a str>,
    pub cseq_method: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    /// The To header has a tag: an in-dialog request (§12.2).
    pub to_tag: bool,
}

/// A quick look at a SIP message's start line and headers; `None` when the head is not
/// text or has no start line (the screen decides what to do with those).
pub fn peek(buf: &[u8]) -> Option<Peek<'_>> {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(buf.len().min(8192));
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.lines().skip_while(|l| l.trim().is_empty());
    let start = lines.next()?;
    let mut p = Peek::default();
    if let Some(rest) = start.strip_prefix("SIP/2.0 ") {
        p.status = rest.get(..3).and_then(|s| s.parse().ok());
    } else {
        let mut parts = start.split(' ');
        p.method = parts.next().filter(|m| !m.is_empty());
        let uri = parts.next().unwrap_or("");
        // sip:user@host — the user part, without parameters (RFC 3261 §19.1.1).
        p.request_user = uri
            .split_once(':')
            .and_then(|(_, rest)| rest.split_once('@'))
            .map(|(user, _)| user.split(';').next().unwrap_or(user));
    }
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        let value = value.trim();
        if name.eq_ignore_ascii_case("call-id") || name.eq_ignore_ascii_case("i") {
            p.call_id = Some(value);
        } else if name.eq_ignore_ascii_case("cseq") {
            p.cseq_method = value.split_whitespace().nth(1);
        } else if name.eq_ignore_ascii_case("user-agent") {
            p.user_agent = Some(value);
        } else if name.eq_ignore_ascii_case("to") || name.eq_ignore_ascii_case("t") {
            // A tag outside the URI's angle brackets (a `;tag=` inside <...> is a URI param).
            let params = value.rsplit_once('>').map_or(value, |(_, p)| p);
            p.to_tag = params.to_ascii_lowercase().contains(";tag=");
        }
    }
    Some(p)
}

/// What to do with one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Hand it on to the screen and the stack.
    Pass,
    /// Answer statelessly with this status (503 carries `Retry-After`), no transaction.
    Reply {
        status: u16,
        retry_after: Option<u32>,
    },
    /// Drop it unanswered.
    Drop,
}

/// Why a source was blocked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockReason {
    /// Its User-Agent is a known scanner's.
    ScannerUserAgent,
    /// It tried many distinct user parts (extension enumeration, `svwar`).
    ExtensionScan,
    /// It kept sending far over its limits.
    Flood,
    /// Repeated failed REGISTER authentication (from the registrar).
    AuthFailures,
}

impl BlockReason {
    /// The `reason` label of `phonetree_security_blocks_total`.
    pub fn label(self) -> &'static str {
        match self {
            BlockReason::ScannerUserAgent => "scanner_user_agent",
            BlockReason::ExtensionScan => "extension_scan",
            BlockReason::Flood => "flood",
            BlockReason::AuthFailures => "auth_failures",
        }
    }
}

/// One source blocked: for the security log and the counter.
#[derive(Clone, Debug, PartialEq)]
pub struct SecurityEvent {
    pub source: IpAddr,
    pub reason: BlockReason,
    pub blocked_for: Duration,
    /// What gave it away (the User-Agent, a count), never a message.
    pub detail: String,
}

/// A token bucket in thousandths of a token, refilled by elapsed time.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    milli: u64,
    at: Instant,
}

impl Bucket {
    fn full(now: Instant, burst: u32) -> Bucket {
        Bucket {
            milli: u64::from(burst.max(1)) * 1000,
            at: now,
        }
    }

    /// Takes one token if there is one. `rate == 0` is no limit.
    fn take(&mut self, now: Instant, rate: u32, burst: u32) -> bool {
        if rate == 0 {
            return true;
        }
        let cap = u64::from(burst.max(1)) * 1000;
        let elapsed = now.saturating_duration_since(self.at).as_micros() as u64;
        self.milli = (self.milli + elapsed * u64::from(rate) / 1000).min(cap);
        self.at = now;
        if self.milli >= 1000 {
            self.milli -= 1000;
            true
        } else {
            false
        }
    }
}

#[derive(Debug)]
struct Source {
    requests: Bucket,
    invites: Bucket,
    refusals: Bucket,
    unconfirmed: usize,
    /// Hashes of user parts tried outside dialogs since `users_since`.
    users: Vec<u64>,
    users_since: Instant,
    /// Requests over the limits in the second that started at `over_since`.
    over: u32,
    over_since: Instant,
    last_seen: Instant,
}

/// The admission state of one SIP socket. See the module docs.
pub struct Admission {
    config: AdmissionConfig,
    sources: HashMap<IpAddr, Source>,
    blocked: HashMap<IpAddr, Instant>,
    /// Call-ID → source (None when the source table was full) of admitted INVITEs without ACK.
    unconfirmed: HashMap<String, Option<IpAddr>>,
    /// (deadline, Call-ID) in admission order; the timeout is constant, so deadlines are too.
    unconfirmed_expiry: VecDeque<(Instant, String)>,
    agents: Arc<HashSet<IpAddr>>,
    events: VecDeque<SecurityEvent>,
    scanner_user_agents: Vec<String>,
}

impl Admission {
    pub fn new(config: AdmissionConfig) -> Admission {
        let scanner_user_agents = config
            .scanner_user_agents
            .iter()
            .map(|s| s.to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect();
        Admission {
            config,
            sources: HashMap::new(),
            blocked: HashMap::new(),
            unconfirmed: HashMap::new(),
            unconfirmed_expiry: VecDeque::new(),
            agents: Arc::default(),
            events: VecDeque::new(),
            scanner_user_agents,
        }
    }

    pub fn config(&self) -> &AdmissionConfig {
        &self.config
    }

    /// The addresses agents' phones registered from, as the registrar last published them.
    pub fn set_agent_sources(&mut self, agents: Arc<HashSet<IpAddr>>) {
        self.agents = agents;
    }

    /// Trusted sources and agents' phones skip every check.
    pub fn exempt(&self, ip: IpAddr) -> bool {
        self.agents.contains(&ip) || self.config.trusted.iter().any(|c| c.contains(ip))
    }

    /// Whether every datagram from `ip` is to be dropped now.
    pub fn is_blocked(&mut self, now: Instant, ip: IpAddr) -> bool {
        match self.blocked.get(&ip) {
            Some(until) if *until > now => true,
            Some(_) => {
                self.blocked.remove(&ip);
                false
            }
            None => false,
        }
    }

    /// Sources blocked now (expired entries may still be counted until they are looked at).
    pub fn blocked_count(&self) -> usize {
        self.blocked.len()
    }

    pub fn unconfirmed_count(&self) -> usize {
        self.unconfirmed.len()
    }

    pub fn tracked_sources(&self) -> usize {
        self.sources.len()
    }

    /// Blocks `ip` for `block_for` (from the registrar's failed-auth limit, or our own
    /// patterns). Exempt sources are never blocked.
    pub fn block(&mut self, now: Instant, ip: IpAddr, reason: BlockReason, detail: String) {
        if self.exempt(ip) || self.is_blocked(now, ip) {
            return;
        }
        if self.blocked.len() >= self.config.max_blocked {
            self.blocked.retain(|_, until| *until > now);
        }
        if self.blocked.len() >= self.config.max_blocked {
            // Full of live blocks: the one ending soonest makes room.
            if let Some(first) = self
                .blocked
                .iter()
                .min_by_key(|(_, u)| **u)
                .map(|(ip, _)| *ip)
            {
                self.blocked.remove(&first);
            }
        }
        self.blocked.insert(ip, now + self.config.block_for);
        // The source's admitted calls stay (they may be real); its counters go.
        self.sources.remove(&ip);
        if self.events.len() < 1024 {
            self.events.push_back(SecurityEvent {
                source: ip,
                reason,
                blocked_for: self.config.block_for,
                detail,
            });
        }
    }

    /// The next block to log and count.
    pub fn poll_event(&mut self) -> Option<SecurityEvent> {
        self.events.pop_front()
    }

    /// Decides on one request datagram from `ip` (`peek.method` is set).
    pub fn on_request(&mut self, now: Instant, ip: IpAddr, peek: &Peek<'_>) -> Verdict {
        self.expire(now);
        let method = peek.method.unwrap_or("");
        if method == "ACK" {
            // §17.1.1.3 / §13.2.2.4: the ACK confirms the call (or ends a refused one).
            if let Some(call_id) = peek.call_id {
                self.forget_call(call_id);
            }
        }
        if self.exempt(ip) {
            return Verdict::Pass;
        }
        if self.is_blocked(now, ip) {
            return Verdict::Drop;
        }
        if let Some(ua) = peek.user_agent {
            let lower = ua.to_ascii_lowercase();
            if self.scanner_user_agents.iter().any(|s| lower.contains(s)) {
                let detail = format!("User-Agent {:?}", truncate(ua, 64));
                self.block(now, ip, BlockReason::ScannerUserAgent, detail);
                return self.scanner_verdict();
            }
        }
        let config = &self.config;
        if !self.sources.contains_key(&ip) && self.sources.len() >= config.max_sources {
            let idle = Duration::from_secs(10);
            self.sources.retain(|_, s| {
                s.unconfirmed > 0 || now.saturating_duration_since(s.last_seen) < idle
            });
        }
        let tracked =
            self.sources.len() < self.config.max_sources || self.sources.contains_key(&ip);
        let new_invite = method == "INVITE" && !peek.to_tag;
        if !tracked {
            // Table full (many sources at once, possibly spoofed): no per-source limits for
            // the newcomer, but the global limit on unconfirmed calls still holds.
            if new_invite {
                return self.admit_invite(now, None, peek);
            }
            return Verdict::Pass;
        }
        let c = self.config.clone_limits();
        let source = self.sources.entry(ip).or_insert_with(|| Source {
            requests: Bucket::full(now, c.request_burst),
            invites: Bucket::full(now, c.invite_burst),
            refusals: Bucket::full(now, c.refusals),
            unconfirmed: 0,
            users: Vec::new(),
            users_since: now,
            over: 0,
            over_since: now,
            last_seen: now,
        });
        source.last_seen = now;
        // Extension scans: many distinct user parts outside dialogs (svwar, svcrack).
        if !peek.to_tag && c.distinct_users > 0 {
            if now.saturating_duration_since(source.users_since) >= c.distinct_users_window {
                source.users.clear();
                source.users_since = now;
            }
            if let Some(user) = peek.request_user {
                let h = hash(user);
                if !source.users.contains(&h) {
                    source.users.push(h);
                }
                if source.users.len() > c.distinct_users {
                    let detail = format!(
                        "{} distinct users within {} s",
                        source.users.len(),
                        c.distinct_users_window.as_secs()
                    );
                    self.block(now, ip, BlockReason::ExtensionScan, detail);
                    return self.scanner_verdict();
                }
            }
        }
        let over = if !source
            .requests
            .take(now, c.requests_per_second, c.request_burst)
        {
            true
        } else if new_invite {
            !source
                .invites
                .take(now, c.invites_per_second, c.invite_burst)
                || (c.unconfirmed_per_source > 0 && source.unconfirmed >= c.unconfirmed_per_source)
        } else {
            false
        };
        if over {
            if now.saturating_duration_since(source.over_since) >= Duration::from_secs(1) {
                source.over = 0;
                source.over_since = now;
            }
            source.over += 1;
            if c.flood_block_after > 0 && source.over > c.flood_block_after {
                let detail = format!(
                    "over {} requests past its limits in 1 s",
                    c.flood_block_after
                );
                self.block(now, ip, BlockReason::Flood, detail);
                return Verdict::Drop;
            }
            // An ACK or CANCEL is never answered (§17.1.1.3, §9.2 needs a transaction).
            if method == "ACK" || method == "CANCEL" {
                return Verdict::Drop;
            }
            return if source.refusals.take(now, c.refusals, c.refusals) {
                Verdict::Reply {
                    status: 503,
                    retry_after: Some(c.retry_after),
                }
            } else {
                Verdict::Drop
            };
        }
        if new_invite {
            return self.admit_invite(now, Some(ip), peek);
        }
        Verdict::Pass
    }

    /// A new INVITE within its source's limits: admitted unless every unconfirmed slot is
    /// taken (then 503, RFC 3261 §21.5.4).
    fn admit_invite(&mut self, now: Instant, ip: Option<IpAddr>, peek: &Peek<'_>) -> Verdict {
        let Some(call_id) = peek.call_id else {
            return Verdict::Pass; // the screen answers 400
        };
        if self.unconfirmed.contains_key(call_id) {
            return Verdict::Pass; // a retransmission: the transaction absorbs it
        }
        let max = self.config.max_unconfirmed;
        if max > 0 && self.unconfirmed.len() >= max {
            let refuse = match ip.and_then(|ip| self.sources.get_mut(&ip)) {
                Some(s) => {
                    let r = self.config.refusals_per_second;
                    s.refusals.take(now, r, r)
                }
                None => true,
            };
            return if refuse {
                Verdict::Reply {
                    status: 503,
                    retry_after: Some(self.config.retry_after),
                }
            } else {
                Verdict::Drop
            };
        }
        if let Some(s) = ip.and_then(|ip| self.sources.get_mut(&ip)) {
            s.unconfirmed += 1;
        }
        let deadline = now + self.config.unconfirmed_timeout;
        self.unconfirmed_expiry
            .push_back((deadline, call_id.to_string()));
        self.unconfirmed.insert(call_id.to_string(), ip);
        Verdict::Pass
    }

    /// We sent a final response ≥ 300 to an INVITE: that call will not hold ports.
    pub fn on_final_response(&mut self, call_id: &str) {
        self.forget_call(call_id);
    }

    fn forget_call(&mut self, call_id: &str) {
        if let Some(source) = self.unconfirmed.remove(call_id) {
            if let Some(s) = source.and_then(|ip| self.sources.get_mut(&ip)) {
                s.unconfirmed = s.unconfirmed.saturating_sub(1);
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some((deadline, _)) = self.unconfirmed_expiry.front() {
            if *deadline > now {
                break;
            }
            if let Some((_, call_id)) = self.unconfirmed_expiry.pop_front() {
                self.forget_call(&call_id);
            }
        }
        // Confirmed and refused calls leave stale entries behind; keep the queue bounded.
        if self.unconfirmed_expiry.len() > 4 * self.unconfirmed.len() + 1024 {
            let live = &self.unconfirmed;
            self.unconfirmed_expiry
                .retain(|(_, c)| live.contains_key(c));
        }
    }

    fn scanner_verdict(&self) -> Verdict {
        match self.config.scanner_action {
            ScannerAction::Drop => Verdict::Drop,
            ScannerAction::Reply => Verdict::Reply {
                status: 403,
                retry_after: None,
            },
        }
    }
}

/// The numbers `on_request` needs while it holds a source entry mutably.
struct Limits {
    request_burst: u32,
    requests_per_second: u32,
    invite_burst: u32,
    invites_per_second: u32,
    refusals: u32,
    unconfirmed_per_source: usize,
    distinct_users: usize,
    distinct_users_window: Duration,
    flood_block_after: u32,
    retry_after: u32,
}

impl AdmissionConfig {
    fn clone_limits(&self) -> Limits {
        Limits {
            request_burst: self.request_burst,
            requests_per_second: self.requests_per_second,
            invite_burst: self.invite_burst,
            invites_per_second: self.invites_per_second,
            refusals: self.refusals_per_second,
            unconfirmed_per_source: self.unconfirmed_per_source,
            distinct_users: self.distinct_users,
            distinct_users_window: self.distinct_users_window,
            flood_block_after: self.flood_block_after,
            retry_after: self.retry_after,
        }
    }
}

fn hash(s: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    fn invite(call_id: &str) -> Peek<'_> {
        Peek {
            method: Some("INVITE"),
            request_user: Some("ivr"),
            call_id: Some(call_id),
            cseq_method: Some("INVITE"),
            ..Peek::default()
        }
    }

    fn ack(call_id: &str) -> Peek<'_> {
        Peek {
            method: Some("ACK"),
            request_user: Some("ivr"),
            call_id: Some(call_id),
            to_tag: true,
            ..Peek::default()
        }
    }

    fn options() -> Peek<'static> {
        Peek {
            method: Some("OPTIONS"),
            request_user: Some("ivr"),
            call_id: Some("o"),
            ..Peek::default()
        }
    }

    fn admission(adjust: impl FnOnce(&mut AdmissionConfig)) -> Admission {
        let mut c = AdmissionConfig {
            flood_block_after: 0,
            ..AdmissionConfig::default()
        };
        adjust(&mut c);
        Admission::new(c)
    }

    const REFUSED: Verdict = Verdict::Reply {
        status: 503,
        retry_after: Some(5),
    };

    #[test]
    fn new_invites_over_the_per_source_rate_get_503_and_others_are_unaffected() {
        let mut a = admission(|c| {
            c.invites_per_second = 10;
            c.invite_burst = 10;
            c.unconfirmed_per_source = 0;
        });
        let t = Instant::now();
        let ids: Vec<String> = (0..11).map(|i| format!("c{i}")).collect();
        for id in &ids[..10] {
            assert_eq!(a.on_request(t, A, &invite(id)), Verdict::Pass);
        }
        assert_eq!(a.on_request(t, A, &invite(&ids[10])), REFUSED);
        assert_eq!(a.on_request(t, B, &invite("b1")), Verdict::Pass);
        // 100 ms later one token (10/s) is back.
        let later = t + Duration::from_millis(100);
        assert_eq!(a.on_request(later, A, &invite("c11")), Verdict::Pass);
        assert_eq!(a.on_request(later, A, &invite("c12")), REFUSED);
    }

    #[test]
    fn unconfirmed_calls_per_source_are_capped_until_ack() {
        let mut a = admission(|c| {
            c.invites_per_second = 0;
            c.unconfirmed_per_source = 3;
        });
        let t = Instant::now();
        for id in ["1", "2", "3"] {
            assert_eq!(a.on_request(t, A, &invite(id)), Verdict::Pass);
        }
        assert_eq!(a.on_request(t, A, &invite("4")), REFUSED);
        assert_eq!(a.on_request(t, A, &ack("2")), Verdict::Pass);
        assert_eq!(a.on_request(t, A, &invite("4")), Verdict::Pass);
        // A call refused downstream (final ≥ 300 sent) frees its slot too.
        a.on_final_response("1");
        assert_eq!(a.on_request(t, A, &invite("5")), Verdict::Pass);
        assert_eq!(a.unconfirmed_count(), 3);
    }

    #[test]
    fn unconfirmed_calls_expire_after_the_timeout() {
        let mut a = admission(|c| {
            c.invites_per_second = 0;
            c.unconfirmed_per_source = 2;
            c.unconfirmed_timeout = Duration::from_secs(32);
        });
        let t = Instant::now();
        a.on_request(t, A, &invite("1"));
        a.on_request(t, A, &invite("2"));
        assert_eq!(
            a.on_request(t + Duration::from_secs(31), A, &invite("3")),
            REFUSED
        );
        let after = t + Duration::from_secs(32);
        assert_eq!(a.on_request(after, A, &invite("3")), Verdict::Pass);
        assert_eq!(a.unconfirmed_count(), 1);
    }

    #[test]
    fn global_unconfirmed_limit_holds_across_sources_and_spares_confirmed_calls() {
        let mut a = admission(|c| {
            c.invites_per_second = 0;
            c.unconfirmed_per_source = 0;
            c.max_unconfirmed = 4;
        });
        let t = Instant::now();
        // Two confirmed calls from B: they never count.
        for id in ["b1", "b2"] {
            a.on_request(t, B, &invite(id));
            a.on_request(t, B, &ack(id));
        }
        for i in 0..4 {
            assert_eq!(a.on_request(t, A, &invite(&format!("a{i}"))), Verdict::Pass);
        }
        assert_eq!(a.on_request(t, B, &invite("b3")), REFUSED);
        assert_eq!(a.unconfirmed_count(), 4);
        // B's confirmed calls' in-dialog requests go on.
        let bye = Peek {
            method: Some("BYE"),
            to_tag: true,
            call_id: Some("b1"),
            ..Peek::default()
        };
        assert_eq!(a.on_request(t, B, &bye), Verdict::Pass);
    }

    #[test]
    fn retransmitted_invite_is_not_counted_twice() {
        let mut a = admission(|c| {
            c.invites_per_second = 0;
            c.max_unconfirmed = 1;
        });
        let t = Instant::now();
        assert_eq!(a.on_request(t, A, &invite("x")), Verdict::Pass);
        assert_eq!(a.on_request(t, A, &invite("x")), Verdict::Pass);
        assert_eq!(a.unconfirmed_count(), 1);
    }

    #[test]
    fn refusals_past_their_rate_are_dropped_unanswered() {
        let mut a = admission(|c| {
            c.invites_per_second = 1;
            c.invite_burst = 1;
            c.refusals_per_second = 2;
        });
        let t = Instant::now();
        assert_eq!(a.on_request(t, A, &invite("0")), Verdict::Pass);
        assert_eq!(a.on_request(t, A, &invite("1")), REFUSED);
        assert_eq!(a.on_request(t, A, &invite("2")), REFUSED);
        assert_eq!(a.on_request(t, A, &invite("3")), Verdict::Drop);
    }

    #[test]
    fn a_source_far_over_its_limits_is_blocked_then_released() {
        let mut a = admission(|c| {
            c.requests_per_second = 10;
            c.request_burst = 10;
            c.flood_block_after = 50;
            c.block_for = Duration::from_secs(60);
        });
        let t = Instant::now();
        // 10 within the burst, 50 over it: not yet.
        for _ in 0..60 {
            a.on_request(t, A, &options());
        }
        assert!(a.poll_event().is_none());
        assert_eq!(a.on_request(t, A, &options()), Verdict::Drop);
        let ev = a.poll_event().expect("a block event");
        assert_eq!((ev.source, ev.reason), (A, BlockReason::Flood));
        assert!(a.is_blocked(t + Duration::from_secs(59), A));
        assert!(!a.is_blocked(t + Duration::from_secs(60), A));
        assert!(!a.is_blocked(t, B));
        assert_eq!(a.on_request(t, B, &options()), Verdict::Pass);
    }

    #[test]
    fn scanner_user_agent_is_blocked_at_once() {
        let mut a = admission(|_| {});
        let t = Instant::now();
        let scan = Peek {
            user_agent: Some("friendly-scanner"),
            ..options()
        };
        assert_eq!(a.on_request(t, A, &scan), Verdict::Drop);
        assert!(a.is_blocked(t, A));
        assert_eq!(a.on_request(t, A, &options()), Verdict::Drop);
        let ev = a.poll_event().unwrap();
        assert_eq!(ev.reason, BlockReason::ScannerUserAgent);
        assert!(ev.detail.contains("friendly-scanner"), "{}", ev.detail);
        assert!(a.poll_event().is_none());
    }

    #[test]
    fn scanner_can_be_answered_403_instead() {
        let mut a = admission(|c| c.scanner_action = ScannerAction::Reply);
        let scan = Peek {
            user_agent: Some("VaxSIPUserAgent/3.1"),
            ..options()
        };
        let v = a.on_request(Instant::now(), A, &scan);
        assert_eq!(
            v,
            Verdict::Reply {
                status: 403,
                retry_after: None
            }
        );
    }

    #[test]
    fn many_distinct_users_from_one_source_is_an_extension_scan() {
        let mut a = admission(|c| {
            c.distinct_users = 5;
            c.distinct_users_window = Duration::from_secs(10);
        });
        let t = Instant::now();
        let users: Vec<String> = (100..106).map(|u| u.to_string()).collect();
        for u in &users[..5] {
            let p = Peek {
                method: Some("REGISTER"),
                request_user: Some(u),
                ..Peek::default()
            };
            assert_eq!(a.on_request(t, A, &p), Verdict::Pass);
        }
        // The same users again are not new.
        let again = Peek {
            method: Some("REGISTER"),
            request_user: Some("100"),
            ..Peek::default()
        };
        assert_eq!(a.on_request(t, A, &again), Verdict::Pass);
        let sixth = Peek {
            method: Some("REGISTER"),
            request_user: Some(&users[5]),
            ..Peek::default()
        };
        assert_eq!(a.on_request(t, A, &sixth), Verdict::Drop);
        assert_eq!(a.poll_event().unwrap().reason, BlockReason::ExtensionScan);
    }

    #[test]
    fn distinct_users_window_restarts() {
        let mut a = admission(|c| c.distinct_users = 2);
        let t = Instant::now();
        for (i, u) in ["1", "2", "3"].iter().enumerate() {
            let p = Peek {
                method: Some("OPTIONS"),
                request_user: Some(u),
                ..Peek::default()
            };
            let at = t + Duration::from_secs(11 * i as u64);
            assert_eq!(a.on_request(at, A, &p), Verdict::Pass);
        }
    }

    #[test]
    fn trusted_and_agent_sources_skip_every_check() {
        let mut a = admission(|c| {
            c.trusted = vec![Cidr::parse("192.0.2.0/31").unwrap()];
            c.invites_per_second = 1;
            c.invite_burst = 1;
            c.max_unconfirmed = 1;
        });
        let t = Instant::now();
        let scan = Peek {
            user_agent: Some("sipvicious"),
            ..invite("s")
        };
        for i in 0..50 {
            assert_eq!(a.on_request(t, A, &invite(&format!("{i}"))), Verdict::Pass);
        }
        assert_eq!(a.on_request(t, A, &scan), Verdict::Pass);
        let agent: IpAddr = "198.51.100.7".parse().unwrap();
        a.set_agent_sources(Arc::new([agent].into_iter().collect()));
        for i in 0..5 {
            assert_eq!(
                a.on_request(t, agent, &invite(&format!("g{i}"))),
                Verdict::Pass
            );
        }
        a.block(t, agent, BlockReason::AuthFailures, String::new());
        assert!(!a.is_blocked(t, agent));
        assert_eq!(a.unconfirmed_count(), 0);
    }

    #[test]
    fn tables_stay_bounded() {
        let mut a = admission(|c| {
            c.max_sources = 100;
            c.max_blocked = 10;
            c.max_unconfirmed = 50;
            c.unconfirmed_per_source = 0;
        });
        let t = Instant::now();
        for i in 0..1000u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            a.on_request(t, ip, &invite(&format!("x{i}")));
            a.block(t, ip, BlockReason::Flood, String::new());
        }
        assert!(a.tracked_sources() <= 100, "{}", a.tracked_sources());
        assert!(a.blocked_count() <= 10, "{}", a.blocked_count());
        assert!(a.unconfirmed_count() <= 50, "{}", a.unconfirmed_count());
        assert!(a.unconfirmed_expiry.len() <= 4 * 50 + 1024);
    }

    #[test]
    fn peek_reads_what_admission_needs() {
        let msg = b"INVITE sip:1001;x=y@pbx SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nt: <sip:1001@pbx;tag=in-uri>\r\n\
                    i: abc@h\r\nCSeq: 1 INVITE\r\nUser-Agent: friendly-scanner\r\n\r\n";
        let p = peek(msg).unwrap();
        assert_eq!(p.method, Some("INVITE"));
        assert_eq!(p.request_user, Some("1001"));
        assert_eq!(p.call_id, Some("abc@h"));
        assert_eq!(p.user_agent, Some("friendly-scanner"));
        assert!(!p.to_tag, "a tag inside <> is a URI parameter");
        let resp = b"SIP/2.0 503 Service Unavailable\r\nCall-ID: z\r\nCSeq: 7 INVITE\r\nTo: <sip:a@b>;tag=1\r\n\r\n";
        let p = peek(resp).unwrap();
        assert_eq!(
            (p.status, p.cseq_method, p.to_tag),
            (Some(503), Some("INVITE"), true)
        );
        assert!(peek(b"\xff\xfe garbage").is_none());
    }

    #[test]
    fn cidr_parses_and_matches() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains("10.1.200.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert!(
            Cidr::parse("127.0.0.1")
                .unwrap()
                .contains("127.0.0.1".parse().unwrap())
        );
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(
            Cidr::parse("2001:db8::/32")
                .unwrap()
                .contains("2001:db8::1".parse().unwrap())
        );
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("ten").is_err());
    }
}
