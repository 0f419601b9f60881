//! Log lines for bad input, per source, without one line per datagram.
//!
//! - **Owns:** a bounded table of sources (at most `max_sources`, then one "others" bucket),
//!   each with a window of `interval` that starts at its first bad datagram.
//! - **Takes:** `record(now, source, reason)` for each bad datagram.
//! - **Gives:** whether that datagram gets its own log line (the first `burst` of a window),
//!   and, through `poll_summary(now)`, one [`Summary`] per source whose window ended with more
//!   datagrams than it logged.
//! - **Never:** reads the clock, allocates per datagram (reasons are `&'static str`, a few per
//!   source), or grows past `max_sources` entries, whatever the traffic.
//!
//! 20,000 garbage datagrams a second gave 20,000 log lines a second; with this they give
//! `burst` lines and one summary per source per interval.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Lines per source per window before summarising.
pub const DEFAULT_BURST: u32 = 5;
/// Length of a source's window.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Sources tracked one by one; more share the "others" bucket.
pub const DEFAULT_MAX_SOURCES: usize = 1024;
/// Distinct reasons counted per source; more are counted under the last one kept.
const MAX_REASONS: usize = 4;

/// What was not logged one by one from a source (or from all sources beyond the table)
/// during one window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// `None`: the "others" bucket (sources that did not fit the table).
    pub source: Option<IpAddr>,
    /// Bad datagrams in the window, the logged ones included.
    pub total: u64,
    /// How many of them had a line of their own.
    pub logged: u32,
    pub interval: Duration,
    /// Counts by reason, in order of first appearance.
    pub reasons: Vec<(&'static str, u64)>,
}

impl fmt::Display for Summary {
    /// "dropped 598,211 datagrams from 127.0.0.2 in the last 10 s: not SIP (first 5 logged)"
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dropped {} datagrams from ", thousands(self.total))?;
        match self.source {
            Some(ip) => write!(f, "{ip}")?,
            None => write!(f, "other sources")?,
        }
        write!(f, " in the last {} s: ", self.interval.as_secs())?;
        if let [(reason, _)] = self.reasons.as_slice() {
            write!(f, "{reason}")?;
        } else {
            for (i, (reason, n)) in self.reasons.iter().enumerate() {
                let sep = if i == 0 { "" } else { ", " };
                write!(f, "{sep}{reason} ×{}", thousands(*n))?;
            }
        }
        write!(f, " (first {} logged)", self.logged)
    }
}

/// 598211 → "598,211".
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[derive(Debug)]
struct Window {
    ends: Instant,
    total: u64,
    logged: u32,
    reasons: Vec<(&'static str, u64)>,
}

impl Window {
    fn new(now: Instant, interval: Duration) -> Window {
        Window {
            ends: now + interval,
            total: 0,
            logged: 0,
            reasons: Vec::new(),
        }
    }

    fn count(&mut self, reason: &'static str) {
        self.total += 1;
        if let Some(slot) = self.reasons.iter_mut().find(|(r, _)| *r == reason) {
            slot.1 += 1;
        } else if self.reasons.len() < MAX_REASONS {
            self.reasons.push((reason, 1));
        } else if let Some(last) = self.reasons.last_mut() {
            last.1 += 1;
        }
    }

    /// The summary this window owes, if it saw more than it logged.
    fn summary(self, source: Option<IpAddr>, interval: Duration) -> Option<Summary> {
        (self.total > u64::from(self.logged)).then_some(Summary {
            source,
            total: self.total,
            logged: self.logged,
            interval,
            reasons: self.reasons,
        })
    }
}

/// Sampling of per-datagram log lines; see the module doc.
#[derive(Debug)]
pub struct LogSampler {
    interval: Duration,
    burst: u32,
    max_sources: usize,
    sources: HashMap<IpAddr, Window>,
    others: Option<Window>,
    /// Summaries of ended windows not yet polled, and when they were closed.
    ready: Vec<Summary>,
    ready_at: Option<Instant>,
    /// Earliest end of any open window (`None`: none open).
    next_due: Option<Instant>,
}

impl Default for LogSampler {
    fn default() -> Self {
        LogSampler::new(DEFAULT_INTERVAL, DEFAULT_BURST, DEFAULT_MAX_SOURCES)
    }
}

impl LogSampler {
    pub fn new(interval: Duration, burst: u32, max_sources: usize) -> LogSampler {
        LogSampler {
            interval,
            burst,
            max_sources,
            sources: HashMap::new(),
            others: None,
            ready: Vec::new(),
            ready_at: None,
            next_due: None,
        }
    }

