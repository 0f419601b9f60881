//! Paced prompt player: one per call leg, one RTP packet per 20 ms slot, no gaps.
//!
//! - Owns: the outgoing RTP stream state of one leg (SSRC, sequence, timestamp, the
//!   absolute 20 ms schedule) and the play list (prompt ids, position in it).
//! - Takes: `now` from the caller, play/stop commands, the shared [`PromptSet`].
//! - Gives: at most one RTP packet per `poll_transmit` into the caller's buffer, the next
//!   deadline, and [`PlayerEvent::Finished`] when a play list has been sent to the end.
//! - Never: reads the clock, touches a socket, allocates per packet, copies prompt audio,
//!   or schedules from "last send + 20 ms" (deadlines are `start + n × 20 ms`, so no drift).
//!
//! # Stream rules
//! - Packet `n` is due at `start + n × 20 ms`; it carries timestamp `ts0 + n × 160` (until a
//!   skip, see below) and sequence `seq0 + sent`, both wrapping.
//! - When nothing plays, encoded silence is sent ("comfort silence"), so the stream has no
//!   gaps: NAT bindings stay open and the far jitter buffer keeps its clock.
//! - The marker bit is set on the first packet of the stream, on the first packet of every
//!   [`Player::play`] run (also when it replaces a run that was still playing), after a
//!   skip, and after [`Player::mark_next`]. Prompts queued back to back in one run are one
//!   talkspurt (no marker between them).
//!
//! # Late sweeps
//! If the caller polls late (host stall), the decision is made per packet on how late the
//! oldest unsent packet is:
//! - late by at most [`MAX_CATCH_UP`] (60 ms, three packets): every missed packet is still
//!   produced, one per `poll_transmit` call, so a caller that drains `poll_transmit` in a
//!   loop sends them back to back. Jitter buffers absorb this; nothing is lost.
//! - later than that: the missed slots are skipped. The next packet is the newest slot due,
//!   its timestamp advanced by the skipped samples (so timestamps keep tracking real time),
//!   its sequence number only +1 (nothing was lost on the wire), with the marker bit set so
//!   the receiver re-syncs its playout. The prompt is paused, not cut: it resumes at the
//!   frame that was next, so the caller hears every word. The schedule stays on the
//!   original 20 ms grid.
//!
//! # Looping (hold music)
//! [`Player::play_looped`] plays its list back to back and then starts over at the first
//! frame of the first prompt in the very next slot: no silence frame, no marker bit, no
//! `Finished` between rounds (one endless talkspurt), until `play`/`play_looped`/`stop`
//! replaces it. Re-issuing `play` on `Finished` is *not* equivalent: `play` sets the marker
//! bit, and unless the owner reacts before the next slot is polled a silence frame goes out
//! in between. A looped list without a single frame (unknown ids, empty prompts) finishes at
//! once like an empty `play`, instead of spinning.
//!
//! # Idling (bridged calls)
//! While another source owns the outgoing stream (a bridged call relays the other leg's
//! packets, see [`crate::media::relay`]), [`Player::idle`] keeps the schedule and the
//! timestamp on real time without producing packets, using sequence numbers or moving the
//! play list; [`Player::resume`] then takes the stream back with the sequence number the
//! other source reached, a timestamp no earlier than where it ended, and the marker bit.

use std::time::{Duration, Instant};

use crate::media::prompt::PromptSet;
use crate::media::rtp;
use crate::media::types::{Codec, PTIME_MS, PromptId, SAMPLES_PER_FRAME};

/// Lateness up to which missed packets are still sent (catch-up); beyond it they are skipped.
pub const MAX_CATCH_UP: Duration = Duration::from_millis(60);

const PTIME: Duration = Duration::from_millis(PTIME_MS);
static SILENCE_PCMU: [u8; SAMPLES_PER_FRAME] = [0xFF; SAMPLES_PER_FRAME];
static SILENCE_PCMA: [u8; SAMPLES_PER_FRAME] = [0xD5; SAMPLES_PER_FRAME];

