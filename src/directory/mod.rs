//! Customer directory: who is calling, their PIN, balance, last order and next
//! appointment, behind one synchronous [`Directory`] trait.
//!
//! - Owns: the customer data model, the SQLite store ([`sqlite`], schema
//!   migrations, CSV import, PIN hashes and lockout counters) and the HTTP store
//!   for an external CRM ([`http`]: timeouts, retries, circuit breaker, cache),
//!   and the throttle of PIN guesses per caller and source ([`throttle`]).
//! - Takes: plain [`DirectoryRequest`]s from flows, with the wall-clock time
//!   (`now_unix_ms`) passed in; a [`DirectoryConfig`] section of `phonetree.yaml`;
//!   for the HTTP store, a monotonic [`Clock`] from the runtime.
//! - Gives: [`DirectoryResponse`]s (plain data a flow branches on) via
//!   [`execute`]; typed [`DirectoryError`]s that never contain a PIN.
//! - Never: runs on a media thread (every call may block on disk or network: the
//!   runtime calls it from a worker pool), logs or returns a PIN, or logs a
//!   caller number or customer id unmasked (see [`mask`]), or tells a caller
//!   whether a customer id exists (an unknown id answers like a wrong PIN, as
//!   slowly: see `docs/security.md`, "PIN guessing and lockout").

pub mod http;
mod import;
pub mod sqlite;
pub mod throttle;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

pub use http::{Clock, HttpDirectory};
pub use import::{ImportError, ImportReport, RowError};
pub use sqlite::{SqliteDirectory, SqliteOptions};
pub use throttle::{Origin, PinThrottle, ThrottleSettings, Throttled};

// ---------------------------------------------------------------------------
// Data model
// ---------------------------------------------------------------------------

/// A customer as the IVR sees them. The PIN hash never leaves the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Customer {
    pub id: String,
    pub name: String,
    /// Prompt language tag (`en`, `fr`, ...).
    pub language: String,
    /// Service tier (`standard`, `gold`, `vip`, ...): flows may route on it.
    pub tier: String,
}

/// Balance in minor units (cents) and its ISO 4217 currency code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub balance_minor: i64,
    pub currency: String,
}

impl Account {
    /// The balance as a decimal amount in major units (`12345` → `"123.45"`),
    /// the form `say: { money: .. }` reads. Every supported currency has 2 decimals.
    pub fn amount(&self) -> String {
        let sign = if self.balance_minor < 0 { "-" } else { "" };
        let v = self.balance_minor.unsigned_abs();
        format!("{sign}{}.{:02}", v / 100, v % 100)
    }
}

/// The latest order of a customer. Dates are `YYYY-MM-DD`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Order {
    pub id: String,
    /// Free text from the store (`placed`, `shipped`, `delivered`, ...).
    pub status: String,
    pub placed_on: String,
    pub shipped_on: Option<String>,
    pub eta: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AppointmentStatus {
    Scheduled,
    Confirmed,
    Cancelled,
}

impl AppointmentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AppointmentStatus::Scheduled => "scheduled",
            AppointmentStatus::Confirmed => "confirmed",
            AppointmentStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<AppointmentStatus> {
        match s.trim().to_ascii_lowercase().as_str() {
            "scheduled" | "" => Some(AppointmentStatus::Scheduled),
            "confirmed" => Some(AppointmentStatus::Confirmed),
            "cancelled" | "canceled" => Some(AppointmentStatus::Cancelled),
            _ => None,
        }
    }
}

/// An appointment. `starts_at` is RFC 3339 with the offset of the place where
/// it happens (`2026-12-03T14:30:00-05:00`): the caller hears that wall-clock time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appointment {
    pub id: String,
    pub starts_at: String,
    pub starts_at_unix_ms: i64,
    pub status: AppointmentStatus,
}

impl Appointment {
    /// Builds an appointment from an RFC 3339 time; `None` if it does not parse.
    pub fn new(id: &str, starts_at: &str, status: AppointmentStatus) -> Option<Appointment> {
        let ts: jiff::Timestamp = starts_at.trim().parse().ok()?;
        Some(Appointment {
            id: id.to_string(),
            starts_at: starts_at.trim().to_string(),
            starts_at_unix_ms: ts.as_millisecond(),
            status,
        })
    }

