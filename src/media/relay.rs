//! RTP relay for bridged calls: a packet received on one leg is rewritten, in the receive
//! buffer, into the next packet of the other leg's outgoing stream.
//!
//! - Owns: the state of one outgoing stream while it relays ([`Rewriter`]: the incoming
//!   stream it maps from, the sequence and timestamp offsets, where the outgoing stream
//!   stands), and two 256-entry G.711 transcoding tables (µ-law → A-law, A-law → µ-law),
//!   built once per process.
//! - Takes: the received datagram as `&mut [u8]` (untrusted), `now`, the payload types
//!   negotiated on the leg it came from ([`RelaySource`]) and on the leg it goes to.
//! - Gives: the same bytes rewritten (SSRC, sequence, timestamp, marker, payload type, the
//!   payload transcoded sample by sample when the laws differ), or a [`RelayDrop`] reason.
//! - Never: reads the clock, allocates, copies the packet, changes its length, or panics on
//!   network input.
//!
//! # Rules (RFC 3550 §5.1, RFC 3264, RFC 4733)
//! We are an endpoint on both legs (a B2BUA), not an RTP translator (RFC 3550 §7): each leg
//! has one outgoing stream with our SSRC, and the far end must see it continue when its
//! source changes from our prompts to the other party's voice and back.
//! - **SSRC**: always ours for this leg.
//! - **Sequence**: `incoming + offset`, the offset chosen at a *re-base* so the relayed
//!   packet carries the next number of our stream. Between re-bases gaps and reordering of
//!   the incoming stream are kept (the far end sees real loss, RFC 3550 §6.4.1 reports it);
//!   duplicates are passed on as duplicates. A re-base happens on the first packet, on a new
//!   incoming SSRC, on a jump of more than [`MAX_DROPOUT`] ahead or [`MAX_MISORDER`] back
//!   (the thresholds of RFC 3550 §A.1), and after an [`Rewriter::interrupt`] (hold).
//! - **Timestamp**: `incoming + offset`, the offset chosen at a re-base so the relayed
//!   packet carries the stream's timestamp *now*: the last packet's timestamp (a prompt
//!   frame's or a relayed one's) advanced by the real time elapsed since it went out, and
//!   never earlier than where that packet ended, so the far end's jitter buffer sees one
//!   clock across prompt → agent → prompt (RFC 3550 §5.1). Between re-bases the sender's
//!   own timing is kept, like its sequence gaps. Audio and RFC 4733
//!   events of one incoming SSRC share that offset, so an event's packets keep their one
//!   timestamp (RFC 4733 §2.3.1: the event start).
//! - **Marker**: set on the first packet after a re-base (a new talkspurt for the far end's
//!   playout, RFC 3551 §4.1); otherwise the incoming marker is kept (talkspurt starts, event
//!   starts).
//! - **Payload type**: PT 0/8 is audio in the law of that static PT (RFC 3551 §6; the law is
//!   read per packet rather than from [`RelaySource::codec`], because a leg's session accepts
//!   both laws whatever was negotiated). It leaves with this leg's negotiated codec, and is
//!   transcoded in place when the laws differ. The other leg's telephone-event PT leaves
//!   with this leg's. Everything else is dropped (see below).
//! - **Dropped**: telephone-event when this leg negotiated none (no DTMF is synthesised in
//!   band: the digits are lost on this leg, which a bridged agent does not need); comfort
//!   noise (PT 13, RFC 3389), because our SDP never offers or answers CN, so the far end did
//!   not agree to receive it (RFC 3264 §5.1) — it conceals the silence itself; any other PT;
//!   anything that is not valid RTP (RTCP included: we do not relay RTCP). A dropped packet
//!   that was next in order uses no sequence number, so the far end counts no loss for it.
//! - **CSRCs, header extension, padding**: kept as they are; only fixed-header fields and
//!   the payload bytes between the extension and the padding are rewritten, so the length
//!   never changes.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use crate::media::codec;
use crate::media::rtp;
use crate::media::types::Codec;

