//! Bearer tokens, roles, and the limiter for failed token attempts.
//!
//! - **Owns:** token hashing and comparison, the failure table per source address.
//! - **Takes:** token hashes from the configuration, `now` from the caller.
//! - **Gives:** the `Role` of a presented token, `Verdict`s for a source address.
//! - **Never:** stores or logs a token in clear, or reads the clock.

use crate::config::HttpToken;
pub use crate::config::TokenRole as Role;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Byte comparison whose time does not depend on where the bytes differ.
fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The role of a presented token, and the name of its configuration entry. Hashes are
/// compared in constant time and every entry is compared, so the time taken says nothing
/// about which entry (if any) matched. Comparing hashes rather than tokens also hides the
/// token's length.
pub fn role_of<'a>(tokens: &'a [HttpToken], presented: &str) -> Option<(Role, &'a str)> {
    let hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    let mut found: Option<(Role, &str)> = None;
    for t in tokens {
        if ct_eq(&hash, &t.sha256) && found.is_none_or(|(r, _)| t.role > r) {
            found = Some((t.role, &t.name));
        }
    }
    found
}

/// Refuses to serve the admin API beyond loopback when no token is configured: the
/// dashboard and agent controls would be open to anyone who can reach the port.
pub fn check_bind_safety(listen: SocketAddr, tokens: &[HttpToken]) -> Result<(), String> {
    if listen.ip().is_loopback() || !tokens.is_empty() {
        return Ok(());
    }
    Err(format!(
        "refusing to start: the admin API would listen on {listen}, reachable beyond this \
         host, with no token configured. Set PHONETREE_ADMIN_TOKEN, add http.tokens to the \
         configuration, or listen on 127.0.0.1"
    ))
}

/// What to do with a request from a source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Too many failed tokens: refuse (429) until then.
    Blocked {
        until: Instant,
    },
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    window_start: Instant,
    failures: u32,
    blocked_until: Option<Instant>,
}

/// Failed token attempts per source address, in a bounded table: `max_failures` failures
/// within `window` block the source for `block`.
#[derive(Debug)]
pub struct RateLimiter {
    max_failures: u32,
    window: Duration,
    block: Duration,
    capacity: usize,
    table: HashMap<IpAddr, Entry>,
}

impl Default for RateLimiter {
    /// 10 failures a minute → 5 minutes of 429, for up to 4096 sources.
    fn default() -> Self {
        RateLimiter::new(10, Duration::from_secs(60), Duration::from_secs(300), 4096)
    }
}

impl RateLimiter {
    pub fn new(max_failures: u32, window: Duration, block: Duration, capacity: usize) -> Self {
        RateLimiter {
            max_failures: max_failures.max(1),
            window,
            block,
            capacity: capacity.max(1),
            table: HashMap::new(),
        }
    }

    pub fn check(&self, source: IpAddr, now: Instant) -> Verdict {
        match self.table.get(&source).and_then(|e| e.blocked_until) {
            Some(until) if now < until => Verdict::Blocked { until },
            _ => Verdict::Allow,
        }
    }

    /// Counts a failed attempt; true when this failure blocks the source.
    pub fn record_failure(&mut self, source: IpAddr, now: Instant) -> bool {
        if !self.table.contains_key(&source) && self.table.len() >= self.capacity {
            self.evict(now);
        }
        let e = self.table.entry(source).or_insert(Entry {
            window_start: now,
            failures: 0,
            blocked_until: None,
        });
        if e.blocked_until.is_some_and(|u| now >= u) {
            e.blocked_until = None;
            e.failures = 0;
            e.window_start = now;
        }
        if now.saturating_duration_since(e.window_start) >= self.window {
            e.window_start = now;
            e.failures = 0;
        }
        e.failures += 1;
        if e.failures >= self.max_failures && e.blocked_until.is_none() {
            e.blocked_until = Some(now + self.block);
            return true;
        }
        false
    }

