//! PIN guessing throttled by *who* guesses, across customers.
//!
//! The store's lockout is keyed on the customer: it stops one customer's PIN
//! being guessed, but not one caller trying `0000` on customer after customer
//! (and locking each of them out on the way). [`PinThrottle`] counts failed PIN
//! checks per calling number and per source address within a sliding window;
//! past the limit, further checks from that origin fail fast as
//! [`PinOutcome::Locked`] *without reaching the store*, so the customers'
//! own counters are not touched.
//!
//! - Owns: the failure times of recent origins (bounded: [`MAX_ORIGINS`]).
//! - Takes: an [`Origin`] and `now_unix_ms` with every check; never reads a clock.
//! - Gives: [`Throttled`], any [`Directory`] with the throttle in front of
//!   `verify_pin_from`.
//! - Never: blocks while holding its lock, or keeps a PIN.
//!
//! Like the store, it reserves before it checks: an attempt holds a place in
//! the origin's budget while the store hashes, so 200 checks at once from one
//! number get `max_per_caller` through, not 200.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;

use super::{
    Account, Appointment, AppointmentStatus, Customer, Directory, DirectoryConfig, DirectoryError,
    Order, PinOutcome, config_duration, mask, normalize_phone,
};

/// Most origins remembered at once. When that many have failures within the
/// window, a check from a new origin is refused (fail closed): the source
/// limit bounds how fast one address can fill this.
pub const MAX_ORIGINS: usize = 65_536;

/// Who is checking a PIN: the calling number as the flow sees it (`$caller`)
/// and the address the call came from, when known.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Origin {
    pub caller: String,
    pub source: Option<IpAddr>,
}

impl std::fmt::Debug for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Origin {{ caller: {}, source: ", mask(&self.caller))?;
        match self.source {
            Some(ip) => write!(f, "{ip} }}"),
            None => write!(f, "none }}"),
        }
    }
}

/// Limits of a [`PinThrottle`]; `0` turns a limit off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThrottleSettings {
    /// Failed PIN checks from one calling number, over any customers, per window.
    pub max_per_caller: u32,
    /// Failed PIN checks from one source address per window. Behind a SIP
    /// trunk every call has the trunk's address: set it well above the
    /// failures all callers together make in a window, or 0.
    pub max_per_source: u32,
    pub window_ms: i64,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        ThrottleSettings {
            max_per_caller: 5,
            max_per_source: 30,
            window_ms: 15 * 60 * 1000,
        }
    }
}