    /// Local date and time (`2026-12-03`, `14:30`) in the offset written in
    /// `starts_at`, for `say: { date: .. }` and `say: { time: .. }`.
    pub fn local_date_time(&self) -> Option<(String, String)> {
        let dt = local_civil(&self.starts_at)?;
        Some((
            format!("{:04}-{:02}-{:02}", dt.year(), dt.month(), dt.day()),
            format!("{:02}:{:02}", dt.hour(), dt.minute()),
        ))
    }
}

/// The civil date-time written in an RFC 3339 string, in its own offset.
fn local_civil(s: &str) -> Option<jiff::civil::DateTime> {
    let ts: jiff::Timestamp = s.trim().parse().ok()?;
    let offset = rfc3339_offset(s.trim())?;
    Some(offset.to_datetime(ts))
}

/// The offset at the end of an RFC 3339 time (`Z`, `+02:00`, `-0500`).
fn rfc3339_offset(s: &str) -> Option<jiff::tz::Offset> {
    if s.ends_with('Z') || s.ends_with('z') {
        return Some(jiff::tz::Offset::UTC);
    }
    let i = s.rfind(['+', '-'])?;
    let rest = &s[i..];
    let neg = rest.starts_with('-');
    let digits: String = rest[1..].chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let h: i32 = digits[..2].parse().ok()?;
    let m: i32 = digits[2..].parse().ok()?;
    let secs = (h * 3600 + m * 60) * if neg { -1 } else { 1 };
    jiff::tz::Offset::from_seconds(secs).ok()
}

/// Result of a PIN check. The attempt counter lives in the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinOutcome {
    /// Right PIN: the failure counter is reset.
    Ok,
    /// Wrong PIN; this many attempts remain before the lockout.
    Wrong { attempts_left: u32 },
    /// Too many wrong PINs: no PIN is accepted until this time.
    Locked { until_unix_ms: i64 },
}

// ---------------------------------------------------------------------------
// The trait
// ---------------------------------------------------------------------------

/// A customer store. Synchronous: calls may block on disk or network, so the
/// runtime calls it from a dedicated worker pool, never from a media thread.
/// Time is passed in where it matters; implementations never read the wall clock.
pub trait Directory: Send + Sync {
    fn customer_by_id(&self, id: &str) -> Result<Option<Customer>, DirectoryError>;

    /// By a caller number in any common writing (`+1 555-123-4567`): see
    /// [`normalize_phone`]. A number that is not a phone number is `Ok(None)`.
    fn customer_by_phone(&self, number: &str) -> Result<Option<Customer>, DirectoryError>;

    /// Checks a PIN and counts failures; `Err(NotFound)` for an unknown
    /// customer or one without a PIN.
    fn verify_pin(
        &self,
        customer_id: &str,
        pin: &str,
        now_unix_ms: i64,
    ) -> Result<PinOutcome, DirectoryError>;

    /// [`Directory::verify_pin`] on behalf of `origin`. A plain store has only
    /// the per-customer lockout and ignores it; [`Throttled`] (what [`open`]
    /// gives) also limits failures per calling number and source.
    fn verify_pin_from(
        &self,
        origin: &Origin,
        customer_id: &str,
        pin: &str,
        now_unix_ms: i64,
    ) -> Result<PinOutcome, DirectoryError> {
        let _ = origin;
        self.verify_pin(customer_id, pin, now_unix_ms)
    }

    /// The first appointment at or after `now_unix_ms` that is not cancelled.
    fn next_appointment(
        &self,
        customer_id: &str,
        now_unix_ms: i64,
    ) -> Result<Option<Appointment>, DirectoryError>;

    /// Sets an appointment's status. `Err(NotFound)` when the appointment does
    /// not exist or belongs to another customer.
    fn set_appointment_status(
        &self,
        customer_id: &str,
        appointment_id: &str,
        status: AppointmentStatus,
    ) -> Result<(), DirectoryError>;