/// Comfort noise (RFC 3389 §4 / RFC 3551 table 4).
pub const PT_CN: u8 = 13;
/// A forward sequence jump larger than this is a restarted stream (RFC 3550 §A.1).
pub const MAX_DROPOUT: i16 = 3000;
/// A backward sequence jump larger than this is a restarted stream (RFC 3550 §A.1).
pub const MAX_MISORDER: i16 = 100;
/// G.711 and telephone-event clock rate (RFC 3551 §4.5.14, RFC 4733 §2.1).
const NANOS_PER_SAMPLE: u128 = 1_000_000_000 / 8000;

/// The payload types negotiated on the leg a relayed packet arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelaySource {
    pub codec: Codec,
    pub telephone_event: Option<u8>,
}

/// Why a packet was not relayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RelayDrop {
    #[error("not a valid RTP packet")]
    NotRtp,
    #[error("telephone-event, but this leg negotiated none")]
    NoTelephoneEvent,
    #[error("comfort noise is not negotiated on this leg")]
    ComfortNoise,
    #[error("payload type {0} cannot be relayed")]
    UnknownPayloadType(u8),
}

static ULAW_TO_ALAW: LazyLock<[u8; 256]> =
    LazyLock::new(|| transcode_table(Codec::Pcmu, Codec::Pcma));
static ALAW_TO_ULAW: LazyLock<[u8; 256]> =
    LazyLock::new(|| transcode_table(Codec::Pcma, Codec::Pcmu));

/// Decode then re-encode every code once: the per-sample cost becomes one table lookup.
fn transcode_table(from: Codec, to: Codec) -> [u8; 256] {
    let mut t = [0u8; 256];
    for (code, slot) in (0u8..=255).zip(t.iter_mut()) {
        *slot = codec::encode_sample(to, codec::decode_sample(from, code));
    }
    t
}

/// Converts G.711 bytes from one law to the other in place (nothing to do if equal).
pub fn transcode_in_place(from: Codec, to: Codec, data: &mut [u8]) {
    let table: &[u8; 256] = match (from, to) {
        (Codec::Pcmu, Codec::Pcma) => &ULAW_TO_ALAW,
        (Codec::Pcma, Codec::Pcmu) => &ALAW_TO_ULAW,
        _ => return,
    };
    for b in data {
        *b = table[usize::from(*b)];
    }
}

/// One code converted from one law to the other.
pub fn transcode_sample(from: Codec, to: Codec, byte: u8) -> u8 {
    let mut b = [byte];
    transcode_in_place(from, to, &mut b);
    b[0]
}

/// What a packet is, for relaying.
#[derive(Clone, Copy)]
enum Kind {
    Audio(Codec),
    /// Leaves with this PT.
    Event(u8),
}

/// Where an incoming packet's sequence number falls.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Position {
    /// Ahead of everything seen (maybe after a gap).
    Newest,
    /// A duplicate or reordered packet.
    Old,
    Rebase,
}

/// The incoming stream being mapped onto ours.
#[derive(Clone, Copy, Debug)]
struct Incoming {
    ssrc: u32,
    /// Highest sequence number seen (modulo 2^16).
    highest: u16,
    seq_offset: u16,
    ts_offset: u32,
}

/// One leg's outgoing stream while it carries the other leg's packets.
#[derive(Debug)]
pub struct Rewriter {
    ssrc: u32,
    /// Sequence number of the next packet of the outgoing stream.
    next_sequence: u16,
    /// How the stream's timestamps map to real time: a packet starting at `anchor_ts` went
    /// out (or was due) at `anchor_at`. The same mapping the player's grid has, so
    /// timestamps stay on one clock whichever source sends.
    anchor_ts: u32,
    anchor_at: Instant,
    /// Where the last packet sent ended: the next may not start earlier.
    floor: u32,
    incoming: Option<Incoming>,
    rebase_next: bool,
}

