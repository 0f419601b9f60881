//! The HTTP store: customer data kept in a CRM, read as JSON over plain
//! HTTP/1.1 with a per-request timeout, retries with exponential backoff, a
//! circuit breaker and a short TTL cache of lookups.
//!
//! Plain `http://` only, written by hand over `std::net::TcpStream` (one
//! connection per request, `Connection: close`): no TLS stack in the engine.
//! Put a TLS-terminating proxy (or a sidecar) in front of a CRM that only
//! speaks HTTPS.
//!
//! The CRM contract (`{base}` is the configured `url`; ids are percent-encoded;
//! `404` means "no such customer/order/appointment"):
//!
//! | call | request | 200 body |
//! |---|---|---|
//! | by id | `GET {base}/customers/{id}` | `{"id","name","language"?,"tier"?}` |
//! | by phone | `GET {base}/customers/by-phone/{digits}` (normalised, no `+`) | same |
//! | account | `GET {base}/customers/{id}/account` | `{"balance_minor": 12345, "currency": "USD"}` |
//! | last order | `GET {base}/customers/{id}/last-order` | `{"id","status","placed_on","shipped_on"?,"eta"?}` |
//! | next appointment | `GET {base}/customers/{id}/next-appointment?after={unix_ms}` | `{"id","starts_at","status"}` |
//! | PIN | `POST {base}/customers/{id}/verify-pin` `{"pin","now_unix_ms"}` | `{"result":"ok"}`, `{"result":"wrong","attempts_left":2}`, `{"result":"locked","until_unix_ms":..}` |
//! | update | `PUT {base}/customers/{id}/appointments/{appointment_id}` `{"status":"confirmed"}` | any 2xx |
//!
//! Failures: a connection that could not be made is retried for every call
//! (nothing was sent); a 5xx or a timeout is retried only for idempotent calls
//! (`GET`, `PUT`), never for the PIN check, whose attempt counter must not
//! count twice. After `breaker_failures` failed calls in a row the breaker
//! opens: calls fail at once with [`DirectoryError::Unavailable`] for
//! `breaker_cooldown`, then one trial call goes through; success closes it,
//! failure opens it again. Lookups (200 and 404 answers) are cached for
//! `cache_ttl`; PIN checks and appointments never are.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;

use super::{
    Account, Appointment, AppointmentStatus, Customer, Directory, DirectoryConfig, DirectoryError,
    Order, PinOutcome, config_duration, normalize_phone,
};

/// Largest response accepted.
const MAX_RESPONSE: usize = 1 << 20;
/// Most cached answers kept.
const MAX_CACHE: usize = 4096;
/// Longest backoff between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Time for the breaker, the cache, backoff and request deadlines. The store
/// never reads a clock itself: the runtime passes the real one
/// (`runtime::clock::SystemClock`), tests a fake.
pub trait Clock: Send + Sync {
    /// Milliseconds on a monotonic clock (any origin).
    fn now_ms(&self) -> u64;
    fn sleep(&self, d: Duration);
}

/// Checked settings of an [`HttpDirectory`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpSettings {
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing `/` (`""` or `/api`).
    pub base_path: String,
    pub timeout: Duration,
    pub retries: u32,
    pub backoff: Duration,
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
    pub cache_ttl: Duration,
}

impl HttpSettings {
    pub fn from_config(cfg: &DirectoryConfig) -> Result<HttpSettings, DirectoryError> {
        let url = cfg
            .url
            .as_deref()
            .ok_or_else(|| DirectoryError::Config("`url` is required for kind: http".into()))?;
        let (host, port, base_path) = parse_url(url)?;
        let timeout = config_duration("timeout", &cfg.timeout)?;
        if timeout.is_zero() {
            return Err(DirectoryError::Config("timeout must be above 0".into()));
        }
        if cfg.breaker_failures == 0 {
            return Err(DirectoryError::Config(
                "breaker_failures must be at least 1".into(),
            ));
        }
        if cfg.retries > 10 {
            return Err(DirectoryError::Config("retries must be 0 to 10".into()));
        }
        Ok(HttpSettings {
            host,
            port,
            base_path,
            timeout,
            retries: cfg.retries,
            backoff: config_duration("backoff", &cfg.backoff)?,
            breaker_failures: cfg.breaker_failures,
            breaker_cooldown: config_duration("breaker_cooldown", &cfg.breaker_cooldown)?,
            cache_ttl: config_duration("cache_ttl", &cfg.cache_ttl)?,
        })
    }
}