fn silence_frame(codec: Codec) -> &'static [u8] {
    match codec {
        Codec::Pcmu => &SILENCE_PCMU,
        Codec::Pcma => &SILENCE_PCMA,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlayerEvent {
    /// The prompts of the current play list were all sent to the end.
    Finished,
}

#[derive(Debug)]
pub struct Player {
    codec: Codec,
    ssrc: u32,
    /// Sequence number of the next packet.
    sequence: u16,
    /// RTP timestamp of the next packet.
    timestamp: u32,
    /// Time of slot 0.
    start: Instant,
    /// Slot of the next packet: it is due at `start + slot × 20 ms`.
    slot: u64,
    queue: Vec<PromptId>,
    /// Index in `queue` of the prompt playing now.
    current: usize,
    /// Next frame of `queue[current]`.
    frame: usize,
    playing: bool,
    /// `queue` starts over when it ends ([`Player::play_looped`]).
    looped: bool,
    marker_next: bool,
    finished: bool,
    sent: u64,
    skipped: u64,
    discarded: u64,
}

impl Player {
    /// A silent stream whose first packet is due at `now`.
    pub fn new(
        now: Instant,
        codec: Codec,
        ssrc: u32,
        initial_sequence: u16,
        initial_timestamp: u32,
    ) -> Self {
        Player {
            codec,
            ssrc,
            sequence: initial_sequence,
            timestamp: initial_timestamp,
            start: now,
            slot: 0,
            queue: Vec::new(),
            current: 0,
            frame: 0,
            playing: false,
            looped: false,
            marker_next: true,
            finished: false,
            sent: 0,
            skipped: 0,
            discarded: 0,
        }
    }

    // ---- getters ----

    pub fn is_playing(&self) -> bool {
        self.playing
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Sequence number the next packet will carry.
    pub fn next_sequence(&self) -> u16 {
        self.sequence
    }

    /// RTP timestamp the next packet will carry (unless a skip advances it).
    pub fn next_timestamp(&self) -> u32 {
        self.timestamp
    }

    /// Packets written so far.
    pub fn packets_sent(&self) -> u64 {
        self.sent
    }

    /// Slots consumed by [`Player::poll_discard`].
    pub fn packets_discarded(&self) -> u64 {
        self.discarded
    }

    /// Slots skipped because the caller polled more than [`MAX_CATCH_UP`] late.
    pub fn packets_skipped(&self) -> u64 {
        self.skipped
    }

    // ---- mutators ----

    /// Replaces whatever plays (or is queued) with `prompts`, played back to back from the
    /// next packet on. Ids unknown to the `PromptSet` and empty prompts are skipped. An
    /// empty list reports `Finished` at once. A `Finished` not yet polled for the replaced
    /// run is dropped: events always refer to the current run.
    pub fn play(&mut self, prompts: &[PromptId]) {
        self.start_run(prompts, false);
    }

    /// Like [`Player::play`], but the list repeats gaplessly until replaced or stopped: no
    /// marker bit, silence frame or `Finished` between rounds (see "Looping" above). A list
    /// with no frames at all reports `Finished` at once.
    pub fn play_looped(&mut self, prompts: &[PromptId]) {
        self.start_run(prompts, true);
    }

    fn start_run(&mut self, prompts: &[PromptId], looped: bool) {
        self.looped = looped;
        self.queue.clear();
        self.queue.extend_from_slice(prompts);
        self.current = 0;
        self.frame = 0;
        self.playing = !prompts.is_empty();
        self.finished = prompts.is_empty();
        if self.playing {
            self.marker_next = true;
        }
    }

    /// Barge-in: the next packet is already silence, and no `Finished` is reported for the
    /// stopped run (one that was pending is dropped too).
    pub fn stop(&mut self) {
        self.looped = false;
        self.queue.clear();
        self.current = 0;
        self.frame = 0;
        self.playing = false;
        self.finished = false;
    }

    /// New law for the following packets (after a re-INVITE); the position is kept.
    pub fn set_codec(&mut self, codec: Codec) {
        self.codec = codec;
    }

    /// Sets the marker bit on the next packet (e.g. sending resumes after a hold).
    pub fn mark_next(&mut self) {
        self.marker_next = true;
    }

    /// Consumes every slot due at or before `until` without producing a packet: the
    /// timestamp advances 160 per slot (it keeps following real time), but no sequence
    /// number is used and the play list does not move (what plays waits, no `Finished`).
    /// The next packet carries the marker bit. Not counted as skipped or discarded: another
    /// source (the relay of a bridged call) is sending in these slots. Constant time however
    /// long the player idled.
    pub fn idle(&mut self, until: Instant) {
        let Some(late) = until.checked_duration_since(self.poll_timeout()) else {
            return;
        };
        let slots = u64::try_from(late.as_nanos() / PTIME.as_nanos())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        self.slot = self.slot.saturating_add(slots);
        // Modulo 2^32, like every RTP timestamp.
        self.timestamp = self
            .timestamp
            .wrapping_add(slots.wrapping_mul(SAMPLES_PER_FRAME as u64) as u32);
        self.marker_next = true;
    }

    /// Takes the stream back from another source that sent on this SSRC (see
    /// [`Player::idle`]): the next packet carries `next_sequence` (so the receiver sees the
    /// sequence continue), a timestamp no earlier than `min_timestamp` (compared modulo
    /// 2^32, RFC 3550 §5.1: timestamps must not run backwards where the other source
    /// stopped), and the marker bit. The 20 ms grid is kept.
    pub fn resume(&mut self, next_sequence: u16, min_timestamp: u32) {
        self.sequence = next_sequence;
        if ts_after(min_timestamp, self.timestamp) {
            self.timestamp = min_timestamp;
        }
        self.marker_next = true;
    }

    // ---- poll ----

    /// If a packet is due (`deadline <= now`), clears `out`, writes one RTP packet (header
    /// and 160-byte payload) into it and returns true. Call it in a loop until false.
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        prompts: &PromptSet,
        payload_type: u8,
        out: &mut Vec<u8>,
    ) -> bool {
        if !self.advance_to(now) {
            return false;
        }
        let payload = self.next_payload(prompts);
        out.clear();
        rtp::write(
            out,
            self.marker_next,
            payload_type,
            self.sequence,
            self.timestamp,
            self.ssrc,
            payload,
        );
        self.marker_next = false;
        self.sequence = self.sequence.wrapping_add(1);
        self.sent += 1;
        self.finish_slot(prompts);
        true
    }

    /// Like [`Player::poll_transmit`], but the due slot is consumed without producing a
    /// packet: the prompt advances, the timestamp advances by 160, events fire, but no
    /// sequence number is used (nothing goes on the wire, so the receiver sees no loss)
    /// and the next packet that is sent carries the marker bit. For hold (RFC 3264 §8.4)
    /// or while no destination is known.
    pub fn poll_discard(&mut self, now: Instant, prompts: &PromptSet) -> bool {
        if !self.advance_to(now) {
            return false;
        }
        let _ = self.next_payload(prompts);
        self.marker_next = true;
        self.discarded += 1;
        self.finish_slot(prompts);
        true
    }

    /// True if a slot is due at `now`; applies the late-sweep policy first.
    fn advance_to(&mut self, now: Instant) -> bool {
        let due = self.poll_timeout();
        if due > now {
            return false;
        }
        if now - due > MAX_CATCH_UP {
            let elapsed = now.saturating_duration_since(self.start);
            let newest = u64::try_from(elapsed.as_nanos() / PTIME.as_nanos()).unwrap_or(u64::MAX);
            let skip = newest.saturating_sub(self.slot);
            self.slot = newest;
            // Timestamps are modulo 2^32, so truncating the product is the right wrap.
            self.timestamp = self
                .timestamp
                .wrapping_add(skip.wrapping_mul(SAMPLES_PER_FRAME as u64) as u32);
            self.skipped += skip;
            self.marker_next = true;
        }
        true
    }

    fn finish_slot(&mut self, prompts: &PromptSet) {
        self.timestamp = self.timestamp.wrapping_add(SAMPLES_PER_FRAME as u32);
        self.slot += 1;
        // Report the end right after the last frame went out, not one packet later.
        self.settle(prompts);
    }

    pub fn poll_event(&mut self) -> Option<PlayerEvent> {
        if self.finished {
            self.finished = false;
            Some(PlayerEvent::Finished)
        } else {
            None
        }
    }

    /// When the next packet is due.
    pub fn poll_timeout(&self) -> Instant {
        self.start + Duration::from_millis(self.slot.saturating_mul(PTIME_MS))
    }

    // ---- internals ----

    /// The frame for the next packet: the current prompt frame, or silence.
    fn next_payload<'p>(&mut self, prompts: &'p PromptSet) -> &'p [u8] {
        self.settle(prompts);
        let frame = match self.queue.get(self.current) {
            Some(&id) if self.playing => prompts
                .get(id)
                .and_then(|p| p.frame(self.codec, self.frame)),
            _ => None,
        };
        match frame {
            Some(frame) => {
                self.frame += 1;
                frame
            }
            None => silence_frame(self.codec),
        }
    }

    /// Moves past prompts with no frames left (or unknown ids); ends the run at the end.
    fn settle(&mut self, prompts: &PromptSet) {
        while self.playing {
            let Some(&id) = self.queue.get(self.current) else {
                if self.looped && self.queue_has_frames(prompts) {
                    // Start over in this same slot: gapless, one talkspurt.
                    self.current = 0;
                    self.frame = 0;
                    continue;
                }
                self.looped = false;
                self.playing = false;
                self.finished = true;
                self.queue.clear();
                self.current = 0;
                self.frame = 0;
                return;
            };
            let frames = prompts.get(id).map_or(0, |p| p.frame_count());
            if self.frame < frames {
                return;
            }
            self.current += 1;
            self.frame = 0;
        }
    }

    fn queue_has_frames(&self, prompts: &PromptSet) -> bool {
        self.queue
            .iter()
            .any(|&id| prompts.get(id).is_some_and(|p| p.frame_count() > 0))
    }
}