impl Rewriter {
    /// A rewriter for the stream with `ssrc` whose next packet would carry `next_sequence`
    /// and, at `at`, `next_timestamp`.
    pub fn new(ssrc: u32, next_sequence: u16, next_timestamp: u32, at: Instant) -> Self {
        Rewriter {
            ssrc,
            next_sequence,
            anchor_ts: next_timestamp,
            anchor_at: at,
            floor: next_timestamp,
            incoming: None,
            rebase_next: true,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Takes over the outgoing stream from another source (the player): its next packet
    /// would have carried `next_sequence`, and `next_timestamp` at `at`. The next relayed
    /// packet re-bases onto that.
    pub fn take_over(&mut self, next_sequence: u16, next_timestamp: u32, at: Instant) {
        self.next_sequence = next_sequence;
        self.anchor_ts = next_timestamp;
        self.anchor_at = at;
        self.floor = next_timestamp;
        self.rebase_next = true;
    }

    /// Sequence number the next packet of the stream carries (to hand the stream back).
    pub fn next_sequence(&self) -> u16 {
        self.next_sequence
    }

    /// The timestamp a packet sent at `at` carries: the last packet's timestamp advanced by
    /// the real time since it went out, but never earlier than where it ended (modulo 2^32).
    pub fn timestamp_at(&self, at: Instant) -> u32 {
        let elapsed = at.saturating_duration_since(self.anchor_at);
        let ts = self.anchor_ts.wrapping_add(samples(elapsed));
        if ts_after(self.floor, ts) {
            self.floor
        } else {
            ts
        }
    }

    /// Packets stopped going out (hold, no destination): the next one re-bases, so the
    /// far end sees neither false loss nor a timestamp that ignores the pause.
    pub fn interrupt(&mut self) {
        self.rebase_next = true;
    }

    /// Rewrites `packet` (received on the other leg, negotiated as `from`) in place into
    /// the next packet of this stream, whose leg negotiated `codec` and `telephone_event`.
    /// On `Err` the buffer is unchanged and must not be sent.
    pub fn rewrite(
        &mut self,
        now: Instant,
        packet: &mut [u8],
        from: RelaySource,
        codec: Codec,
        telephone_event: Option<u8>,
    ) -> Result<(), RelayDrop> {
        let (ssrc_in, seq_in, ts_in, marker_in, pt_in, start, end) = {
            let p = rtp::parse(packet).map_err(|_| RelayDrop::NotRtp)?;
            // The payload is a subslice of `packet`: its offset is past CSRCs and extension.
            let start = p.payload.as_ptr() as usize - packet.as_ptr() as usize;
            let end = start + p.payload.len();
            (
                p.ssrc,
                p.sequence,
                p.timestamp,
                p.marker,
                p.payload_type,
                start,
                end,
            )
        };

        let position = match self.incoming {
            Some(inc) if !self.rebase_next && inc.ssrc == ssrc_in => {
                let d = seq_in.wrapping_sub(inc.highest) as i16;
                if !(-MAX_MISORDER..=MAX_DROPOUT).contains(&d) {
                    Position::Rebase
                } else if d > 0 {
                    Position::Newest
                } else {
                    Position::Old
                }
            }
            _ => Position::Rebase,
        };

        let kind = match classify(pt_in, from, telephone_event) {
            Ok(kind) => kind,
            Err(e) => {
                if let (Position::Newest, Some(inc)) = (position, self.incoming.as_mut()) {
                    // Use no sequence number for it: the next packet follows seamlessly,
                    // while a gap before it stays visible.
                    inc.highest = seq_in;
                    inc.seq_offset = inc.seq_offset.wrapping_sub(1);
                }
                return Err(e);
            }
        };

        let mut marker = marker_in;
        if position == Position::Rebase {
            let ts = self.timestamp_at(now);
            self.incoming = Some(Incoming {
                ssrc: ssrc_in,
                highest: seq_in,
                seq_offset: self.next_sequence.wrapping_sub(seq_in),
                ts_offset: ts.wrapping_sub(ts_in),
            });
            self.rebase_next = false;
            marker = true;
        }
        let Some(inc) = self.incoming.as_mut() else {
            return Err(RelayDrop::NotRtp); // unreachable: set just above or matched
        };
        let seq = seq_in.wrapping_add(inc.seq_offset);
        let ts = ts_in.wrapping_add(inc.ts_offset);
        if position != Position::Old {
            inc.highest = seq_in;
            self.next_sequence = seq.wrapping_add(1);
            let duration = match kind {
                Kind::Audio(_) => {
                    // Audio keeps the mapping to real time fresh. Events do not: all their
                    // packets carry the event's start.
                    self.anchor_ts = ts;
                    self.anchor_at = now;
                    // G.711: one byte per sample.
                    end - start
                }
                // RFC 4733 §2.3.5: the event's duration so far, from its timestamp.
                Kind::Event(_) => packet
                    .get(start + 2..start + 4)
                    .filter(|_| end - start >= 4)
                    .map_or(0, |d| usize::from(u16::from_be_bytes([d[0], d[1]]))),
            };
            let packet_end = ts.wrapping_add(duration as u32);
            if ts_after(packet_end, self.floor) {
                self.floor = packet_end;
            }
        }

        let pt = match kind {
            Kind::Audio(_) => codec.payload_type(),
            Kind::Event(pt) => pt,
        };
        packet[1] = (u8::from(marker) << 7) | (pt & 0x7F);
        packet[2..4].copy_from_slice(&seq.to_be_bytes());
        packet[4..8].copy_from_slice(&ts.to_be_bytes());
        packet[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        if let Kind::Audio(law) = kind {
            transcode_in_place(law, codec, &mut packet[start..end]);
        }
        Ok(())
    }
}

fn classify(pt: u8, from: RelaySource, telephone_event: Option<u8>) -> Result<Kind, RelayDrop> {
    // Telephone-event first, as the receiving session does: a dynamic PT is what the
    // other leg's SDP says it is.
    if from.telephone_event == Some(pt) {
        return telephone_event
            .map(Kind::Event)
            .ok_or(RelayDrop::NoTelephoneEvent);
    }
    if let Some(law) = Codec::from_payload_type(pt) {
        return Ok(Kind::Audio(law));
    }
    if pt == PT_CN {
        return Err(RelayDrop::ComfortNoise);
    }
    Err(RelayDrop::UnknownPayloadType(pt))
}

/// Samples of the 8 kHz clock in `d`, modulo 2^32 (RTP timestamps wrap).
fn samples(d: Duration) -> u32 {
    (d.as_nanos() / NANOS_PER_SAMPLE) as u32
}

/// True if RTP timestamp `a` is later than `b` (modulo 2^32, half the range ahead).
fn ts_after(a: u32, b: u32) -> bool {
    let d = a.wrapping_sub(b);
    d != 0 && d < 1 << 31
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const OURS: u32 = 0x5151_0000;
    const PCMU_TE: RelaySource = RelaySource {
        codec: Codec::Pcmu,
        telephone_event: Some(101),
    };

    fn packet(pt: u8, seq: u16, ts: u32, ssrc: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        rtp::write(&mut v, marker, pt, seq, ts, ssrc, payload);
        v
    }

    /// (marker, pt, seq, ts, ssrc) of a rewritten packet.
    fn fields(buf: &[u8]) -> (bool, u8, u16, u32, u32) {
        let p = rtp::parse(buf).unwrap();
        (p.marker, p.payload_type, p.sequence, p.timestamp, p.ssrc)
    }

    /// Relays `pkt` as PCMU with telephone-event 96 on the outgoing leg.
    fn relay(r: &mut Rewriter, now: Instant, pkt: &mut [u8]) -> Result<(), RelayDrop> {
        r.rewrite(now, pkt, PCMU_TE, Codec::Pcmu, Some(96))
    }

    #[test]
    fn relayed_packet_gets_this_legs_ssrc_seq_ts() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(OURS, 700, 9000, t0);
        let mut a = packet(0, 40_000, 1_234_567, 0xA9E7, false, &[0x11; 160]);
        relay(&mut r, t0, &mut a).unwrap();
        assert_eq!(fields(&a), (true, 0, 700, 9000, OURS));
        assert_eq!(
            rtp::parse(&a).unwrap().payload,
            &[0x11; 160],
            "same law: untouched"
        );
        let mut b = packet(0, 40_001, 1_234_567 + 160, 0xA9E7, false, &[0x22; 160]);
        relay(&mut r, t0 + 20 * MS, &mut b).unwrap();
        assert_eq!(fields(&b), (false, 0, 701, 9160, OURS));
        assert_eq!(r.next_sequence(), 702);
        // The incoming talkspurt marker is kept after the first packet.
        let mut c = packet(0, 40_002, 1_234_567 + 320, 0xA9E7, true, &[0x33; 160]);
        relay(&mut r, t0 + 40 * MS, &mut c).unwrap();
        assert_eq!(fields(&c), (true, 0, 702, 9320, OURS));
    }

    #[test]
    fn gaps_in_incoming_sequence_are_preserved() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(OURS, 10, 0, t0);
        let mut got = Vec::new();
        // 65534, 65535, (0 and 1 lost), 2, then 1 arrives late, then 3; across the wrap.
        for (i, seq) in [65534u16, 65535, 2, 1, 3].into_iter().enumerate() {
            let ts = u32::from(seq.wrapping_sub(65534)) * 160;
            let mut p = packet(0, seq, ts, 0xA9E7, false, &[0xFF; 160]);
            relay(&mut r, t0 + i as u32 * 20 * MS, &mut p).unwrap();
            let (_, _, s, t, _) = fields(&p);
            got.push((s, t));
        }
        assert_eq!(
            got,
            [(10, 0), (11, 160), (14, 640), (13, 480), (15, 800)],
            "loss and reordering stay visible, timestamps keep the sender's timing"
        );
        assert_eq!(
            r.next_sequence(),
            16,
            "a late packet does not move the stream"
        );

        // A dropped packet (comfort noise) that was next uses no number: no false loss.
        let mut cn = packet(PT_CN, 4, 960, 0xA9E7, false, &[40]);
        assert_eq!(
            relay(&mut r, t0 + 100 * MS, &mut cn),
            Err(RelayDrop::ComfortNoise)
        );
        let mut p = packet(0, 5, 1120, 0xA9E7, false, &[0xFF; 160]);
        relay(&mut r, t0 + 120 * MS, &mut p).unwrap();
        assert_eq!(fields(&p).2, 16);
    }

    #[test]
    fn new_incoming_ssrc_rebases() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(OURS, 100, 50_000, t0);
        for i in 0..3u16 {
            let mut p = packet(
                8,
                7 + i,
                800 + 160 * u32::from(i),
                0xAAAA,
                false,
                &[0xD5; 160],
            );
            r.rewrite(
                t0 + u32::from(i) * 20 * MS,
                &mut p,
                PCMU_TE,
                Codec::Pcma,
                None,
            )
            .unwrap();
        }
        // Last relayed: seq 102, ts 50_320 at 40 ms.
        // The agent's phone restarts its stream (e.g. after a transfer) 100 ms later.
        let mut p = packet(8, 30_000, 3_000_000_000, 0xBBBB, false, &[0xD5; 160]);
        r.rewrite(t0 + 140 * MS, &mut p, PCMU_TE, Codec::Pcma, None)
            .unwrap();
        assert_eq!(
            fields(&p),
            (true, 8, 103, 50_320 + 100 * 8, OURS),
            "sequence continues, timestamp follows the real time elapsed"
        );
        let mut p = packet(8, 30_001, 3_000_000_160, 0xBBBB, false, &[0xD5; 160]);
        r.rewrite(t0 + 160 * MS, &mut p, PCMU_TE, Codec::Pcma, None)
            .unwrap();
        assert_eq!(fields(&p), (false, 8, 104, 50_320 + 800 + 160, OURS));

        // A big jump within the same SSRC re-bases too (RFC 3550 §A.1 dropout).
        let mut p = packet(8, 40_000, 3_000_000_320, 0xBBBB, false, &[0xD5; 160]);
        r.rewrite(t0 + 180 * MS, &mut p, PCMU_TE, Codec::Pcma, None)
            .unwrap();
        let (m, _, seq, ..) = fields(&p);
        assert!(m);
        assert_eq!(seq, 105);
        // So does a big jump back.
        let mut p = packet(8, 39_000, 3_000_000_480, 0xBBBB, false, &[0xD5; 160]);
        r.rewrite(t0 + 200 * MS, &mut p, PCMU_TE, Codec::Pcma, None)
            .unwrap();
        assert_eq!(fields(&p).2, 106);
    }