/// `http://host[:port][/base]` → parts. `https://` is refused (terminate TLS in front).
fn parse_url(url: &str) -> Result<(String, u16, String), DirectoryError> {
    let bad = |why: &str| DirectoryError::Config(format!("url `{url}`: {why}"));
    let rest = match url.trim().split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => {
            return Err(bad(
                "https is not supported: put a TLS-terminating proxy in front and use http://",
            ));
        }
        _ => return Err(bad("expected http://host[:port][/path]")),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if authority.contains('@') || path.contains(['?', '#']) {
        return Err(bad("user info, queries and fragments are not supported"));
    }
    let port_of = |p: &str| p.parse::<u16>().map_err(|_| bad("bad port"));
    let (host, port) = if let Some(h) = authority.strip_prefix('[') {
        let (h, after) = h.split_once(']').ok_or_else(|| bad("bad IPv6 host"))?;
        match after.strip_prefix(':') {
            Some(p) => (h, port_of(p)?),
            None if after.is_empty() => (h, 80),
            None => return Err(bad("bad IPv6 host")),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, port_of(p)?),
            None => (authority, 80),
        }
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    Ok((host.to_string(), port, path.to_string()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Breaker {
    Closed {
        failures: u32,
    },
    Open {
        until_ms: u64,
    },
    /// One trial call is in flight; others fail fast.
    HalfOpen,
}

#[derive(Debug)]
struct Shared {
    breaker: Breaker,
    /// path → (expires at, status, body)
    cache: HashMap<String, (u64, u16, String)>,
}

/// A customer directory served by a CRM over HTTP. `Send + Sync`.
pub struct HttpDirectory {
    s: HttpSettings,
    clock: Arc<dyn Clock>,
    shared: Mutex<Shared>,
}

impl std::fmt::Debug for HttpDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpDirectory")
            .field("settings", &self.s)
            .finish()
    }
}

/// One HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reply {
    status: u16,
    body: String,
}

/// Why one attempt failed.
#[derive(Debug)]
enum Fail {
    /// No connection: nothing was sent, always safe to retry.
    Connect(String),
    Timeout,
    Io(String),
    Protocol(String),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Post,
    Put,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
        }
    }
    fn idempotent(self) -> bool {
        self != Method::Post
    }
}