    fn last_order(&self, customer_id: &str) -> Result<Option<Order>, DirectoryError>;

    fn account(&self, customer_id: &str) -> Result<Option<Account>, DirectoryError>;
}

/// What can go wrong in a store. Messages never contain a PIN, a caller
/// number or a customer id.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("not found")]
    NotFound,
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("database schema version {found} is newer than this phonetree understands ({known})")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error("PIN hashing failed")]
    Hash,
    #[error("directory request timed out")]
    Timeout,
    #[error("directory unavailable (circuit breaker open)")]
    Unavailable,
    #[error("directory service answered HTTP {0}")]
    Status(u16),
    #[error("directory connection failed: {0}")]
    Connect(String),
    #[error("bad answer from the directory service: {0}")]
    Protocol(String),
    #[error("directory configuration: {0}")]
    Config(String),
}

/// Caller number → the digits stored: `+`, spaces, dashes, dots and
/// parentheses are dropped (`+1 (555) 123-4567` → `15551234567`). `None` when
/// what remains is not 3 to 15 digits (E.164 allows 15), e.g. `anonymous`.
pub fn normalize_phone(s: &str) -> Option<String> {
    let digits: String = s
        .trim()
        .chars()
        .filter(|c| !matches!(c, '+' | ' ' | '-' | '.' | '(' | ')' | '\t'))
        .collect();
    ((3..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit()))
        .then_some(digits)
}

/// For logs: only the last characters stay visible (at most 4, and at most
/// half of the text): `+15551234567` → `********4567`, `1001` → `**01`.
pub fn mask(s: &str) -> String {
    let n = s.chars().count();
    let visible = (n / 2).min(4);
    s.chars()
        .enumerate()
        .map(|(i, c)| if i + visible < n { '*' } else { c })
        .collect()
}

// ---------------------------------------------------------------------------
// Requests from flows
// ---------------------------------------------------------------------------

/// How a `lookup` finds the customer.
#[derive(Clone, PartialEq, Eq)]
pub enum LookupKey {
    /// A customer id the caller typed.
    Id(String),
    /// A phone number (normally `$caller`).
    Phone(String),
}

/// What a flow asks of the directory ([`crate::flow::Action::Directory`]).
/// Plain data; its `Debug` masks ids and numbers and never shows the PIN.
#[derive(Clone, PartialEq, Eq)]
pub enum DirectoryRequest {
    /// The customer with their account, last order and next appointment.
    Lookup { by: LookupKey },
    VerifyPin {
        customer_id: String,
        pin: String,
        /// Who is asking, for the throttle across customers: the flow fills the
        /// caller, the call the source address.
        origin: Origin,
    },
    SetAppointmentStatus {
        customer_id: String,
        appointment_id: String,
        status: AppointmentStatus,
    },
}

impl fmt::Debug for LookupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LookupKey::Id(id) => write!(f, "Id({})", mask(id)),
            LookupKey::Phone(p) => write!(f, "Phone({})", mask(p)),
        }
    }
}

impl fmt::Debug for DirectoryRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DirectoryRequest::Lookup { by } => write!(f, "Lookup {{ by: {by:?} }}"),
            DirectoryRequest::VerifyPin {
                customer_id,
                origin,
                ..
            } => write!(
                f,
                "VerifyPin {{ customer_id: {}, pin: <hidden>, caller: {} }}",
                mask(customer_id),
                mask(&origin.caller)
            ),
            DirectoryRequest::SetAppointmentStatus {
                customer_id,
                appointment_id,
                status,
            } => write!(
                f,
                "SetAppointmentStatus {{ customer_id: {}, appointment_id: {appointment_id}, status: {} }}",
                mask(customer_id),
                status.as_str()
            ),
        }
    }
}

/// Everything a `lookup` gives the flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomerRecord {
    pub customer: Customer,
    pub account: Option<Account>,
    pub last_order: Option<Order>,
    pub next_appointment: Option<Appointment>,
}