    /// Decoded values of every code of `law`, sorted: the quantisation grid.
    fn grid(law: Codec) -> Vec<i32> {
        let mut v: Vec<i32> = (0u8..=255)
            .map(|b| i32::from(codec::decode_sample(law, b)))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Width of the quantisation step of `grid` around `x` (0 outside the range).
    fn step_around(grid: &[i32], x: i32) -> i32 {
        let i = grid.partition_point(|&g| g < x);
        match (i.checked_sub(1).and_then(|j| grid.get(j)), grid.get(i)) {
            (Some(lo), Some(hi)) => hi - lo,
            (None, Some(hi)) => grid[1] - hi,
            (Some(lo), None) => lo - grid[grid.len() - 2],
            (None, None) => 0,
        }
    }

    #[test]
    fn pcmu_to_pcma_transcoding_matches_decode_encode() {
        for (from, to) in [(Codec::Pcmu, Codec::Pcma), (Codec::Pcma, Codec::Pcmu)] {
            let target = grid(to);
            for code in 0u8..=255 {
                let x = i32::from(codec::decode_sample(from, code));
                let y = i32::from(codec::decode_sample(to, transcode_sample(from, to, code)));
                // Encoders may pick either code adjacent to x, so allow one step of the
                // target law around x, never more.
                let step = step_around(&target, x);
                assert!(
                    (x - y).abs() <= step,
                    "{from:?}->{to:?} code {code:#04x}: {x} became {y} (step {step})"
                );
            }
        }
        // In a packet: header, CSRC and padding bytes are left alone, all payload bytes
        // converted; the result is what decoding and re-encoding gives.
        let t0 = Instant::now();
        let payload: Vec<u8> = (0..160).map(|i| (i * 37 % 256) as u8).collect();
        let mut p = packet(0, 1, 0, 0xA9E7, false, &payload);
        let mut r = Rewriter::new(OURS, 0, 0, t0);
        r.rewrite(t0, &mut p, PCMU_TE, Codec::Pcma, Some(96))
            .unwrap();
        let out = rtp::parse(&p).unwrap();
        assert_eq!(out.payload_type, 8);
        let mut pcm = Vec::new();
        codec::decode(Codec::Pcmu, &payload, &mut pcm);
        let mut expect = Vec::new();
        codec::encode(Codec::Pcma, &pcm, &mut expect);
        assert_eq!(out.payload, expect.as_slice());
    }

    #[test]
    fn telephone_event_pt_remapped_and_timestamps_consistent() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(OURS, 500, 20_000, t0);
        let mut t = t0;
        let mut seq = 9;
        let audio = |r: &mut Rewriter, t: Instant, seq: u16, ts: u32| {
            let mut p = packet(0, seq, ts, 0xA9E7, false, &[0xFF; 160]);
            relay(r, t, &mut p).unwrap();
            fields(&p)
        };
        let first = audio(&mut r, t, seq, 4000);
        assert_eq!(first.3, 20_000);
        seq += 1;
        t += 20 * MS;
        // An event starting at the sender's timestamp 4160: start, updates, end ×3.
        let mut out = Vec::new();
        for i in 0..6u16 {
            let end = i >= 3;
            let dur = (i.min(3) + 1) * 160;
            let payload = [5, (u8::from(end) << 7) | 10, (dur >> 8) as u8, dur as u8];
            let mut p = packet(101, seq, 4160, 0xA9E7, i == 0, &payload);
            relay(&mut r, t, &mut p).unwrap();
            assert_eq!(rtp::parse(&p).unwrap().payload, &payload, "event body kept");
            out.push(fields(&p));
            seq += 1;
            t += 20 * MS;
        }
        for (i, (m, pt, s, ts, ssrc)) in out.iter().enumerate() {
            assert_eq!(*pt, 96, "this leg's telephone-event PT");
            assert_eq!(*ts, 20_160, "one timestamp for the whole event");
            assert_eq!(*s, 501 + i as u16);
            assert_eq!(*m, i == 0, "only the event start is marked");
            assert_eq!(*ssrc, OURS);
        }
        // Audio after the event continues on the same offset.
        let next = audio(&mut r, t, seq, 4160 + 6 * 160);
        assert_eq!((next.2, next.3), (507, 20_000 + 7 * 160));

        // A leg without telephone-event gets no events.
        let mut p = packet(101, seq + 1, 5280, 0xA9E7, true, &[5, 0, 0, 160]);
        let before = p.clone();
        assert_eq!(
            r.rewrite(t, &mut p, PCMU_TE, Codec::Pcmu, None),
            Err(RelayDrop::NoTelephoneEvent)
        );
        assert_eq!(p, before, "a dropped packet is left untouched");
        // PT 101 means nothing if the other leg did not negotiate it.
        let no_te = RelaySource {
            codec: Codec::Pcmu,
            telephone_event: None,
        };
        assert_eq!(
            r.rewrite(t, &mut p, no_te, Codec::Pcmu, Some(96)),
            Err(RelayDrop::UnknownPayloadType(101))
        );
    }

