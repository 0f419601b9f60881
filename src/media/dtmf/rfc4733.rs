//! RFC 4733 telephone-event receiver: RTP event payloads in, each key press out once.
//!
//! # Rules (and why)
//! - **Identity of an event is its start timestamp** (§2.5.1.1: every packet of one event,
//!   including the three redundant end packets of §2.5.1.4 and any retransmission, carries the
//!   timestamp of the event's start). So we remember recent start timestamps and report a digit
//!   only for a timestamp we have not seen.
//! - **Report on the first packet seen**, not on the end: barge-in needs the key as soon as it is
//!   pressed, and the end packets are exactly the ones that get lost. An event whose first packets
//!   were lost (the first one we see has no marker, or is already an end packet) is still reported.
//! - **The marker bit is a hint, not a requirement.** A new timestamp is a new event even without
//!   the marker (the first packet may be lost, and some senders never set it). The only place the
//!   marker matters is the long-event rule below.
//! - **Lost end packets do not block the next event:** a new timestamp starts a new event whether
//!   or not the previous one ended.
//! - **Same press, new timestamp.** A new timestamp is taken as the *continuation* of the newest
//!   event, and not reported, only if it has the same event code, no marker, the newest event is
//!   still open (no E bit, packets within the last second), and either
//!   - it starts inside the time that event has already covered (1..=its duration ticks after
//!     its start): a new press cannot begin while the previous key is still reported down.
//!     This absorbs senders that wrongly advance the timestamp on every packet of one event; or
//!   - it is the next segment of a long event (§2.5.1.3): the duration field is 16 bits
//!     (8.19 s at 8 kHz), so a longer press is sent as segments, each with a new timestamp (the
//!     old one plus the old duration), no marker, and no E bit until the very end. Rule: the
//!     newest event has lasted ≥ 0x8000 ticks (4.1 s; half the maximum allows for lost packets)
//!     and the new timestamp is at most 0xFFFF + 1600 ticks after its start.
//!
//!   Wrong only when a human holds a key for over 4 s, releases it, and presses it again within
//!   about 4 s with the end packets *and* the next marker packet all lost.
//! - **Several events in one packet (§2.5.1.5):** block *n* starts at the packet timestamp plus the
//!   durations of blocks 0..n. Each block is handled as its own event; if more than one is new,
//!   the first is returned and the others wait in [`TelephoneEventReceiver::poll_digit`].
//! - **Late packets.** A packet whose start timestamp is older (serial arithmetic, within 4 s of
//!   timestamp) than the newest event seen, and which we do not remember, is dropped: reporting it
//!   now would put digits out of order. A timestamp further away than that is a jump (stream
//!   restart) and starts a new event.
//! - **Garbage:** payloads shorter than 4 bytes, trailing bytes after the last whole block, and
//!   event codes above 15 (not DTMF: flash, modem tones, ...) are ignored. Timestamps wrap; every
//!   comparison is done with wrapping arithmetic.
//! - **Time:** an event without an end packet is closed after 1 s without telephone-event packets
//!   (only affects the long-event rule); all memory is forgotten after 5 s without packets, so a
//!   restarted stream is never mistaken for late packets. Until then a retransmission of a known
//!   event is still recognised, even after it was closed.
//!
//! Cost: O(8) per 4-byte block, no allocation after `new`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::media::types::Digit;

/// An event with no packet for this long is considered finished (its end packets were lost).
const END_TIMEOUT: Duration = Duration::from_secs(1);
/// After this long without telephone-event packets all memory is dropped.
const FORGET_AFTER: Duration = Duration::from_secs(5);
/// How many distinct events (start timestamps) we remember for de-duplication.
const HISTORY: usize = 8;
/// A packet up to this many ticks (4 s at 8 kHz) older than the newest event is "late".
const STALE_WINDOW: u32 = 8_000 * 4;
/// A previous segment must have lasted this long before a new timestamp may continue it.
const SEGMENT_MIN_DURATION: u16 = 0x8000;
/// Largest timestamp step from one segment to the next (0xFFFF plus 200 ms of sender slop).
const SEGMENT_MAX_STEP: u32 = 0xFFFF + 1_600;
/// Digits waiting to be polled; beyond this (only malformed multi-event packets) they are dropped.
const MAX_QUEUED: usize = 16;