    /// Counts one bad datagram from `source`; true when it should be logged on its own line.
    pub fn record(&mut self, now: Instant, source: IpAddr, reason: &'static str) -> bool {
        // Close ended windows first, so this datagram opens a fresh one.
        self.close_ended(now);
        let (interval, burst) = (self.interval, self.burst);
        let window = if self.sources.contains_key(&source) || self.sources.len() < self.max_sources
        {
            self.sources
                .entry(source)
                .or_insert_with(|| Window::new(now, interval))
        } else {
            self.others
                .get_or_insert_with(|| Window::new(now, interval))
        };
        window.count(reason);
        let log = window.logged < burst;
        if log {
            window.logged += 1;
        }
        let ends = window.ends;
        self.next_due = Some(self.next_due.map_or(ends, |d| d.min(ends)));
        log
    }

    /// When to call `poll_summary` next (if no datagram comes first): the end of the earliest
    /// open window, or a past instant when summaries are already owed.
    pub fn next_due(&self) -> Option<Instant> {
        self.ready_at.or(self.next_due)
    }

    /// One summary of a window that has ended, if any is owed.
    pub fn poll_summary(&mut self, now: Instant) -> Option<Summary> {
        self.close_ended(now);
        let summary = self.ready.pop();
        if self.ready.is_empty() {
            self.ready_at = None;
        }
        summary
    }

    /// Sources tracked one by one right now (bounded by `max_sources`).
    pub fn tracked_sources(&self) -> usize {
        self.sources.len()
    }