    #[test]
    fn csrc_and_extension_packets_rewritten_correctly() {
        let t0 = Instant::now();
        // V=2, P, X, CC=2, PT 0, then 2 CSRCs, a one-word extension, payload, 3 bytes padding.
        let mut b = vec![
            0x80 | 0x20 | 0x10 | 2,
            0,
            0x12,
            0x34,
            0,
            0,
            0x10,
            0,
            0,
            0,
            0xA9,
            0xE7,
        ];
        let csrcs = [1, 2, 3, 4, 5, 6, 7, 8];
        let ext = [0xBE, 0xDE, 0, 1, 0x10, 0xAA, 0, 0];
        b.extend_from_slice(&csrcs);
        b.extend_from_slice(&ext);
        let payload: Vec<u8> = (0..160).map(|i| i as u8).collect();
        b.extend_from_slice(&payload);
        b.extend_from_slice(&[0, 0, 3]);
        let len = b.len();
        let mut r = Rewriter::new(OURS, 77, 880, t0);
        r.rewrite(t0, &mut b, PCMU_TE, Codec::Pcma, Some(96))
            .unwrap();
        assert_eq!(b.len(), len);
        assert_eq!(b[0], 0x80 | 0x20 | 0x10 | 2, "flags and CSRC count kept");
        assert_eq!(&b[12..20], &csrcs);
        assert_eq!(&b[20..28], &ext);
        assert_eq!(&b[len - 3..], &[0, 0, 3], "padding untouched");
        let p = rtp::parse(&b).unwrap();
        assert_eq!(
            (p.marker, p.payload_type, p.sequence, p.timestamp, p.ssrc),
            (true, 8, 77, 880, OURS)
        );
        let expect: Vec<u8> = payload
            .iter()
            .map(|&x| transcode_sample(Codec::Pcmu, Codec::Pcma, x))
            .collect();
        assert_eq!(p.payload, expect.as_slice());
    }

    #[test]
    fn garbage_never_panics_in_the_rewriter() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(OURS, 0, 0, t0);
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut ok = 0;
        for i in 0..50_000u32 {
            let len = (next() % 300) as usize;
            let mut d: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if i % 2 == 0 && d.len() >= 12 {
                d[0] = 0x80 | (d[0] & 0x3F);
                d[1] = [0u8, 8, 101, 13, 96, 0x80][(next() % 6) as usize];
            }
            let before = d.len();
            let te = [None, Some(96)][(next() % 2) as usize];
            let to = [Codec::Pcmu, Codec::Pcma][(next() % 2) as usize];
            if r.rewrite(t0 + i * MS, &mut d, PCMU_TE, to, te).is_ok() {
                ok += 1;
                assert!(rtp::parse(&d).is_ok(), "a rewritten packet is valid RTP");
            }
            assert_eq!(d.len(), before);
        }
        assert!(ok > 1000, "valid packets were relayed too ({ok})");
    }
}