#[derive(Clone, Copy, Debug)]
struct Event {
    /// RTP timestamp of the event's (or segment's) start: its identity.
    start: u32,
    code: u8,
    /// Neither an end packet nor `END_TIMEOUT` of silence has been seen.
    open: bool,
    /// Largest duration reported for it, in timestamp ticks.
    duration: u16,
}

/// Receives RTP packets of the negotiated telephone-event payload type and reports each DTMF key
/// press once. See the module documentation for the exact rules.
#[derive(Debug)]
pub struct TelephoneEventReceiver {
    /// Recently seen events, oldest first; the back is the newest by timestamp.
    events: VecDeque<Event>,
    /// When the last telephone-event packet arrived (any payload).
    last_packet_at: Option<Instant>,
    /// Digits found but not yet handed out.
    queue: VecDeque<Digit>,
}

impl Default for TelephoneEventReceiver {
    fn default() -> Self {
        Self::new()
    }
}

impl TelephoneEventReceiver {
    pub fn new() -> Self {
        TelephoneEventReceiver {
            events: VecDeque::with_capacity(HISTORY),
            last_packet_at: None,
            queue: VecDeque::with_capacity(MAX_QUEUED),
        }
    }

    /// One RTP packet whose payload type is the negotiated telephone-event PT.
    ///
    /// `payload` is the RTP payload (4-byte event block(s), RFC 4733 §2.3). Returns a digit the
    /// first time an event is seen (on its first packet, for fast barge-in), never again for the
    /// same event. If one packet carries several new events, the first is returned and the rest
    /// wait in [`poll_digit`](Self::poll_digit). Never panics.
    pub fn handle_packet(
        &mut self,
        now: Instant,
        marker: bool,
        timestamp: u32,
        payload: &[u8],
    ) -> Option<Digit> {
        self.handle_timeout(now);
        self.last_packet_at = Some(now);
        let mut offset: u32 = 0;
        for (index, block) in payload.chunks_exact(4).enumerate() {
            let code = block[0];
            let end = block[1] & 0x80 != 0;
            let duration = u16::from_be_bytes([block[2], block[3]]);
            let start = timestamp.wrapping_add(offset);
            offset = offset.wrapping_add(u32::from(duration));
            // Event codes above 15 are not DTMF (RFC 4733 §3.2 covers 0-15 only).
            let Some(digit) = Digit::from_event(code) else {
                continue;
            };
            // The marker belongs to the packet, i.e. to its first block only.
            if self.observe(start, code, end, duration, marker && index == 0)
                && self.queue.len() < MAX_QUEUED
            {
                self.queue.push_back(digit);
            }
        }
        self.queue.pop_front()
    }

    /// A digit that `handle_packet` found but could not return (several new events in one packet).
    pub fn poll_digit(&mut self) -> Option<Digit> {
        self.queue.pop_front()
    }