/// The answer to a [`DirectoryRequest`], fed to
/// [`crate::flow::Run::handle_directory_response`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirectoryResponse {
    Found(Box<CustomerRecord>),
    NotFound,
    Pin(PinOutcome),
    Updated,
    /// The store itself timed out (after its retries): the flow's `timeout` branch.
    TimedOut,
    /// Any other failure: the flow's `error` branch. The text is safe to log.
    Failed(String),
}

/// Runs one request against a store. `now_unix_ms` is the wall-clock time
/// (for the PIN lockout and "next" appointment).
pub fn execute(
    dir: &dyn Directory,
    request: &DirectoryRequest,
    now_unix_ms: i64,
) -> DirectoryResponse {
    let result = match request {
        DirectoryRequest::Lookup { by } => lookup(dir, by, now_unix_ms),
        DirectoryRequest::VerifyPin {
            customer_id,
            pin,
            origin,
        } => dir
            .verify_pin_from(origin, customer_id, pin, now_unix_ms)
            .map(DirectoryResponse::Pin),
        DirectoryRequest::SetAppointmentStatus {
            customer_id,
            appointment_id,
            status,
        } => dir
            .set_appointment_status(customer_id, appointment_id, *status)
            .map(|()| DirectoryResponse::Updated),
    };
    let response = match result {
        Ok(r) => r,
        Err(DirectoryError::NotFound) => DirectoryResponse::NotFound,
        Err(DirectoryError::Timeout) => DirectoryResponse::TimedOut,
        Err(e) => DirectoryResponse::Failed(e.to_string()),
    };
    match &response {
        DirectoryResponse::Failed(e) => {
            tracing::warn!(request = ?request, error = %e, "directory request failed")
        }
        DirectoryResponse::TimedOut => {
            tracing::warn!(request = ?request, "directory request timed out")
        }
        r => tracing::debug!(request = ?request, outcome = outcome_name(r), "directory request"),
    }
    response
}

fn outcome_name(r: &DirectoryResponse) -> &'static str {
    match r {
        DirectoryResponse::Found(_) => "found",
        DirectoryResponse::NotFound => "not_found",
        DirectoryResponse::Pin(PinOutcome::Ok) => "pin_ok",
        DirectoryResponse::Pin(PinOutcome::Wrong { .. }) => "pin_wrong",
        DirectoryResponse::Pin(PinOutcome::Locked { .. }) => "pin_locked",
        DirectoryResponse::Updated => "updated",
        DirectoryResponse::TimedOut => "timeout",
        DirectoryResponse::Failed(_) => "error",
    }
}

fn lookup(
    dir: &dyn Directory,
    by: &LookupKey,
    now_unix_ms: i64,
) -> Result<DirectoryResponse, DirectoryError> {
    let customer = match by {
        LookupKey::Id(id) if id.trim().is_empty() => None,
        LookupKey::Id(id) => dir.customer_by_id(id.trim())?,
        LookupKey::Phone(p) => dir.customer_by_phone(p)?,
    };
    let Some(customer) = customer else {
        return Ok(DirectoryResponse::NotFound);
    };
    let account = dir.account(&customer.id)?;
    let last_order = dir.last_order(&customer.id)?;
    let next_appointment = dir.next_appointment(&customer.id, now_unix_ms)?;
    Ok(DirectoryResponse::Found(Box::new(CustomerRecord {
        customer,
        account,
        last_order,
        next_appointment,
    })))
}

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DirectoryKind {
    #[default]
    Sqlite,
    Http,
}