    /// Makes room: first drops every entry that is neither blocked nor in a live window;
    /// if all are live, drops the one with the oldest window (a flood of fresh sources
    /// cannot grow the table; at worst it forgets the least recent of them).
    fn evict(&mut self, now: Instant) {
        let window = self.window;
        self.table.retain(|_, e| {
            e.blocked_until.is_some_and(|u| now < u)
                || now.saturating_duration_since(e.window_start) < window
        });
        if self.table.len() >= self.capacity
            && let Some(oldest) = self
                .table
                .iter()
                .min_by_key(|(_, e)| (e.blocked_until.is_some(), e.window_start))
                .map(|(ip, _)| *ip)
        {
            self.table.remove(&oldest);
        }
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    fn token(name: &str, role: Role, clear: &str) -> HttpToken {
        HttpToken {
            name: name.into(),
            role,
            sha256: Sha256::digest(clear.as_bytes()).into(),
        }
    }

    #[test]
    fn token_maps_to_its_role_and_unknown_tokens_to_none() {
        let tokens = vec![
            token("wall", Role::Read, "r"),
            token("ops", Role::Admin, "a"),
        ];
        assert_eq!(role_of(&tokens, "r"), Some((Role::Read, "wall")));
        assert_eq!(role_of(&tokens, "a"), Some((Role::Admin, "ops")));
        assert_eq!(role_of(&tokens, "x"), None);
        assert_eq!(role_of(&tokens, ""), None);
        assert_eq!(role_of(&[], "a"), None);
    }

    #[test]
    fn the_same_token_twice_gets_the_higher_role() {
        let tokens = vec![token("a", Role::Read, "t"), token("b", Role::Admin, "t")];
        assert_eq!(role_of(&tokens, "t"), Some((Role::Admin, "b")));
    }

    #[test]
    fn non_loopback_without_tokens_is_refused() {
        assert!(check_bind_safety("127.0.0.1:8080".parse().unwrap(), &[]).is_ok());
        assert!(check_bind_safety("[::1]:8080".parse().unwrap(), &[]).is_ok());
        let err = check_bind_safety("0.0.0.0:8080".parse().unwrap(), &[]).unwrap_err();
        assert!(err.contains("PHONETREE_ADMIN_TOKEN"), "{err}");
        assert!(check_bind_safety("10.1.2.3:8080".parse().unwrap(), &[]).is_err());
        let with = vec![token("ops", Role::Admin, "t")];
        assert!(check_bind_safety("0.0.0.0:8080".parse().unwrap(), &with).is_ok());
    }

    #[test]
    fn ten_failures_in_a_minute_block_for_five_minutes() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::default();
        for i in 0..9 {
            assert!(!rl.record_failure(ip(1), t0 + Duration::from_secs(i)));
            assert_eq!(rl.check(ip(1), t0 + Duration::from_secs(i)), Verdict::Allow);
        }
        assert!(rl.record_failure(ip(1), t0 + Duration::from_secs(9)));
        let until = t0 + Duration::from_secs(9 + 300);
        assert_eq!(
            rl.check(ip(1), t0 + Duration::from_secs(10)),
            Verdict::Blocked { until }
        );
        assert_eq!(
            rl.check(ip(2), t0 + Duration::from_secs(10)),
            Verdict::Allow
        );
        assert_eq!(rl.check(ip(1), until), Verdict::Allow);
    }

    #[test]
    fn failures_spread_beyond_the_window_never_block() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::default();
        for i in 0..50 {
            assert!(!rl.record_failure(ip(1), t0 + Duration::from_secs(i * 7)));
        }
        assert_eq!(
            rl.check(ip(1), t0 + Duration::from_secs(400)),
            Verdict::Allow
        );
    }

    #[test]
    fn table_stays_bounded_and_keeps_blocked_sources() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(2, Duration::from_secs(60), Duration::from_secs(300), 4);
        rl.record_failure(ip(1), t0);
        rl.record_failure(ip(1), t0);
        assert!(matches!(rl.check(ip(1), t0), Verdict::Blocked { .. }));
        for n in 2..50 {
            rl.record_failure(ip(n), t0 + Duration::from_millis(n as u64));
            assert!(rl.len() <= 4);
        }
        assert!(matches!(
            rl.check(ip(1), t0 + Duration::from_secs(1)),
            Verdict::Blocked { .. }
        ));
    }
}