impl HttpDirectory {
    /// A store for the `url` of `cfg` (plain http), timed by `clock`.
    pub fn new(
        cfg: &DirectoryConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<HttpDirectory, DirectoryError> {
        HttpDirectory::with_clock(HttpSettings::from_config(cfg)?, clock)
    }

    pub fn with_clock(
        settings: HttpSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<HttpDirectory, DirectoryError> {
        Ok(HttpDirectory {
            s: settings,
            clock,
            shared: Mutex::new(Shared {
                breaker: Breaker::Closed { failures: 0 },
                cache: HashMap::new(),
            }),
        })
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One logical call: cache, breaker, attempts with backoff.
    fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
        cacheable: bool,
    ) -> Result<Reply, DirectoryError> {
        let now = self.clock.now_ms();
        {
            let mut sh = self.shared();
            if cacheable && let Some((exp, status, body)) = sh.cache.get(path) {
                if *exp > now {
                    return Ok(Reply {
                        status: *status,
                        body: body.clone(),
                    });
                }
                sh.cache.remove(path);
            }
            match sh.breaker {
                Breaker::Closed { .. } => {}
                Breaker::Open { until_ms } if now < until_ms => {
                    return Err(DirectoryError::Unavailable);
                }
                Breaker::Open { .. } => sh.breaker = Breaker::HalfOpen,
                Breaker::HalfOpen => return Err(DirectoryError::Unavailable),
            }
        }
        let result = self.attempts(method, path, body.as_deref());
        let now = self.clock.now_ms();
        let mut sh = self.shared();
        match &result {
            Ok(_) | Err(DirectoryError::Status(400..=499)) => {
                sh.breaker = Breaker::Closed { failures: 0 };
            }
            Err(_) => {
                let failures = match sh.breaker {
                    Breaker::Closed { failures } => failures + 1,
                    _ => self.s.breaker_failures,
                };
                sh.breaker = if failures >= self.s.breaker_failures {
                    let cooldown =
                        u64::try_from(self.s.breaker_cooldown.as_millis()).unwrap_or(u64::MAX);
                    tracing::warn!(
                        failures,
                        "directory circuit breaker open for {:?}",
                        self.s.breaker_cooldown
                    );
                    Breaker::Open {
                        until_ms: now.saturating_add(cooldown),
                    }
                } else {
                    Breaker::Closed { failures }
                };
            }
        }
        if cacheable
            && !self.s.cache_ttl.is_zero()
            && let Ok(r) = &result
        {
            if sh.cache.len() >= MAX_CACHE {
                sh.cache.retain(|_, (exp, _, _)| *exp > now);
                if sh.cache.len() >= MAX_CACHE
                    && let Some(k) = sh
                        .cache
                        .iter()
                        .min_by_key(|(_, (exp, _, _))| *exp)
                        .map(|(k, _)| k.clone())
                {
                    sh.cache.remove(&k);
                }
            }
            let ttl = u64::try_from(self.s.cache_ttl.as_millis()).unwrap_or(u64::MAX);
            sh.cache.insert(
                path.to_string(),
                (now.saturating_add(ttl), r.status, r.body.clone()),
            );
        }
        result
    }

    /// Up to `1 + retries` attempts. Returns 2xx and 404 answers; other
    /// statuses become errors.
    fn attempts(
        &self,
        method: Method,
        path: &str,
        body: Option<&str>,
    ) -> Result<Reply, DirectoryError> {
        let mut attempt = 0u32;
        loop {
            let (err, retryable) = match self.exchange(method, path, body) {
                Ok(r) if (200..300).contains(&r.status) || r.status == 404 => return Ok(r),
                Ok(r) if r.status >= 500 => (DirectoryError::Status(r.status), method.idempotent()),
                Ok(r) => return Err(DirectoryError::Status(r.status)),
                Err(Fail::Connect(e)) => (DirectoryError::Connect(e), true),
                Err(Fail::Timeout) => (DirectoryError::Timeout, method.idempotent()),
                Err(Fail::Io(e)) => (DirectoryError::Connect(e), method.idempotent()),
                Err(Fail::Protocol(e)) => return Err(DirectoryError::Protocol(e)),
            };
            if !retryable || attempt >= self.s.retries {
                return Err(err);
            }
            let delay = self
                .s
                .backoff
                .saturating_mul(1u32 << attempt.min(16))
                .min(MAX_BACKOFF);
            tracing::debug!(attempt, ?delay, error = %err, "directory request failed, retrying");
            self.clock.sleep(delay);
            attempt += 1;
        }
    }

    /// One request on a new connection, within `timeout`.
    fn exchange(&self, method: Method, path: &str, body: Option<&str>) -> Result<Reply, Fail> {
        let timeout_ms = u64::try_from(self.s.timeout.as_millis()).unwrap_or(u64::MAX);
        let deadline = self.clock.now_ms().saturating_add(timeout_ms);
        let remaining = || -> Result<Duration, Fail> {
            let left = deadline.saturating_sub(self.clock.now_ms());
            if left == 0 {
                Err(Fail::Timeout)
            } else {
                Ok(Duration::from_millis(left))
            }
        };
        let addrs = (self.s.host.as_str(), self.s.port)
            .to_socket_addrs()
            .map_err(|e| Fail::Connect(format!("cannot resolve host: {e}")))?;
        let mut stream = None;
        let mut last = String::from("no address for host");
        for a in addrs {
            match TcpStream::connect_timeout(&a, remaining()?) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = e.to_string(),
            }
        }
        let mut stream = stream.ok_or(Fail::Connect(last))?;
        let _ = stream.set_nodelay(true);
        let host_header = if self.s.host.contains(':') {
            format!("[{}]:{}", self.s.host, self.s.port)
        } else {
            format!("{}:{}", self.s.host, self.s.port)
        };
        let mut req = format!(
            "{} {}{} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: phonetree\r\nAccept: application/json\r\nConnection: close\r\n",
            method.as_str(),
            self.s.base_path,
            path
        );
        if let Some(b) = body {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        req.push_str("\r\n");
        if let Some(b) = body {
            req.push_str(b);
        }
        let io = |e: std::io::Error| match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => Fail::Timeout,
            _ => Fail::Io(e.to_string()),
        };
        stream.set_write_timeout(Some(remaining()?)).map_err(io)?;
        stream.write_all(req.as_bytes()).map_err(io)?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(reply) = parse_response(&buf, false)? {
                return Ok(reply);
            }
            stream.set_read_timeout(Some(remaining()?)).map_err(io)?;
            let n = stream.read(&mut chunk).map_err(io)?;
            if n == 0 {
                return parse_response(&buf, true)?
                    .ok_or_else(|| Fail::Protocol("connection closed mid-response".into()));
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > MAX_RESPONSE {
                return Err(Fail::Protocol("response too large".into()));
            }
        }
    }

    fn get_json<T: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
        cacheable: bool,
    ) -> Result<Option<T>, DirectoryError> {
        let r = self.call(Method::Get, path, None, cacheable)?;
        if r.status == 404 {
            return Ok(None);
        }
        serde_json::from_str(&r.body)
            .map(Some)
            .map_err(|e| DirectoryError::Protocol(format!("unexpected JSON: {e}")))
    }

