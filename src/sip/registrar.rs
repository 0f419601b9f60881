//! The registrar for agent phones (RFC 3261 §10.3) with Digest authentication (RFC 3261
//! §22.4, RFC 7616, RFC 8760), as a sans-IO core: `handle_register(now, request, source)`
//! returns the response to send; bindings, expiry and brute-force blocking are state here;
//! `poll_timeout`/`handle_timeout` drive expiry; `poll_event` reports what the runtime needs.
//!
//! Nonces are stateless to verify: `hex(issued_ms) hex(counter) hex(HMAC-SHA-256(key, ...))`,
//! so a challenge costs no memory and cannot be forged. Only nonces that have been *used*
//! are remembered (their highest `nc`, for replay detection, RFC 7616 §3.4.5), in a bounded map.

use super::digest::{self, Algorithm, Credentials};
use super::message::{raw_uri, split_header_list};
use super::rsip::headers::{Header, make_header};
use super::rsip::prelude::HeadersExt;
use super::{Method, Request, Response};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
}

#[derive(Debug, Clone)]
pub struct RegistrarConfig {
    pub realm: String,
    pub accounts: Vec<Account>,
    /// Shorter non-zero expiries get 423 with `Min-Expires` (RFC 3261 §10.3 step 7).
    pub min_expires: Duration,
    /// Longer expiries are shortened to this (§10.3 step 7: "MAY shorten").
    pub max_expires: Duration,
    /// Used when neither the contact `expires` param nor `Expires` is present.
    pub default_expires: Duration,
    /// A correct answer to an older nonce gets 401 with `stale=true` (RFC 7616 §3.3).
    pub nonce_lifetime: Duration,
    /// Bindings per agent; the least recently refreshed are dropped beyond this.
    pub max_contacts: usize,
    /// Failed authentications per source (IPv4 address or IPv6 /64) and per username within
    /// `failure_window` before that key is blocked for `block_for`; each further block of the
    /// same key doubles, up to 16 × `block_for`. 0 disables blocking.
    pub max_failures: u32,
    pub failure_window: Duration,
    pub block_for: Duration,
    /// The digest algorithms challenged with, in this order, and the only ones accepted
    /// (RFC 8760). MD5 alone by default: some deployed clients fail outright when any
    /// challenge names an algorithm they do not know (baresip 1.0's libre answers ENOSYS
    /// to a SHA-256 WWW-Authenticate even beside an MD5 one), and SIPp 3.6 reads only the
    /// first challenge.
    pub algorithms: Vec<Algorithm>,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            realm: "phonetree".to_string(),
            accounts: Vec::new(),
            min_expires: Duration::from_secs(60),
            max_expires: Duration::from_secs(3600),
            default_expires: Duration::from_secs(3600),
            nonce_lifetime: Duration::from_secs(300),
            max_contacts: 10,
            max_failures: 5,
            failure_window: Duration::from_secs(60),
            block_for: Duration::from_secs(300),
            algorithms: vec![Algorithm::Md5],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The agent id the bindings belong to.
    pub agent: String,
    /// The Digest username, and the user part of the address of record.
    pub username: String,
    pub secret: Secret,
}

/// How an account proves itself. HA1 = H(username ":" realm ":" password), lowercase hex
/// (RFC 7616 §3.4.2); with only one of them stored, only that algorithm can succeed.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Password(String),
    Ha1 {
        md5: Option<String>,
        sha256: Option<String>,
    },
}

impl std::fmt::Debug for Secret {
    // Secrets never reach logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Password(_) => f.write_str("Password(***)"),
            Secret::Ha1 { md5, sha256 } => write!(
                f,
                "Ha1 {{ md5: {}, sha256: {} }}",
                if md5.is_some() { "***" } else { "none" },
                if sha256.is_some() { "***" } else { "none" }
            ),
        }
    }
}

/// One registered contact of an agent (RFC 3261 §10.3 step 7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The Contact URI verbatim: the Request-URI of INVITEs to this phone.
    pub contact: String,
    /// Where the REGISTER came from (after NAT).
    pub source: SocketAddr,
    pub transport: Transport,
    pub expires: Instant,
    pub call_id: String,
    pub cseq: u32,
    pub user_agent: Option<String>,
    /// When this binding was last created or refreshed (orders "most recent first").
    pub updated: Instant,
}

impl Binding {
    /// Where to send requests for this binding: always the packet source of the REGISTER
    /// (symmetric signalling, like Kamailio's `force_rport` + `fix_nated_contact`). Phones
    /// behind NAT put private addresses in Contact; the source is the NAT's pinhole that the
    /// phone keeps open by re-registering, and for a phone on the open network the source
    /// equals the Contact host anyway. The Contact URI stays the Request-URI.
    pub fn destination(&self) -> SocketAddr {
        self.source
    }
}