/// The `directory:` section of `phonetree.yaml`. Durations are written like
/// the rest of the file (`2s`, `250ms`).
///
/// ```yaml
/// directory:
///   kind: sqlite                 # or http
///   path: data/phonetree.db      # sqlite
///   import: data/customers.csv   # sqlite: loaded when the database is new
///   max_pin_attempts: 3           # wrong PINs that lock a customer
///   lockout: 15m
///   max_pin_attempts_per_caller: 5 # failed PIN checks from one calling number,
///                                  # over any customers, per caller_window (0: off)
///   max_pin_attempts_per_source: 30 # the same per source address (0: off; behind
///                                   # a SIP trunk every call has the trunk's address)
///   caller_window: 15m
///   url: http://127.0.0.1:9000/api   # http (plain http: terminate TLS in front)
///   timeout: 1s                  # per HTTP request
///   retries: 2                   # extra attempts after a 5xx or a timeout
///   backoff: 100ms               # first retry delay, doubled each time
///   breaker_failures: 5          # consecutive failed requests that open the breaker
///   breaker_cooldown: 30s        # open this long, then one trial request
///   cache_ttl: 30s               # lookups answered from memory this long (0s: off)
/// ```
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DirectoryConfig {
    pub kind: DirectoryKind,
    pub path: PathBuf,
    pub import: Option<PathBuf>,
    pub max_pin_attempts: u32,
    pub lockout: String,
    pub max_pin_attempts_per_caller: u32,
    pub max_pin_attempts_per_source: u32,
    pub caller_window: String,
    pub url: Option<String>,
    pub timeout: String,
    pub retries: u32,
    pub backoff: String,
    pub breaker_failures: u32,
    pub breaker_cooldown: String,
    pub cache_ttl: String,
}

impl Default for DirectoryConfig {
    fn default() -> Self {
        DirectoryConfig {
            kind: DirectoryKind::Sqlite,
            path: PathBuf::from("data/phonetree.db"),
            import: Some(PathBuf::from("data/customers.csv")),
            max_pin_attempts: 3,
            lockout: "15m".into(),
            max_pin_attempts_per_caller: 5,
            max_pin_attempts_per_source: 30,
            caller_window: "15m".into(),
            url: None,
            timeout: "1s".into(),
            retries: 2,
            backoff: "100ms".into(),
            breaker_failures: 5,
            breaker_cooldown: "30s".into(),
            cache_ttl: "30s".into(),
        }
    }
}

/// Opens the store a configuration names: SQLite (migrated, and loaded from
/// `import` when it has no customers yet) or HTTP (on `clock`), behind the
/// PIN throttle of the configuration.
pub fn open(
    cfg: &DirectoryConfig,
    clock: Arc<dyn Clock>,
) -> Result<Box<dyn Directory>, DirectoryError> {
    let throttle = ThrottleSettings::from_config(cfg)?;
    let store = open_store(cfg, clock)?;
    Ok(Box::new(Throttled::new(store, throttle)))
}

fn open_store(
    cfg: &DirectoryConfig,
    clock: Arc<dyn Clock>,
) -> Result<Box<dyn Directory>, DirectoryError> {
    match cfg.kind {
        DirectoryKind::Sqlite => {
            let opts = SqliteOptions::from_config(cfg)?;
            let db = SqliteDirectory::open_with(&cfg.path, opts)?;
            if let Some(csv) = &cfg.import
                && db.customer_count()? == 0
                && csv.exists()
            {
                db.import_csv(csv).map_err(|e| {
                    DirectoryError::Config(format!("importing {}: {e}", csv.display()))
                })?;
            }
            Ok(Box::new(db))
        }
        DirectoryKind::Http => Ok(Box::new(HttpDirectory::new(cfg, clock)?)),
    }
}

/// Every mistake in a `directory:` section, for `phonetree check` and start-up
/// (the stores repeat these checks when they open).
pub fn config_problems(cfg: &DirectoryConfig) -> Vec<String> {
    let mut problems = Vec::new();
    if cfg.max_pin_attempts == 0 {
        problems.push("max_pin_attempts must be at least 1".to_string());
    }
    for (what, value) in [
        ("lockout", &cfg.lockout),
        ("caller_window", &cfg.caller_window),
    ] {
        if let Err(DirectoryError::Config(e)) = config_duration(what, value) {
            problems.push(e);
        }
    }
    // A zero lockout would let a caller guess PINs as fast as they can dial; a zero
    // window would forget every failure at once.
    for (what, value) in [
        ("lockout", &cfg.lockout),
        ("caller_window", &cfg.caller_window),
    ] {
        if let Ok(d) = config_duration(what, value)
            && d.is_zero()
        {
            problems.push(format!("{what} must be above 0"));
        }
    }
    problems
}