    /// Lets state expire: an event whose end never came is closed after 1 s without packets, and
    /// everything is forgotten after 5 s without packets.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(last) = self.last_packet_at else {
            return;
        };
        let idle = now.saturating_duration_since(last);
        if idle >= FORGET_AFTER {
            self.events.clear();
            self.last_packet_at = None;
        } else if idle >= END_TIMEOUT {
            for event in &mut self.events {
                event.open = false;
            }
        }
    }

    /// The next instant at which [`handle_timeout`](Self::handle_timeout) has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let last = self.last_packet_at?;
        if self.events.iter().any(|e| e.open) {
            last.checked_add(END_TIMEOUT)
        } else if self.events.is_empty() {
            None
        } else {
            last.checked_add(FORGET_AFTER)
        }
    }

    /// Forget every event (new SSRC, re-INVITE). Digits already found stay in `poll_digit`.
    pub fn reset(&mut self) {
        self.events.clear();
        self.last_packet_at = None;
    }

    /// Records one event block; true if it is a key press not reported before.
    fn observe(&mut self, start: u32, code: u8, end: bool, duration: u16, marker: bool) -> bool {
        if let Some(known) = self.events.iter_mut().find(|e| e.start == start) {
            if known.code == code {
                // Continuation, end packet, redundant end packet or retransmission.
                known.duration = known.duration.max(duration);
                if end {
                    known.open = false;
                }
                return false;
            }
            // Same timestamp, different key: a sender that does not advance its timestamp between
            // events. A different key is certainly a different press; report it.
            *known = Event {
                start,
                code,
                open: !end,
                duration,
            };
            return true;
        }

        let mut continuation = false;
        if let Some(newest) = self.events.back() {
            let behind = newest.start.wrapping_sub(start);
            if behind != 0 && behind < STALE_WINDOW {
                // Late packet of an event we no longer (or never) tracked.
                return false;
            }
            let ahead = start.wrapping_sub(newest.start);
            let inside = ahead <= u32::from(newest.duration);
            let next_segment = newest.duration >= SEGMENT_MIN_DURATION && ahead <= SEGMENT_MAX_STEP;
            continuation = !marker
                && newest.open
                && newest.code == code
                && ahead > 0
                && (inside || next_segment);
        }

        if self.events.len() == HISTORY {
            self.events.pop_front();
        }
        self.events.push_back(Event {
            start,
            code,
            open: !end,
            duration,
        });
        !continuation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One RFC 4733 event block.
    fn block(code: u8, end: bool, duration: u16) -> [u8; 4] {
        let d = duration.to_be_bytes();
        [code, if end { 0x80 | 10 } else { 10 }, d[0], d[1]]
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Sends a whole well-formed event as a phone does: first packet with marker, one packet per
    /// 20 ms while the key is down, three end packets. Returns every digit reported.
    fn send_event(
        rx: &mut TelephoneEventReceiver,
        t0: Instant,
        ts: u32,
        code: u8,
        packets: u16,
    ) -> Vec<Digit> {
        let mut out = Vec::new();
        for i in 0..packets {
            let b = block(code, false, (i + 1) * 160);
            out.extend(rx.handle_packet(t0 + ms(20 * u64::from(i)), i == 0, ts, &b));
        }
        let b = block(code, true, (packets + 1) * 160);
        for k in 0..3u64 {
            let at = t0 + ms(20 * u64::from(packets) + k);
            out.extend(rx.handle_packet(at, false, ts, &b));
        }
        while let Some(d) = rx.poll_digit() {
            out.push(d);
        }
        out
    }

    #[test]
    fn first_packet_reports_digit_immediately() {
        let mut rx = TelephoneEventReceiver::new();
        let t0 = Instant::now();
        assert_eq!(
            rx.handle_packet(t0, true, 1000, &block(5, false, 160)),
            Some(Digit::D5)
        );
    }

    #[test]
    fn duplicate_end_packets_report_digit_once() {
        let mut rx = TelephoneEventReceiver::new();
        let t0 = Instant::now();
        assert_eq!(send_event(&mut rx, t0, 1000, 7, 5), vec![Digit::D7]);
        // A late retransmission of the end packet changes nothing either.
        let again = rx.handle_packet(t0 + ms(300), false, 1000, &block(7, true, 960));
        assert_eq!(again, None);
    }

    #[test]
    fn all_16_events_map_to_their_digits() {
        let mut rx = TelephoneEventReceiver::new();
        let t0 = Instant::now();
        let mut got = Vec::new();
        for code in 0..16u8 {
            let ts = 10_000 + u32::from(code) * 2_000;
            got.extend(send_event(
                &mut rx,
                t0 + ms(200 * u64::from(code)),
                ts,
                code,
                3,
            ));
        }
        assert_eq!(got, Digit::ALL.to_vec());
    }

    #[test]
    fn same_digit_pressed_twice_is_reported_twice() {
        let mut rx = TelephoneEventReceiver::new();
        let t0 = Instant::now();
        let mut got = send_event(&mut rx, t0, 1000, 1, 4);
        got.extend(send_event(&mut rx, t0 + ms(200), 1000 + 1600, 1, 4));
        assert_eq!(got, vec![Digit::D1, Digit::D1]);
    }

    #[test]
    fn missing_marker_starts_new_event() {
        let mut rx = TelephoneEventReceiver::new();
        let t0 = Instant::now();
        // A sender that never sets the marker bit.
        assert_eq!(
            rx.handle_packet(t0, false, 500, &block(3, false, 160)),
            Some(Digit::D3)
        );
        assert_eq!(
            rx.handle_packet(t0 + ms(20), false, 500, &block(3, true, 320)),
            None
        );
        assert_eq!(
            rx.handle_packet(t0 + ms(200), false, 2100, &block(3, false, 160)),
            Some(Digit::D3)
        );
        assert_eq!(
            rx.handle_packet(t0 + ms(400), false, 3700, &block(9, false, 160)),
            Some(Digit::D9)
        );
    }

    #[test]
    fn lost_end_packets_next_digit_still_reported() {
        let mut rx = TelephoneEventReceiver::new();
        let t0 = Instant::now();
        assert_eq!(
            rx.handle_packet(t0, true, 0, &block(4, false, 160)),
            Some(Digit::D4)
        );
        assert_eq!(
            rx.handle_packet(t0 + ms(20), false, 0, &block(4, false, 320)),
            None
        );
        // End packets lost; the next key (a different one) arrives.
        assert_eq!(
            rx.handle_packet(t0 + ms(150), true, 1200, &block(8, false, 160)),
            Some(Digit::D8)
        );
        // End packets lost again; the same key again, with its marker.
        assert_eq!(
            rx.handle_packet(t0 + ms(300), true, 2400, &block(8, false, 160)),
            Some(Digit::D8)
        );
        // And the same key again with the first packet (the marker) lost as well: a short previous
        // press cannot be a long-event segment, so this is a new press.
        assert_eq!(
            rx.handle_packet(t0 + ms(460), false, 3600, &block(8, false, 320)),
            Some(Digit::D8)
        );
    }

    #[test]
    fn lost_first_packets_still_reported_once() {
        let mut rx = TelephoneEventReceiver::new();
        let t0 = Instant::now();
        // Marker packet lost: first packet seen is mid-event.
        assert_eq!(
            rx.handle_packet(t0, false, 800, &block(11, false, 480)),
            Some(Digit::Pound)
        );
        assert_eq!(
            rx.handle_packet(t0 + ms(20), false, 800, &block(11, false, 640)),
            None
        );
        // Only the end packets of the next event arrive.
        assert_eq!(
            rx.handle_packet(t0 + ms(300), false, 3000, &block(10, true, 800)),
            Some(Digit::Star)
        );
        assert_eq!(
            rx.handle_packet(t0 + ms(301), false, 3000, &block(10, true, 800)),
            None
        );
    }

    #[test]
    fn long_event_segments_reported_once() {
        let mut rx = TelephoneEventReceiver::new();
        let t0 = Instant::now();
        let ts0: u32 = u32::MAX - 100_000; // the segments also cross the timestamp wrap
        assert_eq!(
            rx.handle_packet(t0, true, ts0, &block(2, false, 160)),
            Some(Digit::D2)
        );
        let mut now = t0;
        let mut got = Vec::new();
        let mut ts = ts0;
        for segment in 0..3u32 {
            // Packets every 50 ms up to the maximum duration.
            let mut d: u32 = 400;
            while d < 0xFFFF {
                now += ms(50);
                got.extend(rx.handle_packet(now, false, ts, &block(2, false, d as u16)));
                d += 400;
            }
            now += ms(50);
            got.extend(rx.handle_packet(now, false, ts, &block(2, false, 0xFFFF)));
            // Next segment: new timestamp, no marker, no E bit.
            ts = ts.wrapping_add(0xFFFF);
            now += ms(20);
            got.extend(rx.handle_packet(now, false, ts, &block(2, segment == 2, 160)));
        }
        assert!(ts < ts0, "test must cross the wrap");
        assert_eq!(got, vec![]);
        // A real new press of the same key afterwards is reported.
        now += ms(200);
        assert_eq!(
            rx.handle_packet(now, true, ts.wrapping_add(4_000), &block(2, false, 160)),
            Some(Digit::D2)
        );
    }

    #[test]
    fn timestamp_advancing_within_one_event_is_not_a_new_press() {
        // A broken sender that advances the RTP timestamp on every packet of one key press.
        let mut rx = TelephoneEventReceiver::new();
        let t0 = Instant::now();
        let mut got = Vec::new();
        for k in 0..8u16 {
            let ts = 40_000 + u32::from(k) * 160;
            got.extend(rx.handle_packet(
                t0 + ms(20 * u64::from(k)),
                k == 0,
                ts,
                &block(5, k == 7, (k + 1) * 160),
            ));
        }
        // Same broken sender, duration stuck at one packet.
        for k in 0..8u16 {
            let ts = 60_000 + u32::from(k) * 160;
            got.extend(rx.handle_packet(
                t0 + ms(400 + 20 * u64::from(k)),
                k == 0,
                ts,
                &block(5, k == 7, 160),
            ));
        }
        assert_eq!(got, vec![Digit::D5, Digit::D5]);
    }

    #[test]
    fn segment_with_marker_is_a_new_press() {
        let mut rx = TelephoneEventReceiver::new();
        let t0 = Instant::now();
        assert!(
            rx.handle_packet(t0, true, 0, &block(6, false, 0xF000))
                .is_some()
        );
        // Same key, new timestamp, but the marker says "new event".
        assert_eq!(
            rx.handle_packet(t0 + ms(20), true, 0xF000 + 800, &block(6, false, 160)),
            Some(Digit::D6)
        );
    }

    #[test]
    fn segment_after_timeout_is_a_new_press() {
        let mut rx = TelephoneEventReceiver::new();
        let t0 = Instant::now();
        assert!(
            rx.handle_packet(t0, true, 0, &block(6, false, 0xFFFF))
                .is_some()
        );
        let later = t0 + ms(1_500);
        rx.handle_timeout(later);
        assert_eq!(
            rx.handle_packet(later, false, 0xFFFF, &block(6, false, 160)),
            Some(Digit::D6)
        );
    }

    #[test]
    fn new_events_across_timestamp_wrap_are_reported() {
        let mut rx = TelephoneEventReceiver::new();
        let t0 = Instant::now();
        let mut got = send_event(&mut rx, t0, u32::MAX - 100, 1, 3);
        got.extend(send_event(&mut rx, t0 + ms(200), 1_500, 2, 3));
        got.extend(send_event(&mut rx, t0 + ms(400), 3_100, 3, 3));
        assert_eq!(got, vec![Digit::D1, Digit::D2, Digit::D3]);
    }

    #[test]
    fn late_packet_of_old_event_is_not_reported() {
        let mut rx = TelephoneEventReceiver::new();
        let t0 = Instant::now();
        assert!(
            rx.handle_packet(t0, true, 10_000, &block(1, false, 160))
                .is_some()
        );
        assert!(
            rx.handle_packet(t0 + ms(100), true, 11_000, &block(2, false, 160))
                .is_some()
        );
        // Reordered end packet of the first event.
        assert_eq!(
            rx.handle_packet(t0 + ms(101), false, 10_000, &block(1, true, 480)),
            None
        );
        // A packet of an older event never seen: dropped, not reported out of order.
        assert_eq!(
            rx.handle_packet(t0 + ms(102), false, 9_000, &block(5, false, 160)),
            None
        );
        // After eight newer events the first one is evicted; its late packets stay unreported.
        let mut now = t0 + ms(200);
        for k in 0..8u32 {
            now += ms(100);
            assert!(
                rx.handle_packet(now, true, 12_000 + k * 1_000, &block(0, false, 160))
                    .is_some()
            );
        }
        assert_eq!(
            rx.handle_packet(now, false, 10_000, &block(1, true, 480)),
            None
        );
    }

    #[test]
    fn timestamp_jump_backwards_beyond_window_is_a_new_event() {
        let mut rx = TelephoneEventReceiver::new();
        let t0 = Instant::now();
        assert!(
            rx.handle_packet(t0, true, 3_000_000, &block(1, false, 160))
                .is_some()
        );
        // The sender restarted its timestamps far below the old ones.
        assert_eq!(
            rx.handle_packet(t0 + ms(200), true, 1_000, &block(4, false, 160)),
            Some(Digit::D4)
        );
    }

    #[test]
    fn late_packet_from_before_a_timestamp_jump_is_not_reported_again() {
        let mut rx = TelephoneEventReceiver::new();
        let t0 = Instant::now();
        assert!(
            rx.handle_packet(t0, true, 3_000_000, &block(1, false, 160))
                .is_some()
        );
        assert!(
            rx.handle_packet(t0 + ms(100), true, 1_000, &block(4, false, 160))
                .is_some()
        );
        // The first event's delayed end packet: seen from the new timestamps it looks far
        // ahead, i.e. new, but it is remembered.
        assert_eq!(
            rx.handle_packet(t0 + ms(101), false, 3_000_000, &block(1, true, 800)),
            None
        );
    }

    #[test]
    fn same_timestamp_different_key_is_a_new_press() {
        let mut rx = TelephoneEventReceiver::new();
        let t0 = Instant::now();
        assert!(
            rx.handle_packet(t0, true, 77, &block(1, true, 800))
                .is_some()
        );
        assert_eq!(
            rx.handle_packet(t0 + ms(200), true, 77, &block(2, false, 160)),
            Some(Digit::D2)
        );
        assert_eq!(
            rx.handle_packet(t0 + ms(220), false, 77, &block(2, true, 320)),
            None
        );
    }

    #[test]
    fn multiple_events_in_one_packet_all_reported_in_order() {
        let mut rx = TelephoneEventReceiver::new();
        let t0 = Instant::now();
        let mut payload = Vec::new();
        payload.extend_from_slice(&block(1, true, 800));
        payload.extend_from_slice(&block(2, true, 800));
        payload.extend_from_slice(&block(3, false, 400));
        assert_eq!(rx.handle_packet(t0, true, 5_000, &payload), Some(Digit::D1));
        assert_eq!(rx.poll_digit(), Some(Digit::D2));
        assert_eq!(rx.poll_digit(), Some(Digit::D3));
        assert_eq!(rx.poll_digit(), None);
        // The third event continues in its own packets, timestamped at its own start.
        assert_eq!(
            rx.handle_packet(t0 + ms(20), false, 5_000 + 1_600, &block(3, false, 560)),
            None
        );
        // Retransmitting the packed packet reports nothing.
        assert_eq!(rx.handle_packet(t0 + ms(40), false, 5_000, &payload), None);
        assert_eq!(rx.poll_digit(), None);
    }

    #[test]
    fn garbage_is_ignored() {
        let mut rx = TelephoneEventReceiver::new();
        let t0 = Instant::now();
        assert_eq!(rx.handle_packet(t0, true, 1, &[]), None);
        assert_eq!(rx.handle_packet(t0, true, 2, &[5]), None);
        assert_eq!(rx.handle_packet(t0, true, 3, &[5, 0, 1]), None);
        // Event 16 (flash) and 32+ (modem tones) are not digits.
        assert_eq!(rx.handle_packet(t0, true, 4, &block(16, false, 160)), None);
        assert_eq!(rx.handle_packet(t0, true, 5, &block(255, true, 160)), None);
        // A whole block followed by stray bytes (e.g. unstripped padding): the block counts.
        let mut b = block(9, false, 160).to_vec();
        b.extend_from_slice(&[0, 0, 3]);
        assert_eq!(rx.handle_packet(t0, true, 6_000, &b), Some(Digit::D9));
    }

    #[test]
    fn never_panics_on_random_input() {
        let mut rx = TelephoneEventReceiver::new();
        let t0 = Instant::now();
        let mut state: u64 = 0x1234_5678;
        let mut next = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as u32
        };
        let mut reported = 0;
        for i in 0..20_000u64 {
            let len = (next() % 24) as usize;
            let payload: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let now = t0 + ms(i * (u64::from(next() % 3)));
            let marker = next() % 2 == 0;
            let ts = next();
            if rx.handle_packet(now, marker, ts, &payload).is_some() {
                reported += 1;
            }
            while rx.poll_digit().is_some() {}
            rx.handle_timeout(now);
            let _ = rx.poll_timeout();
        }
        // Random timestamps are all "new", so plenty of digits; mostly this is about not panicking.
        assert!(reported > 1_000, "reported {reported}");
    }

    #[test]
    fn poll_timeout_follows_open_and_closed_events() {
        let mut rx = TelephoneEventReceiver::new();
        let t0 = Instant::now();
        assert_eq!(rx.poll_timeout(), None);
        rx.handle_packet(t0, true, 100, &block(5, false, 160));
        assert_eq!(rx.poll_timeout(), Some(t0 + END_TIMEOUT));
        rx.handle_timeout(t0 + ms(999));
        assert_eq!(rx.poll_timeout(), Some(t0 + END_TIMEOUT));
        rx.handle_timeout(t0 + END_TIMEOUT);
        assert_eq!(rx.poll_timeout(), Some(t0 + FORGET_AFTER));
        rx.handle_timeout(t0 + FORGET_AFTER);
        assert_eq!(rx.poll_timeout(), None);
        // An ended event has no end timeout to wait for.
        let t1 = t0 + ms(10_000);
        rx.handle_packet(t1, true, 9_000, &block(5, true, 160));
        assert_eq!(rx.poll_timeout(), Some(t1 + FORGET_AFTER));
    }

    #[test]
    fn retransmission_after_end_timeout_is_not_a_new_press() {
        let mut rx = TelephoneEventReceiver::new();
        let t0 = Instant::now();
        assert!(
            rx.handle_packet(t0, true, 100, &block(5, false, 160))
                .is_some()
        );
        // A 1.5 s network outage while the key is held: the same event resumes.
        let later = t0 + ms(1_500);
        rx.handle_timeout(later);
        assert_eq!(
            rx.handle_packet(later, false, 100, &block(5, false, 12_000)),
            None
        );
    }

    #[test]
    fn everything_is_forgotten_after_silence_or_reset() {
        let mut rx = TelephoneEventReceiver::new();
        let t0 = Instant::now();
        assert!(
            rx.handle_packet(t0, true, 100_000, &block(5, true, 800))
                .is_some()
        );
        // After 5 s of silence an older timestamp (restarted stream) is a new event, not late.
        let later = t0 + FORGET_AFTER;
        assert_eq!(
            rx.handle_packet(later, true, 99_000, &block(6, false, 160)),
            Some(Digit::D6)
        );
        rx.reset();
        assert_eq!(
            rx.handle_packet(later + ms(20), true, 98_000, &block(6, false, 160)),
            Some(Digit::D6)
        );
        // Without reset the same thing would have been a late packet.
        assert_eq!(
            rx.handle_packet(later + ms(40), true, 97_000, &block(7, false, 160)),
            None
        );
    }
}