    fn close_ended(&mut self, now: Instant) {
        if self.next_due.is_none_or(|d| d > now) {
            return;
        }
        let interval = self.interval;
        let ended: Vec<IpAddr> = self
            .sources
            .iter()
            .filter(|(_, w)| w.ends <= now)
            .map(|(ip, _)| *ip)
            .collect();
        for ip in ended {
            if let Some(s) = self
                .sources
                .remove(&ip)
                .and_then(|w| w.summary(Some(ip), interval))
            {
                self.ready.push(s);
            }
        }
        if self.others.as_ref().is_some_and(|w| w.ends <= now) {
            if let Some(s) = self.others.take().and_then(|w| w.summary(None, interval)) {
                self.ready.push(s);
            }
        }
        if !self.ready.is_empty() {
            self.ready_at.get_or_insert(now);
        }
        self.next_due = self
            .sources
            .values()
            .chain(self.others.as_ref())
            .map(|w| w.ends)
            .min();
        // A flood from many sources may have grown the table; give the memory back once it
        // has emptied out (a HashMap never shrinks on its own).
        if self.sources.capacity() > 64 && self.sources.len() < self.sources.capacity() / 4 {
            self.sources.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    fn drain(s: &mut LogSampler, now: Instant) -> Vec<Summary> {
        std::iter::from_fn(|| s.poll_summary(now)).collect()
    }

    #[test]
    fn first_five_lines_pass_then_one_summary_per_interval() {
        let t0 = Instant::now();
        let mut s = LogSampler::default();
        let logged = (0..100_000)
            .filter(|i| s.record(t0 + Duration::from_micros(*i), ip(2), "not SIP"))
            .count();
        assert_eq!(logged, 5);
        assert!(drain(&mut s, t0 + Duration::from_secs(9)).is_empty());
        let summaries = drain(&mut s, t0 + Duration::from_secs(10));
        assert_eq!(
            summaries,
            vec![Summary {
                source: Some(ip(2)),
                total: 100_000,
                logged: 5,
                interval: Duration::from_secs(10),
                reasons: vec![("not SIP", 100_000)],
            }]
        );
        assert!(drain(&mut s, t0 + Duration::from_secs(20)).is_empty());
    }

    #[test]
    fn summary_reads_as_count_source_interval_and_reason() {
        let summary = Summary {
            source: Some(ip(2)),
            total: 598_211,
            logged: 5,
            interval: Duration::from_secs(10),
            reasons: vec![("not SIP", 598_211)],
        };
        assert_eq!(
            summary.to_string(),
            "dropped 598,211 datagrams from 127.0.0.2 in the last 10 s: not SIP (first 5 logged)"
        );
        let mixed = Summary {
            source: None,
            total: 1_000_001,
            logged: 5,
            interval: Duration::from_secs(10),
            reasons: vec![("not SIP", 1_000_000), ("unknown method", 1)],
        };
        assert_eq!(
            mixed.to_string(),
            "dropped 1,000,001 datagrams from other sources in the last 10 s: \
             not SIP ×1,000,000, unknown method ×1 (first 5 logged)"
        );
    }

    #[test]
    fn a_window_that_logged_everything_owes_no_summary() {
        let t0 = Instant::now();
        let mut s = LogSampler::default();
        for _ in 0..5 {
            assert!(s.record(t0, ip(2), "not SIP"));
        }
        assert!(drain(&mut s, t0 + Duration::from_secs(10)).is_empty());
        assert_eq!(s.tracked_sources(), 0, "the ended window freed its slot");
    }

    #[test]
    fn sources_have_their_own_allowance() {
        let t0 = Instant::now();
        let mut s = LogSampler::default();
        for _ in 0..10 {
            s.record(t0, ip(2), "not SIP");
        }
        assert!(
            s.record(t0, ip(3), "not SIP"),
            "a quiet source still gets its lines"
        );
        let mut summaries = drain(&mut s, t0 + Duration::from_secs(10));
        summaries.sort_by_key(|s| s.source);
        assert_eq!(summaries.len(), 1);
        assert_eq!(summaries[0].source, Some(ip(2)));
        assert_eq!(summaries[0].total, 10);
    }

    #[test]
    fn the_allowance_comes_back_after_the_interval() {
        let t0 = Instant::now();
        let mut s = LogSampler::default();
        for _ in 0..6 {
            s.record(t0, ip(2), "not SIP");
        }
        assert!(!s.record(t0 + Duration::from_secs(9), ip(2), "not SIP"));
        // The next datagram after the window opens a new one; the old one is owed.
        assert!(s.record(t0 + Duration::from_secs(10), ip(2), "not SIP"));
        assert_eq!(s.next_due(), Some(t0 + Duration::from_secs(10)));
        let owed = drain(&mut s, t0 + Duration::from_secs(10));
        assert_eq!(owed.len(), 1);
        assert_eq!(owed[0].total, 7);
        assert_eq!(s.next_due(), Some(t0 + Duration::from_secs(20)));
    }

    #[test]
    fn reasons_are_counted_apart_and_bounded() {
        let t0 = Instant::now();
        let mut s = LogSampler::default();
        let reasons = ["a", "b", "c", "d", "e", "f"];
        for (i, r) in reasons.iter().enumerate() {
            for _ in 0..=i {
                s.record(t0, ip(2), r);
            }
        }
        let summary = drain(&mut s, t0 + Duration::from_secs(10)).remove(0);
        assert_eq!(summary.total, 21);
        assert_eq!(
            summary.reasons,
            vec![("a", 1), ("b", 2), ("c", 3), ("d", 4 + 5 + 6)],
            "past four reasons, the rest count under the last one kept"
        );
    }

    #[test]
    fn the_table_is_bounded_and_the_rest_share_one_bucket() {
        let t0 = Instant::now();
        let mut s = LogSampler::new(Duration::from_secs(10), 1, 4);
        let mut logged = 0;
        for host in 0..=255u8 {
            for _ in 0..3 {
                logged += usize::from(s.record(t0, ip(host), "not SIP"));
            }
        }
        assert_eq!(s.tracked_sources(), 4);
        assert_eq!(
            logged,
            4 + 1,
            "one line per tracked source, one for the others"
        );
        let summaries = drain(&mut s, t0 + Duration::from_secs(10));
        assert_eq!(summaries.len(), 5);
        let others = summaries.iter().find(|s| s.source.is_none()).unwrap();
        assert_eq!(others.total, 252 * 3);
        assert_eq!(s.tracked_sources(), 0);
    }

    #[test]
    fn a_flood_from_many_sources_gives_its_memory_back() {
        let t0 = Instant::now();
        let mut s = LogSampler::default();
        for i in 0..1024u32 {
            s.record(t0, IpAddr::from(i.to_be_bytes()), "not SIP");
        }
        let grown = s.sources.capacity();
        drain(&mut s, t0 + Duration::from_secs(10));
        s.record(t0 + Duration::from_secs(10), ip(2), "not SIP");
        assert!(
            s.sources.capacity() < grown / 4,
            "{} of {grown}",
            s.sources.capacity()
        );
    }
}