impl ThrottleSettings {
    pub fn from_config(cfg: &DirectoryConfig) -> Result<ThrottleSettings, DirectoryError> {
        let window = config_duration("caller_window", &cfg.caller_window)?;
        if window.is_zero() {
            return Err(DirectoryError::Config(
                "caller_window must be above 0".into(),
            ));
        }
        Ok(ThrottleSettings {
            max_per_caller: cfg.max_pin_attempts_per_caller,
            max_per_source: cfg.max_pin_attempts_per_source,
            window_ms: i64::try_from(window.as_millis()).unwrap_or(i64::MAX),
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    /// Normalised digits, or `anonymous` for a number that is none: withholding
    /// the number must not be a way around the limit.
    Caller(String),
    Source(IpAddr),
}

#[derive(Debug, Default)]
struct Entry {
    /// Times of failed checks within the window, oldest first.
    failures: VecDeque<i64>,
    /// Checks admitted and not yet finished.
    in_flight: u32,
}

impl Entry {
    fn forget_before(&mut self, cutoff: i64) {
        while self.failures.front().is_some_and(|t| *t <= cutoff) {
            self.failures.pop_front();
        }
    }
}

/// Failed PIN checks per calling number and per source. `Send + Sync`.
#[derive(Debug)]
pub struct PinThrottle {
    settings: ThrottleSettings,
    entries: Mutex<HashMap<Key, Entry>>,
}

/// A place in an origin's budget, held while the store checks the PIN.
/// Dropping it without [`Permit::finish`] counts no failure.
#[must_use]
pub struct Permit<'a> {
    throttle: &'a PinThrottle,
    keys: Vec<(Key, u32)>,
}

impl PinThrottle {
    pub fn new(settings: ThrottleSettings) -> PinThrottle {
        PinThrottle {
            settings,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn keys(&self, origin: &Origin) -> Vec<(Key, u32)> {
        let mut keys = Vec::with_capacity(2);
        if self.settings.max_per_caller > 0 {
            let n = normalize_phone(&origin.caller).unwrap_or_else(|| "anonymous".into());
            keys.push((Key::Caller(n), self.settings.max_per_caller));
        }
        if let (Some(ip), max) = (origin.source, self.settings.max_per_source)
            && max > 0
        {
            keys.push((Key::Source(ip), max));
        }
        keys
    }

    /// Admits one check from `origin`, or says until when it is refused.
    pub fn begin(&self, origin: &Origin, now_unix_ms: i64) -> Result<Permit<'_>, i64> {
        let keys = self.keys(origin);
        let window = self.settings.window_ms;
        let cutoff = now_unix_ms.saturating_sub(window);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut refused_until: Option<i64> = None;
        for (key, max) in &keys {
            let Some(e) = entries.get_mut(key) else {
                continue;
            };
            e.forget_before(cutoff);
            let used = e.failures.len() as u64 + u64::from(e.in_flight);
            if used >= u64::from(*max) {
                // A place frees when the oldest failure leaves the window (or,
                // if checks in flight fill the budget, a window from now at worst).
                let until = e
                    .failures
                    .front()
                    .map_or(now_unix_ms, |t| *t)
                    .saturating_add(window);
                refused_until = Some(refused_until.map_or(until, |u| u.max(until)));
            }
        }
        if let Some(until) = refused_until {
            return Err(until);
        }
        let new_keys = keys
            .iter()
            .filter(|(k, _)| !entries.contains_key(k))
            .count();
        if new_keys > 0 && entries.len() + new_keys > MAX_ORIGINS {
            entries.retain(|_, e| {
                e.forget_before(cutoff);
                e.in_flight > 0 || !e.failures.is_empty()
            });
            if entries.len() + new_keys > MAX_ORIGINS {
                tracing::warn!(
                    origins = entries.len(),
                    "PIN throttle full: refusing PIN checks from new origins"
                );
                return Err(now_unix_ms.saturating_add(window));
            }
        }
        for (key, _) in &keys {
            entries.entry(key.clone()).or_default().in_flight += 1;
        }
        Ok(Permit {
            throttle: self,
            keys,
        })
    }

    /// Failures counted for a calling number within the window, checks in flight included.
    pub fn caller_load(&self, caller: &str, now_unix_ms: i64) -> u32 {
        let n = normalize_phone(caller).unwrap_or_else(|| "anonymous".into());
        let cutoff = now_unix_ms.saturating_sub(self.settings.window_ms);
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(&Key::Caller(n)).map_or(0, |e| {
            let live = e.failures.iter().filter(|t| **t > cutoff).count();
            u32::try_from(live).unwrap_or(u32::MAX) + e.in_flight
        })
    }

    fn release(&self, keys: &[(Key, u32)], failed_at: Option<i64>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        for (key, _) in keys {
            if let Some(e) = entries.get_mut(key) {
                e.in_flight = e.in_flight.saturating_sub(1);
                if let Some(t) = failed_at {
                    // Kept in order even if threads finish out of order.
                    let at = e.failures.partition_point(|x| *x <= t);
                    e.failures.insert(at, t);
                }
                if e.in_flight == 0 && e.failures.is_empty() {
                    entries.remove(key);
                }
            }
        }
    }
}

impl Permit<'_> {
    /// Ends the check; `failed`: it counts against the origin (a wrong PIN, an
    /// unknown customer, a locked one).
    pub fn finish(mut self, failed: bool, now_unix_ms: i64) {
        let keys = std::mem::take(&mut self.keys);
        self.throttle.release(&keys, failed.then_some(now_unix_ms));
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.keys.is_empty() {
            let keys = std::mem::take(&mut self.keys);
            self.throttle.release(&keys, None);
        }
    }
}

/// A store with a [`PinThrottle`] in front of its PIN checks; everything else
/// passes straight through.
pub struct Throttled {
    inner: Box<dyn Directory>,
    throttle: PinThrottle,
}

impl Throttled {
    pub fn new(inner: Box<dyn Directory>, settings: ThrottleSettings) -> Throttled {
        Throttled {
            inner,
            throttle: PinThrottle::new(settings),
        }
    }

    pub fn throttle(&self) -> &PinThrottle {
        &self.throttle
    }
}

impl Directory for Throttled {
    fn customer_by_id(&self, id: &str) -> Result<Option<Customer>, DirectoryError> {
        self.inner.customer_by_id(id)
    }

    fn customer_by_phone(&self, number: &str) -> Result<Option<Customer>, DirectoryError> {
        self.inner.customer_by_phone(number)
    }

    /// Without an origin: the store's per-customer lockout only.
    fn verify_pin(
        &self,
        customer_id: &str,
        pin: &str,
        now_unix_ms: i64,
    ) -> Result<PinOutcome, DirectoryError> {
        self.inner.verify_pin(customer_id, pin, now_unix_ms)
    }

    fn verify_pin_from(
        &self,
        origin: &Origin,
        customer_id: &str,
        pin: &str,
        now_unix_ms: i64,
    ) -> Result<PinOutcome, DirectoryError> {
        let permit = match self.throttle.begin(origin, now_unix_ms) {
            Ok(p) => p,
            Err(until_unix_ms) => {
                tracing::info!(origin = ?origin, "PIN check refused: too many failures from this caller");
                return Ok(PinOutcome::Locked { until_unix_ms });
            }
        };
        let result = self
            .inner
            .verify_pin_from(origin, customer_id, pin, now_unix_ms);
        let failed = matches!(
            result,
            Ok(PinOutcome::Wrong { .. } | PinOutcome::Locked { .. })
                | Err(DirectoryError::NotFound)
        );
        permit.finish(failed, now_unix_ms);
        result
    }

    fn next_appointment(
        &self,
        customer_id: &str,
        now_unix_ms: i64,
    ) -> Result<Option<Appointment>, DirectoryError> {
        self.inner.next_appointment(customer_id, now_unix_ms)
    }

    fn set_appointment_status(
        &self,
        customer_id: &str,
        appointment_id: &str,
        status: AppointmentStatus,
    ) -> Result<(), DirectoryError> {
        self.inner
            .set_appointment_status(customer_id, appointment_id, status)
    }

    fn last_order(&self, customer_id: &str) -> Result<Option<Order>, DirectoryError> {
        self.inner.last_order(customer_id)
    }

    fn account(&self, customer_id: &str) -> Result<Option<Account>, DirectoryError> {
        self.inner.account(customer_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_796_000_000_000;

    fn throttle(caller: u32, source: u32) -> PinThrottle {
        PinThrottle::new(ThrottleSettings {
            max_per_caller: caller,
            max_per_source: source,
            window_ms: 60_000,
        })
    }

    fn from(caller: &str, ip: Option<&str>) -> Origin {
        Origin {
            caller: caller.into(),
            source: ip.map(|s| s.parse().unwrap()),
        }
    }

    fn fail(t: &PinThrottle, o: &Origin, at: i64) {
        t.begin(o, at).expect("admitted").finish(true, at);
    }

    #[test]
    fn failures_leave_the_window_one_by_one() {
        let t = throttle(2, 0);
        let o = from("+15550001111", None);
        fail(&t, &o, T0);
        fail(&t, &o, T0 + 10_000);
        assert_eq!(t.begin(&o, T0 + 20_000).err(), Some(T0 + 60_000));
        // The first failure is out of the window: one place again.
        fail(&t, &o, T0 + 60_000);
        assert_eq!(t.begin(&o, T0 + 60_001).err(), Some(T0 + 70_000));
        assert!(t.begin(&o, T0 + 70_000).is_ok());
    }

    #[test]
    fn successes_and_dropped_permits_count_nothing_but_hold_a_place_meanwhile() {
        let t = throttle(2, 0);
        let o = from("+15550001111", None);
        let a = t.begin(&o, T0).unwrap();
        let b = t.begin(&o, T0).unwrap();
        assert!(t.begin(&o, T0).is_err(), "both places are in flight");
        a.finish(false, T0);
        drop(b);
        assert_eq!(t.caller_load("+15550001111", T0), 0);
        assert!(t.begin(&o, T0).is_ok());
    }

    #[test]
    fn withheld_numbers_share_one_budget_and_sources_have_their_own() {
        let t = throttle(2, 3);
        fail(&t, &from("anonymous", Some("192.0.2.1")), T0);
        fail(&t, &from("", Some("192.0.2.2")), T0);
        assert!(
            t.begin(&from("unavailable", Some("192.0.2.3")), T0)
                .is_err()
        );
        // Three numbers from one address: the source budget is 3.
        let ip = Some("203.0.113.5");
        fail(&t, &from("+15550000001", ip), T0);
        fail(&t, &from("+15550000002", ip), T0);
        fail(&t, &from("+15550000003", ip), T0);
        assert!(t.begin(&from("+15550000004", ip), T0).is_err());
        assert!(
            t.begin(&from("+15550000004", Some("203.0.113.6")), T0)
                .is_ok()
        );
    }

    #[test]
    fn zero_turns_the_limits_off() {
        let t = throttle(0, 0);
        let o = from("+15550001111", Some("192.0.2.1"));
        for i in 0..100 {
            fail(&t, &o, T0 + i);
        }
        assert!(t.begin(&o, T0 + 100).is_ok());
    }

    #[test]
    fn a_full_table_forgets_expired_origins_and_refuses_new_ones_while_full() {
        let t = throttle(5, 0);
        for i in 0..MAX_ORIGINS {
            fail(&t, &from(&format!("+1{i:010}"), None), T0);
        }
        let new = from("+19999999999", None);
        assert_eq!(t.begin(&new, T0 + 1).err(), Some(T0 + 1 + 60_000));
        // Known origins keep their budget.
        assert!(t.begin(&from("+10000000007", None), T0 + 1).is_ok());
        // Once the failures are old, the table makes room.
        assert!(t.begin(&new, T0 + 60_000).is_ok());
    }
}