#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct BindingSnapshot {
    pub agent: String,
    pub username: String,
    pub contact: String,
    pub source: SocketAddr,
    pub transport: Transport,
    pub expires_in_s: u64,
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityKind {
    /// Known user, wrong digest response.
    WrongPassword,
    /// Username with no account (answered exactly like a wrong password).
    UnknownUser,
    /// The account has no HA1 for the algorithm the client chose (counted like a failure).
    NoCredentialForAlgorithm,
    /// A correct response with a nonce count already used for that nonce (RFC 7616 §3.4.5).
    Replay,
    /// Refused because the source or username is blocked.
    Blocked,
    /// Authenticated, but To/From name another user (RFC 3261 §10.3 step 3).
    IdentityMismatch,
    /// Malformed REGISTER or Authorization.
    BadRequest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrarEvent {
    /// The agent's first binding appeared.
    Registered { agent: String },
    /// The agent's last binding went (expired, `Expires: 0`, `*`, or account removed).
    Unregistered { agent: String },
    SecurityEvent {
        source: SocketAddr,
        username: Option<String>,
        kind: SecurityKind,
    },
}

/// Used nonces remembered for replay detection; beyond this the oldest is forgotten and
/// every nonce at or below it becomes stale (safe: the client just re-authenticates).
const MAX_TRACKED_NONCES: usize = 8192;
/// Failure trackers kept per kind; beyond this new keys are not tracked (an attacker with
/// that many addresses is still caught by the per-username tracker).
const MAX_TRACKERS: usize = 65536;
/// Queue bound; security events beyond it are dropped, binding events never.
const MAX_EVENTS: usize = 4096;
/// A repeated block doubles, up to 2^4 × `block_for`.
const MAX_BLOCK_DOUBLINGS: u32 = 4;
/// Bytes of MAC kept in a nonce (128 bits is plenty against forgery).
const NONCE_MAC_LEN: usize = 16;

struct AgentState {
    username: String,
    /// Most recently refreshed first.
    bindings: Vec<Binding>,
}

#[derive(Default)]
struct Tracker {
    failures: VecDeque<Instant>,
    blocked_until: Option<Instant>,
    /// How many times this key has been blocked (for doubling).
    strikes: u32,
    last: Option<Instant>,
}

impl Tracker {
    fn blocked(&self, now: Instant) -> Option<Duration> {
        self.blocked_until
            .filter(|until| *until > now)
            .map(|until| until - now)
    }

    /// Records a failure; true when this one starts a block.
    fn fail(&mut self, now: Instant, cfg: &RegistrarConfig) -> bool {
        self.last = Some(now);
        self.age(now, cfg.failure_window);
        self.failures.push_back(now);
        if cfg.max_failures == 0 || self.failures.len() < cfg.max_failures as usize {
            return false;
        }
        let doublings = self.strikes.min(MAX_BLOCK_DOUBLINGS);
        self.strikes = self.strikes.saturating_add(1);
        self.blocked_until = Some(now + cfg.block_for * (1u32 << doublings));
        self.failures.clear();
        true
    }

    fn age(&mut self, now: Instant, window: Duration) {
        while self
            .failures
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= window)
        {
            self.failures.pop_front();
        }
        if self.blocked_until.is_some_and(|u| u <= now) {
            self.blocked_until = None;
        }
    }

    /// Nothing left to remember: no recent failures, no block, and quiet long enough that
    /// the doubling history may be forgotten.
    fn idle(&self, now: Instant, cfg: &RegistrarConfig) -> bool {
        self.failures.is_empty()
            && self.blocked_until.is_none()
            && self
                .last
                .is_none_or(|l| now.saturating_duration_since(l) >= max_block(cfg))
    }

    fn next_deadline(&self, cfg: &RegistrarConfig) -> Option<Instant> {
        [
            self.failures.front().map(|t| *t + cfg.failure_window),
            self.blocked_until,
            self.last.map(|l| l + max_block(cfg)),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

fn max_block(cfg: &RegistrarConfig) -> Duration {
    cfg.block_for * (1u32 << MAX_BLOCK_DOUBLINGS)
}

/// IPv6 hosts get a /64 each, so one subscriber is one key.
fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

pub struct Registrar {
    config: RegistrarConfig,
    /// By username.
    accounts: HashMap<String, Account>,
    /// By agent id.
    agents: HashMap<String, AgentState>,
    key: [u8; 32],
    epoch: Instant,
    nonce_counter: u64,
    /// Used nonces: counter → (issued ms since epoch, highest nc accepted).
    used_nonces: BTreeMap<u64, (u64, u32)>,
    /// Nonces with a lower counter were forgotten: treat them as stale.
    nonce_floor: u64,
    opaque: String,
    by_source: HashMap<IpAddr, Tracker>,
    by_user: HashMap<String, Tracker>,
    events: VecDeque<RegistrarEvent>,
}

/// The outcome of checking credentials, before the bindings are touched.
enum AuthOutcome {
    Ok(Account),
    /// 401 with fresh challenges; `stale` per RFC 7616 §3.3.
    Challenge {
        stale: bool,
    },
}

/// What the Contact headers ask for (RFC 3261 §10.3 steps 6-7).
enum ContactRequest {
    /// No Contact: a query for the current bindings (§10.3 step 8 still applies).
    Query,
    /// `Contact: *` with `Expires: 0`.
    RemoveAll,
    /// Each contact with its requested expiry in seconds (None: not given per contact).
    Update(Vec<(String, Option<u64>)>),
}

/// The fields of a REGISTER that every step needs, checked up front.
struct RegisterFields {
    to_user: String,
    from_user: String,
    call_id: String,
    cseq: u32,
    expires_header: Option<u64>,
    contacts: ContactRequest,
    authorization: Option<String>,
    user_agent: Option<String>,
}

impl Registrar {
    pub fn new(now: Instant, config: RegistrarConfig, secret: [u8; 32]) -> Registrar {
        let opaque = digest::hex(&digest::hmac_sha256(&secret, b"phonetree opaque")[..8]);
        let mut r = Registrar {
            config: config.clone(),
            accounts: HashMap::new(),
            agents: HashMap::new(),
            key: secret,
            epoch: now,
            nonce_counter: 0,
            used_nonces: BTreeMap::new(),
            nonce_floor: 0,
            opaque,
            by_source: HashMap::new(),
            by_user: HashMap::new(),
            events: VecDeque::new(),
        };
        r.reconfigure(config);
        r
    }

    /// Applies a new configuration. Bindings of agents whose account is still there (same
    /// agent id) are kept; the others are dropped with `Unregistered`. Nonces stay valid.
    pub fn reconfigure(&mut self, config: RegistrarConfig) {
        // A later duplicate username wins; the config loader is expected to reject them.
        self.accounts = config
            .accounts
            .iter()
            .map(|a| (a.username.clone(), a.clone()))
            .collect();
        let mut gone: Vec<String> = Vec::new();
        self.agents.retain(|agent, state| {
            match config.accounts.iter().find(|a| &a.agent == agent) {
                Some(a) => {
                    state.username = a.username.clone();
                    true
                }
                None => {
                    if !state.bindings.is_empty() {
                        gone.push(agent.clone());
                    }
                    false
                }
            }
        });
        for agent in gone {
            self.push_event(RegistrarEvent::Unregistered { agent });
        }
        for state in self.agents.values_mut() {
            state.bindings.truncate(config.max_contacts.max(1));
        }
        self.config = config;
    }

    pub fn handle_register(
        &mut self,
        now: Instant,
        request: &Request,
        source: SocketAddr,
        transport: Transport,
    ) -> Response {
        self.handle_timeout(now);
        if request.method != Method::Register {
            return reply(request, 405);
        }
        let fields = match read_fields(request) {
            Ok(f) => f,
            Err(_) => {
                self.security(source, None, SecurityKind::BadRequest);
                return reply(request, 400);
            }
        };
        let credentials = match fields
            .authorization
            .as_deref()
            .map(digest::parse_authorization)
        {
            None => None,
            Some(Ok(c)) => Some(c),
            Some(Err(e)) => {
                tracing::debug!(%source, error = %e, "REGISTER with unusable Authorization");
                self.security(
                    source,
                    Some(fields.to_user.clone()),
                    SecurityKind::BadRequest,
                );
                return reply(request, 400);
            }
        };
        let claimed = credentials
            .as_ref()
            .map(|c| c.username.clone())
            .unwrap_or_else(|| fields.to_user.clone());
        if let Some(wait) = self.blocked(now, source, &claimed) {
            self.security(source, Some(claimed), SecurityKind::Blocked);
            let mut resp = reply(request, 403);
            resp.headers.push(make_header(
                "Retry-After",
                wait.as_secs().max(1).to_string(),
            ));
            return resp;
        }
        let Some(credentials) = credentials else {
            return self.challenge(now, request, false);
        };
        let account = match self.authenticate(now, request, source, &credentials) {
            AuthOutcome::Ok(a) => a,
            AuthOutcome::Challenge { stale } => return self.challenge(now, request, stale),
        };
        // §10.3 step 3: the authenticated user may only register its own address of record.
        if fields.to_user != account.username || fields.from_user != account.username {
            self.security(
                source,
                Some(account.username.clone()),
                SecurityKind::IdentityMismatch,
            );
            return reply(request, 403);
        }
        self.apply(now, request, &fields, &account, source, transport)
    }

    /// Binding expiry (`Unregistered` when an agent's last binding goes), failure counters
    /// and blocks ageing out, forgotten nonces.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut gone = Vec::new();
        for (agent, state) in self.agents.iter_mut() {
            let had = !state.bindings.is_empty();
            state.bindings.retain(|b| b.expires > now);
            if had && state.bindings.is_empty() {
                gone.push(agent.clone());
            }
        }
        gone.sort();
        for agent in gone {
            self.push_event(RegistrarEvent::Unregistered { agent });
        }
        let cfg = &self.config;
        for t in self.by_source.values_mut().chain(self.by_user.values_mut()) {
            t.age(now, cfg.failure_window);
        }
        self.by_source.retain(|_, t| !t.idle(now, cfg));
        self.by_user.retain(|_, t| !t.idle(now, cfg));
        // Nonces past their lifetime are refused as stale by age alone: their nc can go.
        let now_ms = self.ms(now);
        let lifetime_ms = self.config.nonce_lifetime.as_millis() as u64;
        self.used_nonces
            .retain(|_, (issued, _)| now_ms.saturating_sub(*issued) <= lifetime_ms);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let bindings = self
            .agents
            .values()
            .flat_map(|s| s.bindings.iter().map(|b| b.expires))
            .min();
        let trackers = self
            .by_source
            .values()
            .chain(self.by_user.values())
            .filter_map(|t| t.next_deadline(&self.config))
            .min();
        let nonces = self
            .used_nonces
            .values()
            .map(|(issued, _)| *issued)
            .min()
            .map(|ms| {
                self.epoch
                    + Duration::from_millis(ms)
                    + self.config.nonce_lifetime
                    + Duration::from_millis(1)
            });
        [bindings, trackers, nonces].into_iter().flatten().min()
    }

    pub fn poll_event(&mut self) -> Option<RegistrarEvent> {
        self.events.pop_front()
    }

    /// The agent's bindings, most recently refreshed first. Expired ones are removed by
    /// `handle_timeout`, which the runtime calls at `poll_timeout`.
    pub fn bindings(&self, agent: &str) -> Vec<Binding> {
        self.agents
            .get(agent)
            .map(|s| s.bindings.clone())
            .unwrap_or_default()
    }

    /// Every unexpired binding, by agent id then recency (for the admin API).
    pub fn snapshot(&self, now: Instant) -> Vec<BindingSnapshot> {
        let mut agents: Vec<(&String, &AgentState)> = self.agents.iter().collect();
        agents.sort_by(|a, b| a.0.cmp(b.0));
        agents
            .into_iter()
            .flat_map(|(agent, state)| {
                state
                    .bindings
                    .iter()
                    .filter(move |b| b.expires > now)
                    .map(move |b| BindingSnapshot {
                        agent: agent.clone(),
                        username: state.username.clone(),
                        contact: b.contact.clone(),
                        source: b.source,
                        transport: b.transport,
                        expires_in_s: remaining_secs(b.expires, now),
                        user_agent: b.user_agent.clone(),
                    })
            })
            .collect()
    }

    fn ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64
    }

    fn push_event(&mut self, event: RegistrarEvent) {
        if self.events.len() >= MAX_EVENTS && matches!(event, RegistrarEvent::SecurityEvent { .. })
        {
            return;
        }
        self.events.push_back(event);
    }

    fn security(&mut self, source: SocketAddr, username: Option<String>, kind: SecurityKind) {
        tracing::info!(%source, ?username, ?kind, "registrar security event");
        self.push_event(RegistrarEvent::SecurityEvent {
            source,
            username,
            kind,
        });
    }

    /// How long the source or the username is still blocked. A username block does not
    /// apply from an address that already holds a binding of that account, so a prober
    /// cannot knock an agent's working phone off by failing in its name.
    fn blocked(&self, now: Instant, source: SocketAddr, username: &str) -> Option<Duration> {
        let by_source = self
            .by_source
            .get(&source_key(source.ip()))
            .and_then(|t| t.blocked(now));
        let by_user = self
            .by_user
            .get(username)
            .and_then(|t| t.blocked(now))
            .filter(|_| {
                let holds_binding = self
                    .accounts
                    .get(username)
                    .and_then(|a| self.agents.get(&a.agent))
                    .is_some_and(|s| s.bindings.iter().any(|b| b.source.ip() == source.ip()));
                !holds_binding
            });
        by_source.max(by_user)
    }

    fn record_failure(
        &mut self,
        now: Instant,
        source: SocketAddr,
        username: &str,
        kind: SecurityKind,
    ) {
        self.security(source, Some(username.to_string()), kind);
        let key = source_key(source.ip());
        let mut started = false;
        let cfg = &self.config;
        if self.by_source.len() < MAX_TRACKERS || self.by_source.contains_key(&key) {
            started |= self.by_source.entry(key).or_default().fail(now, cfg);
        }
        if self.by_user.len() < MAX_TRACKERS || self.by_user.contains_key(username) {
            started |= self
                .by_user
                .entry(username.to_string())
                .or_default()
                .fail(now, cfg);
        }
        if started {
            tracing::warn!(%source, username, "registrar: blocking after repeated failures");
            self.security(source, Some(username.to_string()), SecurityKind::Blocked);
        }
    }

    fn new_nonce(&mut self, now: Instant) -> String {
        self.nonce_counter += 1;
        let mut body = [0u8; 16];
        body[..8].copy_from_slice(&self.ms(now).to_be_bytes());
        body[8..].copy_from_slice(&self.nonce_counter.to_be_bytes());
        let mac = digest::hmac_sha256(&self.key, &body);
        format!(
            "{}{}",
            digest::hex(&body),
            digest::hex(&mac[..NONCE_MAC_LEN])
        )
    }

    /// (issued ms, counter) of a nonce we made, or None for anything else.
    fn open_nonce(&self, nonce: &str) -> Option<(u64, u64)> {
        let raw = unhex(nonce)?;
        if raw.len() != 16 + NONCE_MAC_LEN {
            return None;
        }
        let mac = digest::hmac_sha256(&self.key, &raw[..16]);
        if !digest::constant_time_eq(&mac[..NONCE_MAC_LEN], &raw[16..]) {
            return None;
        }
        let issued = u64::from_be_bytes(raw[..8].try_into().ok()?);
        let counter = u64::from_be_bytes(raw[8..16].try_into().ok()?);
        Some((issued, counter))
    }

    /// 401 with one challenge per configured algorithm, in the configured order (RFC 7616
    /// §3.7: most preferred first). Operators who list SHA-256 should list MD5 first if
    /// SIPp 3.6 (Debian's sip-tester) must register: it joins all WWW-Authenticate headers
    /// and reads the first `algorithm=`, `nonce=` and `realm=` it finds, and fails on
    /// anything but MD5. Clients that choose by strength (RFC 8760 §2.4) still pick SHA-256.
    fn challenge(&mut self, now: Instant, request: &Request, stale: bool) -> Response {
        let nonce = self.new_nonce(now);
        let mut resp = reply(request, 401);
        for alg in self.config.algorithms.clone() {
            resp.headers.push(make_header(
                "WWW-Authenticate",
                digest::challenge(alg, &self.config.realm, &nonce, &self.opaque, stale),
            ));
        }
        resp
    }

    fn authenticate(
        &mut self,
        now: Instant,
        request: &Request,
        source: SocketAddr,
        c: &Credentials,
    ) -> AuthOutcome {
        // A response to another realm, a nonce we did not make (e.g. from before a restart)
        // or a changed opaque cannot be checked at all: re-challenge without counting, which
        // gives a prober nothing to learn.
        if c.realm != self.config.realm
            || c.opaque.as_deref().is_some_and(|o| o != self.opaque)
            || !self.config.algorithms.contains(&c.algorithm)
        {
            return AuthOutcome::Challenge { stale: false };
        }
        let Some((issued_ms, counter)) = self.open_nonce(&c.nonce) else {
            return AuthOutcome::Challenge { stale: false };
        };
        let account = self.accounts.get(&c.username).cloned();
        // Unknown users are checked against a keyed dummy HA1 so the work and the answer are
        // those of a wrong password (no user enumeration).
        let (ha1, failure) = match &account {
            None => (
                digest::ha1(
                    c.algorithm,
                    &c.username,
                    &self.config.realm,
                    &digest::hex(&digest::hmac_sha256(&self.key, b"phonetree unknown user")),
                ),
                SecurityKind::UnknownUser,
            ),
            Some(a) => match (&a.secret, c.algorithm) {
                (Secret::Password(p), alg) => (
                    digest::ha1(alg, &c.username, &self.config.realm, p),
                    SecurityKind::WrongPassword,
                ),
                (Secret::Ha1 { md5: Some(h), .. }, Algorithm::Md5)
                | (
                    Secret::Ha1 {
                        sha256: Some(h), ..
                    },
                    Algorithm::Sha256,
                ) => (h.trim().to_ascii_lowercase(), SecurityKind::WrongPassword),
                (Secret::Ha1 { .. }, _) => (String::new(), SecurityKind::NoCredentialForAlgorithm),
            },
        };
        let expected = digest::response(
            c.algorithm,
            &ha1,
            &c.nonce,
            &c.nc_text,
            &c.cnonce,
            &c.qop,
            request.method.to_string().as_str(),
            &c.uri,
        );
        let good = !ha1.is_empty()
            && ha1.len() == c.algorithm.hex_len()
            && digest::constant_time_eq(expected.as_bytes(), c.response.as_bytes());
        let (true, Some(account)) = (good, account) else {
            self.record_failure(now, source, &c.username, failure);
            return AuthOutcome::Challenge { stale: false };
        };
        // The digest is right: now the nonce's age and count (RFC 7616 §3.3 stale, §3.4.5 nc).
        let now_ms = self.ms(now);
        let lifetime_ms = self.config.nonce_lifetime.as_millis() as u64;
        if issued_ms > now_ms || now_ms - issued_ms > lifetime_ms || counter < self.nonce_floor {
            return AuthOutcome::Challenge { stale: true };
        }
        match self.used_nonces.get_mut(&counter) {
            Some((_, last)) if c.nc <= *last => {
                self.security(source, Some(c.username.clone()), SecurityKind::Replay);
                return AuthOutcome::Challenge { stale: false };
            }
            Some((_, last)) => *last = c.nc,
            None => {
                if self.used_nonces.len() >= MAX_TRACKED_NONCES
                    && let Some((oldest, _)) = self.used_nonces.pop_first()
                {
                    self.nonce_floor = self.nonce_floor.max(oldest + 1);
                }
                self.used_nonces.insert(counter, (issued_ms, c.nc));
            }
        }
        // A success clears the username's recent failures (not its block history).
        if let Some(t) = self.by_user.get_mut(&c.username) {
            t.failures.clear();
        }
        AuthOutcome::Ok(account)
    }

    /// §10.3 steps 6-8 for an authenticated, authorised REGISTER.
    fn apply(
        &mut self,
        now: Instant,
        request: &Request,
        f: &RegisterFields,
        account: &Account,
        source: SocketAddr,
        transport: Transport,
    ) -> Response {
        let cfg = &self.config;
        let min = cfg.min_expires.as_secs();
        let max = cfg.max_expires.as_secs().max(1);
        let state = self
            .agents
            .entry(account.agent.clone())
            .or_insert_with(|| AgentState {
                username: account.username.clone(),
                bindings: Vec::new(),
            });
        let had_bindings = !state.bindings.is_empty();
        // §10.3 step 7: a binding from the same Call-ID with a CSeq not above the stored one
        // is out of order; the whole request fails and nothing changes.
        let out_of_order = |b: &Binding| b.call_id == f.call_id && f.cseq <= b.cseq;
        match &f.contacts {
            ContactRequest::Query => {}
            ContactRequest::RemoveAll => {
                if state.bindings.iter().any(out_of_order) {
                    return reply(request, 500);
                }
                state.bindings.clear();
            }
            ContactRequest::Update(contacts) => {
                let mut plan: Vec<(&str, u64)> = Vec::with_capacity(contacts.len());
                for (uri, param) in contacts {
                    let secs = param
                        .or(f.expires_header)
                        .unwrap_or(cfg.default_expires.as_secs());
                    if secs != 0 && secs < min {
                        let mut resp = reply(request, 423);
                        resp.headers
                            .push(make_header("Min-Expires", min.to_string()));
                        return resp;
                    }
                    if state
                        .bindings
                        .iter()
                        .any(|b| b.contact == *uri && out_of_order(b))
                    {
                        return reply(request, 500);
                    }
                    plan.push((uri.as_str(), secs.min(max)));
                }
                let mut touched: Vec<Binding> = Vec::new();
                for (uri, secs) in plan {
                    state.bindings.retain(|b| b.contact != uri);
                    touched.retain(|b| b.contact != uri);
                    if secs > 0 {
                        touched.push(Binding {
                            contact: uri.to_string(),
                            source,
                            transport,
                            expires: now + Duration::from_secs(secs),
                            call_id: f.call_id.clone(),
                            cseq: f.cseq,
                            user_agent: f.user_agent.clone(),
                            updated: now,
                        });
                    }
                }
                touched.append(&mut state.bindings);
                // Beyond the limit the least recently refreshed go.
                touched.truncate(cfg.max_contacts.max(1));
                state.bindings = touched;
            }
        }
        // §10.3 step 8: the 200 lists every current binding with its remaining time.
        let mut resp = reply(request, 200);
        for b in &state.bindings {
            resp.headers.push(make_header(
                "Contact",
                format!("<{}>;expires={}", b.contact, remaining_secs(b.expires, now)),
            ));
        }
        let has_bindings = !state.bindings.is_empty();
        let agent = account.agent.clone();
        match (had_bindings, has_bindings) {
            (false, true) => self.push_event(RegistrarEvent::Registered { agent }),
            (true, false) => self.push_event(RegistrarEvent::Unregistered { agent }),
            _ => {}
        }
        resp
    }
}

/// Whole seconds left, rounded up so a live binding never shows 0.
fn remaining_secs(expires: Instant, now: Instant) -> u64 {
    let d = expires.saturating_duration_since(now);
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn reply(request: &Request, status: u16) -> Response {
    // §8.2.6.2: a To tag on every final response.
    super::message::response(
        request,
        status,
        Some(&super::message::new_tag()),
        None,
        None,
    )
}

/// Why a REGISTER is malformed (all answer 400).
#[derive(Debug, thiserror::Error)]
enum RegisterError {
    #[error("missing or unparseable {0}")]
    Header(&'static str),
    #[error("Contact * needs Expires: 0 and no other contact")]
    BadStar,
}

/// The user part of a To/From value, parsed through rsip so a garbled URI is refused.
fn header_user(value: &str, name: &'static str) -> Result<String, RegisterError> {
    let uri = raw_uri(value).ok_or(RegisterError::Header(name))?;
    let uri = super::rsip::Uri::try_from(uri).map_err(|_| RegisterError::Header(name))?;
    Ok(uri.user().unwrap_or_default().to_string())
}

/// delta-seconds (RFC 3261 §25.1); huge values saturate, which the max clamp then handles.
fn delta_seconds(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse::<u64>().unwrap_or(u64::MAX))
}

/// The `expires` header parameter of one Contact value (§10.2.1.1), outside the URI.
fn contact_expires(value: &str) -> Result<Option<u64>, RegisterError> {
    let v = value.trim();
    let params = match v.find('<') {
        Some(a) => match v[a..].find('>') {
            Some(b) => &v[a + b + 1..],
            None => return Err(RegisterError::Header("Contact")),
        },
        // addr-spec form: every parameter belongs to the header (§20.10).
        None => v.split_once(';').map(|(_, p)| p).unwrap_or(""),
    };
    for p in params.split(';') {
        if let Some((k, val)) = p.split_once('=')
            && k.trim().eq_ignore_ascii_case("expires")
        {
            return delta_seconds(val.trim().trim_matches('"'))
                .map(Some)
                .ok_or(RegisterError::Header("Contact expires"));
        }
    }
    Ok(None)
}

fn read_fields(req: &Request) -> Result<RegisterFields, RegisterError> {
    let to = req.to_header().map_err(|_| RegisterError::Header("To"))?;
    let to_user = header_user(to.value(), "To")?;
    let from = req
        .from_header()
        .map_err(|_| RegisterError::Header("From"))?;
    let from_user = header_user(from.value(), "From")?;
    let call_id = req
        .call_id_header()
        .map_err(|_| RegisterError::Header("Call-ID"))?
        .value()
        .trim()
        .to_string();
    if call_id.is_empty() {
        return Err(RegisterError::Header("Call-ID"));
    }
    let cseq = req
        .cseq_header()
        .and_then(|c| c.seq())
        .map_err(|_| RegisterError::Header("CSeq"))?;
    let mut expires_header = None;
    let mut contact_values: Vec<String> = Vec::new();
    let mut authorization = None;
    let mut user_agent = None;
    for h in req.headers.iter() {
        match h {
            Header::Expires(e) => {
                expires_header =
                    Some(delta_seconds(e.value()).ok_or(RegisterError::Header("Expires"))?)
            }
            Header::Contact(c) => contact_values.extend(split_header_list(c.value())),
            // The first Authorization is ours: we are the only realm a phone talks to here.
            Header::Authorization(a) if authorization.is_none() => {
                authorization = Some(a.value().to_string())
            }
            Header::UserAgent(u) => user_agent = Some(super::message::header_safe(u.value())),
            _ => {}
        }
    }
    let contacts = if contact_values.is_empty() {
        ContactRequest::Query
    } else if contact_values.iter().any(|c| c.trim() == "*") {
        // §10.3 step 6: `*` alone and with Expires: 0, or the request is invalid.
        if contact_values.len() != 1 || expires_header != Some(0) {
            return Err(RegisterError::BadStar);
        }
        ContactRequest::RemoveAll
    } else {
        let mut list = Vec::with_capacity(contact_values.len());
        for c in &contact_values {
            let uri = raw_uri(c).ok_or(RegisterError::Header("Contact"))?;
            super::rsip::Uri::try_from(uri).map_err(|_| RegisterError::Header("Contact"))?;
            list.push((uri.to_string(), contact_expires(c)?));
        }
        ContactRequest::Update(list)
    };
    Ok(RegisterFields {
        to_user,
        from_user,
        call_id,
        cseq,
        expires_header,
        contacts,
        authorization,
        user_agent,
    })
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const REALM: &str = "phonetree";

    fn src() -> SocketAddr {
        "198.51.100.7:40312".parse().unwrap()
    }

    fn config() -> RegistrarConfig {
        RegistrarConfig {
            accounts: vec![
                Account {
                    agent: "a1001".into(),
                    username: "1001".into(),
                    secret: Secret::Password("demo1001".into()),
                },
                Account {
                    agent: "a1002".into(),
                    username: "1002".into(),
                    secret: Secret::Ha1 {
                        md5: Some(digest::ha1(Algorithm::Md5, "1002", REALM, "pw1002")),
                        sha256: Some(digest::ha1(Algorithm::Sha256, "1002", REALM, "pw1002")),
                    },
                },
            ],
            max_failures: 3,
            max_contacts: 3,
            algorithms: vec![Algorithm::Md5, Algorithm::Sha256],
            ..RegistrarConfig::default()
        }
    }

    fn registrar(now: Instant) -> Registrar {
        Registrar::new(now, config(), [7u8; 32])
    }

    /// A REGISTER for `user` with `extra` header lines (each ending in CRLF).
    fn register(user: &str, call_id: &str, cseq: u32, extra: &str) -> Request {
        let text = format!(
            "REGISTER sip:{REALM} SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK{cseq}x;rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:{user}@{REALM}>;tag=f{cseq}\r\n\
To: <sip:{user}@{REALM}>\r\n\
Call-ID: {call_id}\r\n\
CSeq: {cseq} REGISTER\r\n\
User-Agent: TestPhone 1.0\r\n\
{extra}Content-Length: 0\r\n\r\n"
        );
        Request::try_from(text.as_str()).expect("test REGISTER parses")
    }

    fn status(resp: &Response) -> u16 {
        resp.status_code.code()
    }

    fn header_values(resp: &Response, name: &str) -> Vec<String> {
        resp.headers
            .iter()
            .filter(|h| h.name().eq_ignore_ascii_case(name))
            .map(|h| h.value().to_string())
            .collect()
    }

    fn quoted(challenge: &str, name: &str) -> String {
        let start = challenge.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        let len = challenge[start..].find('"').unwrap();
        challenge[start..start + len].to_string()
    }

    fn challenge_for(resp: &Response, alg: Algorithm) -> String {
        header_values(resp, "WWW-Authenticate")
            .into_iter()
            .find(|c| c.contains(&format!("algorithm={},", alg.name())))
            .expect("a challenge for the algorithm")
    }

    /// An `Authorization:` line answering `challenge` the way a phone does.
    fn authorization(
        challenge: &str,
        alg: Algorithm,
        user: &str,
        password: &str,
        nc: u32,
    ) -> String {
        let nonce = quoted(challenge, "nonce");
        let opaque = quoted(challenge, "opaque");
        let uri = format!("sip:{REALM}");
        let nc = format!("{nc:08x}");
        let ha1 = digest::ha1(alg, user, REALM, password);
        let r = digest::response(alg, &ha1, &nonce, &nc, "0a4f113b", "auth", "REGISTER", &uri);
        format!(
            "Authorization: Digest username=\"{user}\", realm=\"{REALM}\", nonce=\"{nonce}\", \
uri=\"{uri}\", response=\"{r}\", algorithm={}, cnonce=\"0a4f113b\", qop=auth, nc={nc}, \
opaque=\"{opaque}\"\r\n",
            alg.name()
        )
    }

    /// Challenge, then answer: the response to the authenticated REGISTER (CSeq `cseq + 1`).
    fn login(
        r: &mut Registrar,
        now: Instant,
        user: &str,
        password: &str,
        alg: Algorithm,
        cseq: u32,
        extra: &str,
    ) -> Response {
        let first = r.handle_register(
            now,
            &register(user, "cid-1", cseq, extra),
            src(),
            Transport::Udp,
        );
        assert_eq!(status(&first), 401);
        let auth = authorization(&challenge_for(&first, alg), alg, user, password, 1);
        r.handle_register(
            now,
            &register(user, "cid-1", cseq + 1, &format!("{extra}{auth}")),
            src(),
            Transport::Udp,
        )
    }

    fn events(r: &mut Registrar) -> Vec<RegistrarEvent> {
        std::iter::from_fn(|| r.poll_event()).collect()
    }

    fn security_kinds(events: &[RegistrarEvent]) -> Vec<SecurityKind> {
        events
            .iter()
            .filter_map(|e| match e {
                RegistrarEvent::SecurityEvent { kind, .. } => Some(*kind),
                _ => None,
            })
            .collect()
    }

    const CONTACT: &str = "Contact: <sip:1001@10.0.0.5:5062;transport=udp>\r\n";

    #[test]
    fn default_challenges_with_md5_alone_and_refuses_other_algorithms() {
        let now = Instant::now();
        let cfg = RegistrarConfig {
            algorithms: RegistrarConfig::default().algorithms,
            ..config()
        };
        let mut r = Registrar::new(now, cfg, [7u8; 32]);
        let first = r.handle_register(
            now,
            &register("1001", "cid-1", 1, CONTACT),
            src(),
            Transport::Udp,
        );
        let challenges = header_values(&first, "WWW-Authenticate");
        assert_eq!(challenges.len(), 1, "{challenges:?}");
        assert!(challenges[0].contains("algorithm=MD5,"), "{challenges:?}");
        // A SHA-256 answer to that nonce is not accepted: only what was offered counts.
        let auth = authorization(&challenges[0], Algorithm::Sha256, "1001", "demo1001", 1);
        let second = r.handle_register(
            now,
            &register("1001", "cid-1", 2, &format!("{CONTACT}{auth}")),
            src(),
            Transport::Udp,
        );
        assert_eq!(status(&second), 401);
        let auth = authorization(&challenges[0], Algorithm::Md5, "1001", "demo1001", 1);
        let third = r.handle_register(
            now,
            &register("1001", "cid-1", 3, &format!("{CONTACT}{auth}")),
            src(),
            Transport::Udp,
        );
        assert_eq!(status(&third), 200);
    }

    #[test]
    fn md5_challenge_response_registers() {
        let now = Instant::now();
        let mut r = registrar(now);
        let first = r.handle_register(
            now,
            &register("1001", "cid-1", 1, CONTACT),
            src(),
            Transport::Udp,
        );
        assert_eq!(status(&first), 401);
        let challenges = header_values(&first, "WWW-Authenticate");
        assert_eq!(challenges.len(), 2);
        // MD5 first for SIPp (see `Registrar::challenge`), same nonce in both.
        assert!(challenges[0].contains("algorithm=MD5,"), "{challenges:?}");
        assert!(
            challenges[1].contains("algorithm=SHA-256,"),
            "{challenges:?}"
        );
        assert!(
            challenges[0].contains("qop=\"auth\"") && challenges[0].contains("realm=\"phonetree\"")
        );
        assert_eq!(
            quoted(&challenges[0], "nonce"),
            quoted(&challenges[1], "nonce")
        );
        assert!(header_values(&first, "To")[0].contains(";tag="));

        let ok = login(&mut r, now, "1001", "demo1001", Algorithm::Md5, 1, CONTACT);
        assert_eq!(status(&ok), 200);
        assert_eq!(
            header_values(&ok, "Contact"),
            vec!["<sip:1001@10.0.0.5:5062;transport=udp>;expires=3600"]
        );
        assert_eq!(
            events(&mut r),
            vec![RegistrarEvent::Registered {
                agent: "a1001".into()
            }]
        );
        let b = r.bindings("a1001");
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].contact, "sip:1001@10.0.0.5:5062;transport=udp");
        assert_eq!(b[0].destination(), src());
        assert_eq!(b[0].user_agent.as_deref(), Some("TestPhone 1.0"));
        let snap = r.snapshot(now);
        assert_eq!(snap[0].username, "1001");
        assert_eq!(snap[0].expires_in_s, 3600);
    }

    #[test]
    fn sha256_challenge_response_registers() {
        // The hash as RFC 7616 §3.9.1 publishes it, before trusting it for SIP.
        let ha1 = digest::ha1(
            Algorithm::Sha256,
            "Mufasa",
            "http-auth@example.org",
            "Circle of Life",
        );
        assert_eq!(
            digest::response(
                Algorithm::Sha256,
                &ha1,
                "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
                "00000001",
                "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
                "auth",
                "GET",
                "/dir/index.html"
            ),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        let now = Instant::now();
        let mut r = registrar(now);
        // 1002 has stored HA1s only.
        let contact = "Contact: <sip:1002@10.0.0.6>\r\n";
        let ok = login(&mut r, now, "1002", "pw1002", Algorithm::Sha256, 1, contact);
        assert_eq!(status(&ok), 200);
        assert_eq!(r.bindings("a1002")[0].contact, "sip:1002@10.0.0.6");
        let ok = login(
            &mut r,
            now,
            "1001",
            "demo1001",
            Algorithm::Sha256,
            1,
            CONTACT,
        );
        assert_eq!(status(&ok), 200);
    }

    #[test]
    fn wrong_password_is_refused_and_counted() {
        let now = Instant::now();
        let mut r = registrar(now);
        let resp = login(&mut r, now, "1001", "guess", Algorithm::Md5, 1, CONTACT);
        assert_eq!(status(&resp), 401);
        assert_eq!(header_values(&resp, "WWW-Authenticate").len(), 2);
        assert!(r.bindings("a1001").is_empty());
        assert_eq!(
            security_kinds(&events(&mut r)),
            vec![SecurityKind::WrongPassword]
        );
        assert_eq!(r.by_user["1001"].failures.len(), 1);
        assert_eq!(r.by_source[&src().ip()].failures.len(), 1);
    }

    #[test]
    fn prober_is_blocked_after_repeated_failures() {
        let t0 = Instant::now();
        let mut r = registrar(t0);
        for i in 0..3 {
            let resp = login(
                &mut r,
                t0,
                "1001",
                "guess",
                Algorithm::Md5,
                10 * i + 1,
                CONTACT,
            );
            assert_eq!(status(&resp), 401);
        }
        assert!(security_kinds(&events(&mut r)).contains(&SecurityKind::Blocked));
        // Blocked: even the right password from this source is refused, without a challenge.
        let resp = r.handle_register(
            t0,
            &register("1001", "cid-1", 50, CONTACT),
            src(),
            Transport::Udp,
        );
        assert_eq!(status(&resp), 403);
        assert_eq!(header_values(&resp, "Retry-After"), vec!["300"]);
        assert_eq!(security_kinds(&events(&mut r)), vec![SecurityKind::Blocked]);
        // Another user from the same source is blocked too (per-source counting).
        let resp = r.handle_register(
            t0,
            &register("1002", "cid-2", 1, CONTACT),
            src(),
            Transport::Udp,
        );
        assert_eq!(status(&resp), 403);

        // After the block, the right password works.
        let t1 = t0 + Duration::from_secs(301);
        r.handle_timeout(t1);
        let ok = login(&mut r, t1, "1001", "demo1001", Algorithm::Md5, 60, CONTACT);
        assert_eq!(status(&ok), 200);

        // A second block of the same key lasts twice as long.
        for i in 0..3 {
            login(
                &mut r,
                t1,
                "1002",
                "guess",
                Algorithm::Md5,
                100 + 10 * i,
                "",
            );
        }
        let from_source = |r: &mut Registrar, t| {
            status(&r.handle_register(
                t,
                &register("1002", "cid-9", 999, ""),
                src(),
                Transport::Udp,
            ))
        };
        assert_eq!(from_source(&mut r, t1 + Duration::from_secs(301)), 403);
        assert_eq!(from_source(&mut r, t1 + Duration::from_secs(601)), 401);
        assert!(r.poll_timeout().is_some());
    }

    #[test]
    fn stale_nonce_gets_stale_true() {
        let t0 = Instant::now();
        let mut r = registrar(t0);
        let first = r.handle_register(
            t0,
            &register("1001", "cid-1", 1, CONTACT),
            src(),
            Transport::Udp,
        );
        let auth = authorization(
            &challenge_for(&first, Algorithm::Md5),
            Algorithm::Md5,
            "1001",
            "demo1001",
            1,
        );
        let late = t0 + Duration::from_secs(301);
        let resp = r.handle_register(
            late,
            &register("1001", "cid-1", 2, &format!("{CONTACT}{auth}")),
            src(),
            Transport::Udp,
        );
        assert_eq!(status(&resp), 401);
        let challenges = header_values(&resp, "WWW-Authenticate");
        assert!(
            challenges.iter().all(|c| c.ends_with("stale=true")),
            "{challenges:?}"
        );
        // Stale is not a failure.
        assert!(security_kinds(&events(&mut r)).is_empty());
        // The fresh nonce works.
        let auth = authorization(
            &challenge_for(&resp, Algorithm::Md5),
            Algorithm::Md5,
            "1001",
            "demo1001",
            1,
        );
        let ok = r.handle_register(
            late,
            &register("1001", "cid-1", 3, &format!("{CONTACT}{auth}")),
            src(),
            Transport::Udp,
        );
        assert_eq!(status(&ok), 200);
    }

    #[test]
    fn replayed_nonce_count_is_refused() {
        let now = Instant::now();
        let mut r = registrar(now);
        let first = r.handle_register(
            now,
            &register("1001", "cid-1", 1, CONTACT),
            src(),
            Transport::Udp,
        );
        let ch = challenge_for(&first, Algorithm::Md5);
        let auth = authorization(&ch, Algorithm::Md5, "1001", "demo1001", 1);
        let req = |cseq, auth: &str| register("1001", "cid-1", cseq, &format!("{CONTACT}{auth}"));
        assert_eq!(
            status(&r.handle_register(now, &req(2, &auth), src(), Transport::Udp)),
            200
        );
        events(&mut r);
        // The same nc again (a captured request replayed with a new CSeq).
        let resp = r.handle_register(now, &req(3, &auth), src(), Transport::Udp);
        assert_eq!(status(&resp), 401);
        assert_eq!(security_kinds(&events(&mut r)), vec![SecurityKind::Replay]);
        // A higher nc on the same nonce is how phones reuse it: accepted.
        let auth2 = authorization(&ch, Algorithm::Md5, "1001", "demo1001", 2);
        assert_eq!(
            status(&r.handle_register(now, &req(4, &auth2), src(), Transport::Udp)),
            200
        );
    }

    #[test]
    fn binding_expires_and_agent_unregisters() {
        let t0 = Instant::now();
        let mut r = registrar(t0);
        let ok = login(
            &mut r,
            t0,
            "1001",
            "demo1001",
            Algorithm::Md5,
            1,
            &format!("{CONTACT}Expires: 120\r\n"),
        );
        assert_eq!(status(&ok), 200);
        assert_eq!(
            events(&mut r),
            vec![RegistrarEvent::Registered {
                agent: "a1001".into()
            }]
        );
        assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(120)));
        r.handle_timeout(t0 + Duration::from_secs(119));
        assert_eq!(r.bindings("a1001").len(), 1);
        r.handle_timeout(t0 + Duration::from_secs(120));
        assert!(r.bindings("a1001").is_empty());
        assert!(r.snapshot(t0 + Duration::from_secs(120)).is_empty());
        assert_eq!(
            events(&mut r),
            vec![RegistrarEvent::Unregistered {
                agent: "a1001".into()
            }]
        );
    }

    #[test]
    fn unregister_with_expires_zero() {
        let now = Instant::now();
        let mut r = registrar(now);
        login(&mut r, now, "1001", "demo1001", Algorithm::Md5, 1, CONTACT);
        events(&mut r);
        let off = "Contact: <sip:1001@10.0.0.5:5062;transport=udp>;expires=0\r\n";
        let resp = login(&mut r, now, "1001", "demo1001", Algorithm::Md5, 10, off);
        assert_eq!(status(&resp), 200);
        assert!(header_values(&resp, "Contact").is_empty());
        assert!(r.bindings("a1001").is_empty());
        assert_eq!(
            events(&mut r),
            vec![RegistrarEvent::Unregistered {
                agent: "a1001".into()
            }]
        );
    }

    #[test]
    fn star_unregisters_all() {
        let now = Instant::now();
        let mut r = registrar(now);
        login(
            &mut r,
            now,
            "1001",
            "demo1001",
            Algorithm::Md5,
            1,
            "Contact: <sip:1001@10.0.0.5>, <sip:1001@10.0.0.9>\r\n",
        );
        assert_eq!(r.bindings("a1001").len(), 2);
        // `*` with a non-zero expiry, or with other contacts, is invalid (§10.3 step 6).
        let bad = r.handle_register(
            now,
            &register("1001", "cid-1", 20, "Contact: *\r\nExpires: 60\r\n"),
            src(),
            Transport::Udp,
        );
        assert_eq!(status(&bad), 400);
        let bad = r.handle_register(
            now,
            &register(
                "1001",
                "cid-1",
                21,
                "Contact: *, <sip:1001@h>\r\nExpires: 0\r\n",
            ),
            src(),
            Transport::Udp,
        );
        assert_eq!(status(&bad), 400);
        events(&mut r);
        let resp = login(
            &mut r,
            now,
            "1001",
            "demo1001",
            Algorithm::Md5,
            30,
            "Contact: *\r\nExpires: 0\r\n",
        );
        assert_eq!(status(&resp), 200);
        assert!(r.bindings("a1001").is_empty());
        assert_eq!(security_kinds(&events(&mut r)), vec![]);
    }

    #[test]
    fn several_contacts_per_agent() {
        let t0 = Instant::now();
        let mut r = registrar(t0);
        login(
            &mut r,
            t0,
            "1001",
            "demo1001",
            Algorithm::Md5,
            1,
            "Contact: <sip:1001@10.0.0.1>\r\n",
        );
        let t1 = t0 + Duration::from_secs(5);
        let resp = login(
            &mut r,
            t1,
            "1001",
            "demo1001",
            Algorithm::Md5,
            10,
            "Contact: <sip:1001@10.0.0.2>;expires=600\r\n",
        );
        assert_eq!(
            header_values(&resp, "Contact"),
            vec![
                "<sip:1001@10.0.0.2>;expires=600",
                "<sip:1001@10.0.0.1>;expires=3595"
            ]
        );
        let b = r.bindings("a1001");
        assert_eq!(b[0].contact, "sip:1001@10.0.0.2");
        assert_eq!(b[1].contact, "sip:1001@10.0.0.1");
        // Only the first appearance is an event.
        assert_eq!(
            events(&mut r),
            vec![RegistrarEvent::Registered {
                agent: "a1001".into()
            }]
        );
        // max_contacts = 3: the least recently refreshed is dropped.
        login(
            &mut r,
            t1,
            "1001",
            "demo1001",
            Algorithm::Md5,
            20,
            "Contact: <sip:1001@10.0.0.3>, <sip:1001@10.0.0.4>\r\n",
        );
        let contacts: Vec<String> = r.bindings("a1001").into_iter().map(|b| b.contact).collect();
        assert_eq!(
            contacts,
            vec![
                "sip:1001@10.0.0.3",
                "sip:1001@10.0.0.4",
                "sip:1001@10.0.0.2"
            ]
        );
    }

    #[test]
    fn too_brief_gets_423() {
        let now = Instant::now();
        let mut r = registrar(now);
        let resp = login(
            &mut r,
            now,
            "1001",
            "demo1001",
            Algorithm::Md5,
            1,
            &format!("{CONTACT}Expires: 30\r\n"),
        );
        assert_eq!(status(&resp), 423);
        assert_eq!(header_values(&resp, "Min-Expires"), vec!["60"]);
        assert!(r.bindings("a1001").is_empty());
        // Too long is clamped to max_expires.
        let resp = login(
            &mut r,
            now,
            "1001",
            "demo1001",
            Algorithm::Md5,
            10,
            &format!("{CONTACT}Expires: 99999999999999999999\r\n"),
        );
        assert_eq!(status(&resp), 200);
        assert_eq!(r.snapshot(now)[0].expires_in_s, 3600);
    }

    #[test]
    fn out_of_order_cseq_in_the_same_call_id_gets_500() {
        let now = Instant::now();
        let mut r = registrar(now);
        login(&mut r, now, "1001", "demo1001", Algorithm::Md5, 10, CONTACT);
        let resp = login(&mut r, now, "1001", "demo1001", Algorithm::Md5, 3, CONTACT);
        assert_eq!(status(&resp), 500);
        assert_eq!(r.bindings("a1001")[0].cseq, 11);
    }

    #[test]
    fn to_or_from_of_another_user_is_forbidden() {
        let now = Instant::now();
        let mut r = registrar(now);
        let first = r.handle_register(
            now,
            &register("1002", "cid-1", 1, CONTACT),
            src(),
            Transport::Udp,
        );
        // 1001's credentials on a REGISTER for 1002's address of record.
        let auth = authorization(
            &challenge_for(&first, Algorithm::Md5),
            Algorithm::Md5,
            "1001",
            "demo1001",
            1,
        );
        let resp = r.handle_register(
            now,
            &register("1002", "cid-1", 2, &format!("{CONTACT}{auth}")),
            src(),
            Transport::Udp,
        );
        assert_eq!(status(&resp), 403);
        assert!(r.bindings("a1002").is_empty() && r.bindings("a1001").is_empty());
        assert_eq!(
            security_kinds(&events(&mut r)),
            vec![SecurityKind::IdentityMismatch]
        );
    }

    #[test]
    fn unknown_user_looks_like_wrong_password() {
        let now = Instant::now();
        let mut r = registrar(now);
        let shape = |resp: &Response| {
            let names: Vec<String> = resp.headers.iter().map(|h| h.name().to_string()).collect();
            let challenges: Vec<String> = header_values(resp, "WWW-Authenticate")
                .iter()
                .map(|c| c.replace(&quoted(c, "nonce"), "N"))
                .collect();
            (status(resp), names, challenges)
        };
        let wrong = login(&mut r, now, "1001", "guess", Algorithm::Md5, 1, CONTACT);
        let unknown = login(&mut r, now, "4711", "guess", Algorithm::Md5, 1, CONTACT);
        assert_eq!(shape(&wrong), shape(&unknown));
        assert_eq!(
            security_kinds(&events(&mut r)),
            vec![SecurityKind::WrongPassword, SecurityKind::UnknownUser]
        );
        // Counted like wrong passwords: the third failure from this source blocks it.
        login(&mut r, now, "4712", "guess", Algorithm::Md5, 1, CONTACT);
        let resp = r.handle_register(
            now,
            &register("4713", "c", 1, CONTACT),
            src(),
            Transport::Udp,
        );
        assert_eq!(status(&resp), 403);
    }

    #[test]
    fn reconfigure_keeps_bindings_of_remaining_accounts() {
        let now = Instant::now();
        let mut r = registrar(now);
        login(&mut r, now, "1001", "demo1001", Algorithm::Md5, 1, CONTACT);
        login(
            &mut r,
            now,
            "1002",
            "pw1002",
            Algorithm::Md5,
            1,
            "Contact: <sip:1002@10.0.0.6>\r\n",
        );
        events(&mut r);
        let mut cfg = config();
        cfg.accounts.retain(|a| a.username == "1001");
        r.reconfigure(cfg);
        assert_eq!(r.bindings("a1001").len(), 1);
        assert!(r.bindings("a1002").is_empty());
        assert_eq!(
            events(&mut r),
            vec![RegistrarEvent::Unregistered {
                agent: "a1002".into()
            }]
        );
    }

    #[test]
    fn garbage_authorization_gets_400_not_panic() {
        let now = Instant::now();
        let mut r = registrar(now);
        let first = r.handle_register(
            now,
            &register("1001", "cid-1", 1, CONTACT),
            src(),
            Transport::Udp,
        );
        let valid = authorization(
            &challenge_for(&first, Algorithm::Md5),
            Algorithm::Md5,
            "1001",
            "demo1001",
            1,
        );
        let valid = valid
            .trim_end()
            .trim_start_matches("Authorization: ")
            .to_string();
        let alphabet: Vec<char> = "Digest =,\"\\ abcnonce=qopauth0123456789xyz;<>:é\t"
            .chars()
            .collect();
        // xorshift: deterministic, so a failure reproduces.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut four_hundreds = 0;
        for i in 0..2000 {
            let value: String = if i % 2 == 0 {
                let len = (next() % 120) as usize;
                (0..len)
                    .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                    .collect()
            } else {
                // Mutations of a real answer: cut, or a character replaced.
                let mut v: Vec<char> = valid.chars().collect();
                let at = (next() % v.len() as u64) as usize;
                if next() % 2 == 0 {
                    v.truncate(at);
                } else {
                    v[at] = alphabet[(next() % alphabet.len() as u64) as usize];
                }
                v.into_iter().collect()
            };
            let text = format!("{CONTACT}Authorization: {value}\r\n");
            let Ok(req) = std::panic::catch_unwind(|| register("1001", "cid-g", 10 + i, &text))
            else {
                continue; // the SIP parser refused the message: nothing reaches us
            };
            let resp = r.handle_register(now, &req, src(), Transport::Udp);
            let code = status(&resp);
            // A mutated answer can still be well-formed (e.g. a changed cnonce): then it
            // is a wrong answer, 401 — or 403 once this source is blocked for that.
            assert!(matches!(code, 400 | 401 | 403), "{code} for {value:?}");
            four_hundreds += usize::from(code == 400);
        }
        assert!(four_hundreds > 500, "{four_hundreds}");
        assert!(r.bindings("a1001").is_empty());
        // Plain garbage, and a Digest missing its qop, are 400.
        for v in [
            "garbage",
            "Digest",
            "Digest ,,,",
            "Digest username=\"1001\", realm=\"phonetree\"",
        ] {
            let req = register(
                "1001",
                "cid-h",
                9000,
                &format!("{CONTACT}Authorization: {v}\r\n"),
            );
            let mut fresh = registrar(now);
            assert_eq!(
                status(&fresh.handle_register(now, &req, src(), Transport::Udp)),
                400,
                "{v}"
            );
        }
    }

    #[test]
    fn malformed_register_gets_400() {
        let now = Instant::now();
        let mut r = registrar(now);
        for extra in [
            "Contact: <sip:\r\n",
            "Contact: <>\r\n",
            "Expires: soon\r\n",
            "Contact: <sip:a@h>;expires=x\r\n",
        ] {
            let resp =
                r.handle_register(now, &register("1001", "c", 1, extra), src(), Transport::Udp);
            assert_eq!(status(&resp), 400, "{extra}");
        }
        let no_to = "REGISTER sip:phonetree SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5;branch=z9hG4bKq\r\n\
From: <sip:1001@phonetree>;tag=a\r\nCall-ID: x\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n";
        if let Ok(req) = Request::try_from(no_to) {
            assert_eq!(
                status(&r.handle_register(now, &req, src(), Transport::Udp)),
                400
            );
        }
    }
}