    /// Forgets cached answers (e.g. after the CRM data changed).
    pub fn clear_cache(&self) {
        self.shared().cache.clear();
    }
}

/// A complete response in `buf`, `None` if more bytes are needed (`eof`: no
/// more will come, so a body without length ends here).
fn parse_response(buf: &[u8], eof: bool) -> Result<Option<Reply>, Fail> {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if eof || buf.len() > 64 * 1024 {
            return Err(Fail::Protocol("no complete response header".into()));
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| Fail::Protocol("response header is not UTF-8".into()))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| (100..=599).contains(s));
    let (true, Some(status)) = (version.starts_with("HTTP/1."), status) else {
        return Err(Fail::Protocol("bad status line".into()));
    };
    let mut length: Option<usize> = None;
    let mut chunked = false;
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("content-length") {
            length = Some(
                v.parse()
                    .map_err(|_| Fail::Protocol("bad Content-Length".into()))?,
            );
        } else if k.eq_ignore_ascii_case("transfer-encoding")
            && v.to_ascii_lowercase().contains("chunked")
        {
            chunked = true;
        }
    }
    let rest = &buf[head_end + 4..];
    let body: Vec<u8> = if status == 204 || status == 304 {
        Vec::new()
    } else if chunked {
        match dechunk(rest)? {
            Some(b) => b,
            None if eof => return Err(Fail::Protocol("truncated chunked body".into())),
            None => return Ok(None),
        }
    } else if let Some(n) = length {
        if n > MAX_RESPONSE {
            return Err(Fail::Protocol("response too large".into()));
        }
        if rest.len() < n {
            if eof {
                return Err(Fail::Protocol("truncated body".into()));
            }
            return Ok(None);
        }
        rest[..n].to_vec()
    } else if eof {
        rest.to_vec()
    } else {
        return Ok(None);
    };
    let body =
        String::from_utf8(body).map_err(|_| Fail::Protocol("response body is not UTF-8".into()))?;
    Ok(Some(Reply { status, body }))
}

/// Decodes a chunked body; `None` until the last chunk has arrived.
fn dechunk(mut b: &[u8]) -> Result<Option<Vec<u8>>, Fail> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size_text =
            std::str::from_utf8(&b[..eol]).map_err(|_| Fail::Protocol("bad chunk size".into()))?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| Fail::Protocol("bad chunk size".into()))?;
        if size > MAX_RESPONSE {
            return Err(Fail::Protocol("response too large".into()));
        }
        b = &b[eol + 2..];
        if size == 0 {
            // Trailers are ignored; the body is complete.
            return Ok(Some(out));
        }
        if b.len() < size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

/// Percent-encodes one path segment.
fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Deserialize)]
struct CustomerJson {
    id: String,
    name: String,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    tier: Option<String>,
}

impl From<CustomerJson> for Customer {
    fn from(c: CustomerJson) -> Customer {
        Customer {
            id: c.id,
            name: c.name,
            language: c.language.unwrap_or_else(|| "en".into()),
            tier: c.tier.unwrap_or_else(|| "standard".into()),
        }
    }
}

#[derive(Deserialize)]
struct AccountJson {
    balance_minor: i64,
    currency: String,
}

#[derive(Deserialize)]
struct OrderJson {
    id: String,
    status: String,
    placed_on: String,
    #[serde(default)]
    shipped_on: Option<String>,
    #[serde(default)]
    eta: Option<String>,
}