pub(crate) fn config_duration(what: &str, s: &str) -> Result<std::time::Duration, DirectoryError> {
    crate::config::parse_duration(s).map_err(|e| DirectoryError::Config(format!("{what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_keeps_at_most_four_and_half() {
        assert_eq!(mask("+15551234567"), "********4567");
        assert_eq!(mask("1001"), "**01");
        assert_eq!(mask("7"), "*");
        assert_eq!(mask(""), "");
        assert_eq!(mask("é1234567"), "****4567");
    }

    #[test]
    fn phone_numbers_normalise() {
        assert_eq!(
            normalize_phone("+1 (555) 123-4567").as_deref(),
            Some("15551234567")
        );
        assert_eq!(
            normalize_phone("+15551234567").as_deref(),
            Some("15551234567")
        );
        assert_eq!(normalize_phone("anonymous"), None);
        assert_eq!(normalize_phone("+"), None);
        assert_eq!(normalize_phone("1234567890123456"), None);
    }

    #[test]
    fn request_debug_hides_secrets() {
        let r = DirectoryRequest::VerifyPin {
            customer_id: "100234".into(),
            pin: "4321".into(),
            origin: Origin {
                caller: "+15557658888".into(),
                source: None,
            },
        };
        let s = format!("{r:?}");
        assert!(
            !s.contains("4321") && !s.contains("100234") && !s.contains("555765"),
            "{s}"
        );
        let l = DirectoryRequest::Lookup {
            by: LookupKey::Phone("+15551234567".into()),
        };
        assert!(!format!("{l:?}").contains("555123"));
    }

    #[test]
    fn appointment_local_time_uses_its_offset() {
        let a = Appointment::new(
            "a1",
            "2026-12-03T14:30:00-05:00",
            AppointmentStatus::Scheduled,
        )
        .unwrap();
        assert_eq!(
            a.local_date_time(),
            Some(("2026-12-03".into(), "14:30".into()))
        );
        assert_eq!(a.starts_at_unix_ms, 1_796_326_200_000);
        assert!(Appointment::new("a", "tomorrow", AppointmentStatus::Scheduled).is_none());
        let z =
            Appointment::new("z", "2026-01-01T00:05:00Z", AppointmentStatus::Scheduled).unwrap();
        assert_eq!(
            z.local_date_time(),
            Some(("2026-01-01".into(), "00:05".into()))
        );
    }

    #[test]
    fn amounts_in_major_units() {
        let a = |m| Account {
            balance_minor: m,
            currency: "USD".into(),
        };
        assert_eq!(a(12345).amount(), "123.45");
        assert_eq!(a(5).amount(), "0.05");
        assert_eq!(a(-250).amount(), "-2.50");
        assert_eq!(a(i64::MIN).amount(), "-92233720368547758.08");
    }

    #[test]
    fn config_reads_yaml_with_defaults() {
        let c: DirectoryConfig =
            serde_saphyr::from_str("kind: http\nurl: http://127.0.0.1:9/x\nretries: 1\n").unwrap();
        assert_eq!(c.kind, DirectoryKind::Http);
        assert_eq!(c.retries, 1);
        assert_eq!(c.timeout, "1s");
        assert!(serde_saphyr::from_str::<DirectoryConfig>("kind: ldap\n").is_err());
        assert!(serde_saphyr::from_str::<DirectoryConfig>("colour: red\n").is_err());
        let c: DirectoryConfig =
            serde_saphyr::from_str("max_pin_attempts_per_caller: 7\ncaller_window: 1h\n").unwrap();
        assert_eq!(c.max_pin_attempts_per_caller, 7);
        assert_eq!(c.max_pin_attempts_per_source, 30);
        assert!(config_problems(&c).is_empty());
        assert_eq!(
            ThrottleSettings::from_config(&c).unwrap().window_ms,
            3_600_000
        );
        let bad = DirectoryConfig {
            caller_window: "0s".into(),
            lockout: "soon".into(),
            max_pin_attempts: 0,
            ..c
        };
        assert_eq!(
            config_problems(&bad).len(),
            3,
            "{:?}",
            config_problems(&bad)
        );
    }
}