/// True if RTP timestamp `a` is later than `b` (modulo 2^32, half the range ahead).
fn ts_after(a: u32, b: u32) -> bool {
    let d = a.wrapping_sub(b);
    d != 0 && d < 1 << 31
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::codec;

    const MS: Duration = Duration::from_millis(1);

    struct Sent {
        marker: bool,
        pt: u8,
        seq: u16,
        ts: u32,
        ssrc: u32,
        payload: Vec<u8>,
    }

    fn decode(buf: &[u8]) -> Sent {
        let p = rtp::parse(buf).unwrap();
        Sent {
            marker: p.marker,
            pt: p.payload_type,
            seq: p.sequence,
            ts: p.timestamp,
            ssrc: p.ssrc,
            payload: p.payload.to_vec(),
        }
    }

    /// Three prompts whose every frame is a distinct constant, so payloads identify frames.
    fn prompts() -> (PromptSet, PromptId, PromptId, PromptId) {
        let frames = |tag: i16, n: usize| -> Vec<i16> {
            (0..n)
                .flat_map(|f| [1000 * tag + 100 * f as i16; 160])
                .collect()
        };
        let set = PromptSet::from_prompts(vec![
            ("a".into(), frames(1, 3)),
            ("b".into(), frames(2, 2)),
            ("empty".into(), vec![]),
        ]);
        let (a, b, e) = (
            set.lookup("a").unwrap(),
            set.lookup("b").unwrap(),
            set.lookup("empty").unwrap(),
        );
        (set, a, b, e)
    }

    fn frame(set: &PromptSet, id: PromptId, i: usize, c: Codec) -> Vec<u8> {
        set.get(id).unwrap().frame(c, i).unwrap().to_vec()
    }

    fn silence(c: Codec) -> Vec<u8> {
        vec![codec::silence(c); 160]
    }

    /// Drains every due packet at `now`.
    fn drain(p: &mut Player, now: Instant, set: &PromptSet) -> Vec<Sent> {
        let mut out = Vec::new();
        let mut v = Vec::new();
        while p.poll_transmit(now, set, p.codec().payload_type(), &mut out) {
            v.push(decode(&out));
        }
        v
    }

    #[test]
    fn first_packet_is_due_at_start_with_marker_and_silence() {
        let t0 = Instant::now();
        let (set, ..) = prompts();
        let mut p = Player::new(t0, Codec::Pcmu, 0xABCD, 100, 5000);
        assert_eq!(p.poll_timeout(), t0);
        assert!(!p.is_playing());
        let sent = drain(&mut p, t0, &set);
        assert_eq!(sent.len(), 1);
        let s = &sent[0];
        assert!(s.marker);
        assert_eq!((s.pt, s.seq, s.ts, s.ssrc), (0, 100, 5000, 0xABCD));
        assert_eq!(s.payload, silence(Codec::Pcmu));
        assert_eq!(p.poll_timeout(), t0 + 20 * MS);
        // Not due yet: nothing written, buffer untouched.
        let mut out = vec![42];
        assert!(!p.poll_transmit(t0 + 19 * MS, &set, 0, &mut out));
        assert_eq!(out, [42]);
    }

    #[test]
    fn pacing_over_ten_minutes_has_no_drift() {
        let t0 = Instant::now();
        let (set, a, b, _) = prompts();
        let mut p = Player::new(t0, Codec::Pcma, 1, 65000, u32::MAX - 1000);
        let mut out = Vec::new();
        let mut last: Option<(u16, u32)> = None;
        let mut rng = 0x1234_5678u32;
        let total = 10 * 60 * 50; // 10 minutes of 20 ms packets
        let mut finished = 0;
        for n in 0..total {
            let deadline = p.poll_timeout();
            assert_eq!(
                deadline,
                t0 + Duration::from_millis(20 * n as u64),
                "packet {n}"
            );
            if !p.is_playing() {
                p.play(&[a, b]);
            }
            // The sweep wakes 0–9 ms after the deadline: jitter must not accumulate.
            rng = rng.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let now = deadline + Duration::from_micros(u64::from(rng >> 16) % 10_000);
            assert!(p.poll_transmit(now, &set, 8, &mut out));
            assert!(
                !p.poll_transmit(now, &set, 8, &mut out),
                "one packet per slot"
            );
            let s = decode(&out);
            assert_eq!(s.payload.len(), 160);
            if let Some((seq, ts)) = last {
                assert_eq!(s.seq, seq.wrapping_add(1));
                assert_eq!(s.ts, ts.wrapping_add(160));
            }
            last = Some((s.seq, s.ts));
            while p.poll_event().is_some() {
                finished += 1;
            }
        }
        assert_eq!(p.poll_timeout(), t0 + Duration::from_secs(600));
        assert_eq!(p.packets_sent(), total as u64);
        assert_eq!(p.packets_skipped(), 0);
        // 5 frames per run; one run starts whenever the previous one finished.
        assert_eq!(finished, total / 5);
        assert_eq!(
            last.unwrap().1,
            (u32::MAX - 1000).wrapping_add(160 * (total as u32 - 1))
        );
    }

    #[test]
    fn plays_back_to_back_then_silence_with_markers_per_run() {
        let t0 = Instant::now();
        let (set, a, b, e) = prompts();
        let c = Codec::Pcmu;
        let mut p = Player::new(t0, c, 7, 0, 0);
        let s0 = drain(&mut p, t0, &set); // stream start: silence with marker
        assert!(s0[0].marker);
        p.play(&[a, e, b]);
        assert!(p.is_playing());
        let mut got = Vec::new();
        for n in 1..=7u32 {
            got.extend(drain(&mut p, t0 + n * 20 * MS, &set));
        }
        let expect = [
            (true, frame(&set, a, 0, c)),
            (false, frame(&set, a, 1, c)),
            (false, frame(&set, a, 2, c)),
            (false, frame(&set, b, 0, c)), // empty prompt skipped, no marker between prompts
            (false, frame(&set, b, 1, c)),
            (false, silence(c)),
            (false, silence(c)),
        ];
        assert_eq!(got.len(), expect.len());
        for (i, (s, (m, payload))) in got.iter().zip(expect).enumerate() {
            assert_eq!(s.marker, m, "packet {i}");
            assert_eq!(s.payload, payload, "packet {i}");
        }
        // A second run after silence starts a new talkspurt.
        p.play(&[b]);
        let s = drain(&mut p, t0 + 160 * MS, &set);
        assert!(s[0].marker);
        assert_eq!(s[0].payload, frame(&set, b, 0, c));
        // Replacing a run mid-way also marks the new run.
        p.play(&[a]);
        let s = drain(&mut p, t0 + 180 * MS, &set);
        assert!(s[0].marker);
        assert_eq!(s[0].payload, frame(&set, a, 0, c));
    }

    #[test]
    fn finished_is_reported_once_right_after_the_last_frame() {
        let t0 = Instant::now();
        let (set, a, ..) = prompts();
        let mut p = Player::new(t0, Codec::Pcmu, 7, 0, 0);
        p.play(&[a]);
        for n in 0..2u32 {
            drain(&mut p, t0 + n * 20 * MS, &set);
            assert!(p.is_playing());
            assert_eq!(p.poll_event(), None);
        }
        drain(&mut p, t0 + 40 * MS, &set); // third and last frame
        assert!(!p.is_playing());
        assert_eq!(p.poll_event(), Some(PlayerEvent::Finished));
        assert_eq!(p.poll_event(), None);
        for n in 3..50u32 {
            drain(&mut p, t0 + n * 20 * MS, &set);
        }
        assert_eq!(p.poll_event(), None);
    }

    #[test]
    fn empty_list_or_unknown_ids_finish_without_hanging() {
        let t0 = Instant::now();
        let (set, _, _, e) = prompts();
        let mut p = Player::new(t0, Codec::Pcmu, 7, 0, 0);
        p.play(&[]);
        assert!(!p.is_playing());
        assert_eq!(p.poll_event(), Some(PlayerEvent::Finished));
        p.play(&[PromptId(999), e]);
        let s = drain(&mut p, t0, &set);
        assert_eq!(s[0].payload, silence(Codec::Pcmu));
        assert!(!p.is_playing());
        assert_eq!(p.poll_event(), Some(PlayerEvent::Finished));
    }

    #[test]
    fn barge_in_stops_within_one_packet_without_finished() {
        let t0 = Instant::now();
        let (set, a, ..) = prompts();
        let mut p = Player::new(t0, Codec::Pcma, 7, 0, 0);
        p.play(&[a]);
        let s = drain(&mut p, t0, &set);
        assert_eq!(s[0].payload, frame(&set, a, 0, Codec::Pcma));
        p.stop();
        assert!(!p.is_playing());
        let s = drain(&mut p, t0 + 20 * MS, &set);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].payload, silence(Codec::Pcma));
        assert!(!s[0].marker);
        assert_eq!(s[0].ts, 160, "the stream continues without a gap");
        for n in 2..10u32 {
            drain(&mut p, t0 + n * 20 * MS, &set);
        }
        assert_eq!(p.poll_event(), None);

        // A Finished still pending when stop() comes is dropped as well.
        p.play(&[a]);
        for n in 10..13u32 {
            drain(&mut p, t0 + n * 20 * MS, &set);
        }
        p.stop();
        assert_eq!(p.poll_event(), None);
    }

    #[test]
    fn late_by_up_to_60ms_sends_the_missed_packets_at_once() {
        let t0 = Instant::now();
        let (set, a, ..) = prompts();
        let mut p = Player::new(t0, Codec::Pcmu, 7, 10, 1000);
        drain(&mut p, t0, &set);
        p.play(&[a]);
        // Slots 1..=4 are due by 80 ms; slot 1 is 60 ms late: catch up, nothing skipped.
        let s = drain(&mut p, t0 + 80 * MS, &set);
        assert_eq!(s.len(), 4);
        for (i, x) in s.iter().enumerate() {
            assert_eq!(x.seq, 11 + i as u16);
            assert_eq!(x.ts, 1000 + 160 * (1 + i as u32));
            assert_eq!(x.marker, i == 0, "only the run start is marked");
        }
        assert_eq!(s[0].payload, frame(&set, a, 0, Codec::Pcmu));
        assert_eq!(s[2].payload, frame(&set, a, 2, Codec::Pcmu));
        assert_eq!(p.packets_skipped(), 0);
        assert_eq!(p.poll_timeout(), t0 + 100 * MS);
    }

    #[test]
    fn late_by_more_skips_ahead_keeping_timestamps_on_real_time() {
        let t0 = Instant::now();
        let (set, a, ..) = prompts();
        let c = Codec::Pcmu;
        let mut p = Player::new(t0, c, 7, 10, 1000);
        p.play(&[a]);
        drain(&mut p, t0, &set); // slot 0 = frame 0
        // Stall: next poll at 1 s + 5 ms. Slot 1 is 985 ms late; newest due slot is 50.
        let s = drain(&mut p, t0 + 1005 * MS, &set);
        assert_eq!(s.len(), 1);
        assert!(s[0].marker, "marker on resume");
        assert_eq!(
            s[0].seq, 11,
            "sequence continues: nothing was lost on the wire"
        );
        assert_eq!(s[0].ts, 1000 + 50 * 160, "timestamp tracks real time");
        assert_eq!(
            s[0].payload,
            frame(&set, a, 1, c),
            "the prompt resumes, nothing cut"
        );
        assert_eq!(p.packets_skipped(), 49);
        // Back on the original grid.
        assert_eq!(p.poll_timeout(), t0 + 1020 * MS);
        let s = drain(&mut p, t0 + 1020 * MS, &set);
        assert_eq!(
            (s[0].seq, s[0].ts, s[0].marker),
            (12, 1000 + 51 * 160, false)
        );
        assert_eq!(s[0].payload, frame(&set, a, 2, c));
        assert_eq!(p.poll_event(), Some(PlayerEvent::Finished));

        // Just over the limit (61 ms late) skips; the boundary (60 ms) catches up.
        let mut q = Player::new(t0, c, 7, 0, 0);
        drain(&mut q, t0, &set);
        let s = drain(&mut q, t0 + 81 * MS, &set);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].ts, 4 * 160);
    }

    #[test]
    fn sequence_and_timestamp_wrap() {
        let t0 = Instant::now();
        let (set, ..) = prompts();
        let mut p = Player::new(t0, Codec::Pcmu, 7, u16::MAX - 1, u32::MAX - 200);
        let mut seen = Vec::new();
        for n in 0..4u32 {
            for s in drain(&mut p, t0 + n * 20 * MS, &set) {
                seen.push((s.seq, s.ts));
            }
        }
        assert_eq!(
            seen,
            [
                (u16::MAX - 1, u32::MAX - 200),
                (u16::MAX, u32::MAX - 40),
                (0, 119),
                (1, 279)
            ]
        );
        // Skip-ahead wraps the timestamp too.
        let mut q = Player::new(t0, Codec::Pcmu, 7, 0, u32::MAX);
        drain(&mut q, t0, &set);
        let s = drain(&mut q, t0 + 200 * MS, &set);
        assert_eq!(s[0].ts, u32::MAX.wrapping_add(10 * 160));
    }

    #[test]
    fn discarded_slots_advance_time_and_prompt_but_not_sequence() {
        let t0 = Instant::now();
        let (set, a, ..) = prompts();
        let mut p = Player::new(t0, Codec::Pcmu, 7, 500, 0);
        drain(&mut p, t0, &set); // seq 500, ts 0
        p.play(&[a]);
        // Slots 1..=3 (the whole prompt) go by on hold.
        for n in 1..=3u32 {
            assert!(p.poll_discard(t0 + n * 20 * MS, &set));
            assert!(!p.poll_discard(t0 + n * 20 * MS, &set));
        }
        assert_eq!(p.poll_event(), Some(PlayerEvent::Finished));
        assert_eq!(p.packets_discarded(), 3);
        let s = drain(&mut p, t0 + 80 * MS, &set);
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].seq, s[0].ts, s[0].marker), (501, 4 * 160, true));
        assert_eq!(s[0].payload, silence(Codec::Pcmu));
    }

    #[test]
    fn set_codec_switches_law_mid_prompt_and_mark_next_marks() {
        let t0 = Instant::now();
        let (set, a, ..) = prompts();
        let mut p = Player::new(t0, Codec::Pcmu, 7, 0, 0);
        p.play(&[a]);
        drain(&mut p, t0, &set);
        p.set_codec(Codec::Pcma);
        p.mark_next();
        let s = drain(&mut p, t0 + 20 * MS, &set);
        assert_eq!(s[0].pt, 8);
        assert!(s[0].marker);
        assert_eq!(s[0].payload, frame(&set, a, 1, Codec::Pcma));
    }

    #[test]
    fn looped_list_repeats_gaplessly_without_marker_or_finished() {
        let t0 = Instant::now();
        let (set, a, b, e) = prompts();
        let c = Codec::Pcmu;
        let mut p = Player::new(t0, c, 7, 0, 0);
        p.play_looped(&[a, e, b]);
        let mut got = Vec::new();
        for n in 0..12u32 {
            got.extend(drain(&mut p, t0 + n * 20 * MS, &set));
            assert_eq!(p.poll_event(), None, "slot {n}");
        }
        let round = [
            frame(&set, a, 0, c),
            frame(&set, a, 1, c),
            frame(&set, a, 2, c),
            frame(&set, b, 0, c),
            frame(&set, b, 1, c),
        ];
        assert_eq!(got.len(), 12);
        for (n, s) in got.iter().enumerate() {
            assert_eq!(
                s.payload,
                round[n % 5],
                "packet {n}: no silence between rounds"
            );
            assert_eq!(s.marker, n == 0, "packet {n}: one talkspurt");
            assert_eq!((s.seq, s.ts), (n as u16, 160 * n as u32));
        }
        assert!(p.is_playing());
        // stop() ends the loop like any run; a later play() is not looped.
        p.stop();
        p.play(&[b]);
        for n in 12..15u32 {
            drain(&mut p, t0 + n * 20 * MS, &set);
        }
        assert_eq!(p.poll_event(), Some(PlayerEvent::Finished));
        assert!(!p.is_playing());
        // A loop with nothing to play finishes instead of spinning.
        p.play_looped(&[e, PromptId(999)]);
        drain(&mut p, t0 + 300 * MS, &set);
        assert_eq!(p.poll_event(), Some(PlayerEvent::Finished));
        assert!(!p.is_playing());
    }

    #[test]
    fn idle_keeps_the_clock_without_sequence_or_play_list() {
        let t0 = Instant::now();
        let (set, a, ..) = prompts();
        let c = Codec::Pcmu;
        let mut p = Player::new(t0, c, 7, 300, 0);
        drain(&mut p, t0, &set); // seq 300, ts 0
        p.play(&[a]);
        p.idle(t0 + 19 * MS);
        assert_eq!(
            p.poll_timeout(),
            t0 + 20 * MS,
            "nothing due yet: nothing consumed"
        );
        // Slots 1..=50 go by while another source sends.
        p.idle(t0 + 1000 * MS);
        assert_eq!(p.poll_timeout(), t0 + 1020 * MS);
        assert_eq!(p.next_sequence(), 300 + 1);
        assert_eq!(p.next_timestamp(), 51 * 160);
        assert_eq!(p.poll_event(), None);
        assert_eq!((p.packets_skipped(), p.packets_discarded()), (0, 0));
        let s = drain(&mut p, t0 + 1020 * MS, &set);
        assert_eq!((s[0].seq, s[0].ts, s[0].marker), (301, 51 * 160, true));
        assert_eq!(s[0].payload, frame(&set, a, 0, c), "the prompt waited");
    }

    #[test]
    fn resume_continues_sequence_and_never_runs_timestamps_back() {
        let t0 = Instant::now();
        let (set, ..) = prompts();
        let mut p = Player::new(t0, Codec::Pcmu, 7, 0, u32::MAX - 100);
        drain(&mut p, t0, &set);
        p.idle(t0 + 40 * MS); // next: slot 3, ts MAX - 100 + 480 (wrapped)
        let grid = (u32::MAX - 100).wrapping_add(480);
        // The other source's packets ended before the grid: the grid wins.
        p.resume(9000, grid.wrapping_sub(200));
        let s = drain(&mut p, t0 + 60 * MS, &set);
        assert_eq!((s[0].seq, s[0].ts, s[0].marker), (9000, grid, true));
        // They ended later (a faster clock on the far side): start after them, across the wrap.
        p.idle(t0 + 80 * MS);
        let ahead = grid.wrapping_add(160 + 160 + 77);
        p.resume(9500, ahead);
        let s = drain(&mut p, t0 + 100 * MS, &set);
        assert_eq!((s[0].seq, s[0].ts, s[0].marker), (9500, ahead, true));
        let s = drain(&mut p, t0 + 120 * MS, &set);
        assert_eq!((s[0].seq, s[0].ts, s[0].marker), (9501, ahead + 160, false));
    }
}