#[derive(Deserialize)]
struct AppointmentJson {
    id: String,
    starts_at: String,
    #[serde(default)]
    status: Option<String>,
}

#[derive(Deserialize)]
struct PinJson {
    result: String,
    #[serde(default)]
    attempts_left: Option<u32>,
    #[serde(default)]
    until_unix_ms: Option<i64>,
}

impl Directory for HttpDirectory {
    fn customer_by_id(&self, id: &str) -> Result<Option<Customer>, DirectoryError> {
        let c: Option<CustomerJson> = self.get_json(&format!("/customers/{}", seg(id)), true)?;
        Ok(c.map(Customer::from))
    }

    fn customer_by_phone(&self, number: &str) -> Result<Option<Customer>, DirectoryError> {
        let Some(n) = normalize_phone(number) else {
            return Ok(None);
        };
        let c: Option<CustomerJson> = self.get_json(&format!("/customers/by-phone/{n}"), true)?;
        Ok(c.map(Customer::from))
    }

    fn verify_pin(
        &self,
        customer_id: &str,
        pin: &str,
        now_unix_ms: i64,
    ) -> Result<PinOutcome, DirectoryError> {
        let body = serde_json::json!({ "pin": pin, "now_unix_ms": now_unix_ms }).to_string();
        let r = self.call(
            Method::Post,
            &format!("/customers/{}/verify-pin", seg(customer_id)),
            Some(body),
            false,
        )?;
        if r.status == 404 {
            return Err(DirectoryError::NotFound);
        }
        let p: PinJson = serde_json::from_str(&r.body)
            .map_err(|e| DirectoryError::Protocol(format!("unexpected JSON: {e}")))?;
        match (p.result.as_str(), p.attempts_left, p.until_unix_ms) {
            ("ok", _, _) => Ok(PinOutcome::Ok),
            ("wrong", left, _) => Ok(PinOutcome::Wrong {
                attempts_left: left.unwrap_or(0),
            }),
            ("locked", _, Some(until)) => Ok(PinOutcome::Locked {
                until_unix_ms: until,
            }),
            _ => Err(DirectoryError::Protocol(
                "PIN result must be ok, wrong or locked (with until_unix_ms)".into(),
            )),
        }
    }

    fn next_appointment(
        &self,
        customer_id: &str,
        now_unix_ms: i64,
    ) -> Result<Option<Appointment>, DirectoryError> {
        let a: Option<AppointmentJson> = self.get_json(
            &format!(
                "/customers/{}/next-appointment?after={now_unix_ms}",
                seg(customer_id)
            ),
            false,
        )?;
        let Some(a) = a else { return Ok(None) };
        let status = AppointmentStatus::parse(a.status.as_deref().unwrap_or(""))
            .ok_or_else(|| DirectoryError::Protocol("unknown appointment status".into()))?;
        Appointment::new(&a.id, &a.starts_at, status)
            .filter(|x| x.local_date_time().is_some())
            .map(Some)
            .ok_or_else(|| DirectoryError::Protocol("starts_at is not RFC 3339 with offset".into()))
    }

    fn set_appointment_status(
        &self,
        customer_id: &str,
        appointment_id: &str,
        status: AppointmentStatus,
    ) -> Result<(), DirectoryError> {
        let body = serde_json::json!({ "status": status.as_str() }).to_string();
        let r = self.call(
            Method::Put,
            &format!(
                "/customers/{}/appointments/{}",
                seg(customer_id),
                seg(appointment_id)
            ),
            Some(body),
            false,
        )?;
        if r.status == 404 {
            return Err(DirectoryError::NotFound);
        }
        Ok(())
    }

    fn last_order(&self, customer_id: &str) -> Result<Option<Order>, DirectoryError> {
        let o: Option<OrderJson> =
            self.get_json(&format!("/customers/{}/last-order", seg(customer_id)), true)?;
        Ok(o.map(|o| Order {
            id: o.id,
            status: o.status,
            placed_on: o.placed_on,
            shipped_on: o.shipped_on,
            eta: o.eta,
        }))
    }

    fn account(&self, customer_id: &str) -> Result<Option<Account>, DirectoryError> {
        let a: Option<AccountJson> =
            self.get_json(&format!("/customers/{}/account", seg(customer_id)), true)?;
        Ok(a.map(|a| Account {
            balance_minor: a.balance_minor,
            currency: a.currency,
        }))
    }
}

#[cfg(test)]
mod tests;
