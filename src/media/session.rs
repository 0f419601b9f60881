//! Per-call media state: one RTP stream each way, digits in, prompts out.
//!
//! - Owns: the call leg's [`Player`], its DTMF detectors (RFC 4733 receiver and in-band
//!   Goertzel), the latched remote address, hold state, the RTP inactivity timer, counters.
//! - Takes: received datagrams with their source, `now`, negotiated SDP results
//!   (re-INVITE), play/stop commands, the shared [`PromptSet`].
//! - Gives: one outgoing packet plus destination per `poll_transmit`, [`MediaEvent`]s
//!   (digits with their source, playback finished, RTP timeout), the next deadline, stats;
//!   in a bridged call, the other leg's packets rewritten in place for this leg
//!   ([`MediaSession::relay_in_place`]) and a verdict on each received packet.
//! - Never: reads the clock, touches a socket, allocates per packet, or panics on network
//!   input (garbage is counted and dropped).
//!
//! # Rules
//! - **Media ownership** ([`MediaPolicy`]): the stream belongs to the party that signalled
//!   it, not to whoever sends RTP to our port first.
//!   - *Latching* (`symmetric_rtp`, RFC 4961 / "comedia"): the first valid RTP packet with
//!     a payload type we negotiated (G.711, telephone-event, CN) latches the stream only if
//!     it comes from the SDP `c=`/`m=` address and port, or — a caller behind NAT — from
//!     an address whose IP is the SIP signalling source's, within `latch_window` of the
//!     answer (or of the re-INVITE that moved the SDP address). From then on we send to
//!     that source and accept RTP only from it. Nothing else ever latches or re-latches:
//!     other packets are counted in `foreign_dropped` (logged, sampled) and their RFC 4733
//!     events and tones are never looked at. A re-INVITE that changes the SDP address (the
//!     dialog's own request) releases the latch and opens a new window.
//!   - *Sending before latching*: to the SDP address only when `trust_sdp_address` is set
//!     or its IP is the signalling source's; otherwise nothing until RTP has come from a
//!     source that may latch. So a 300-byte INVITE naming a victim's address makes us send
//!     nothing to the victim.
//!   - *Never sent to*: port 0 or 9 (discard), unspecified, broadcast or multicast
//!     addresses, or our own SIP/HTTP ports on our own addresses
//!     ([`MediaPolicy::forbids`]). An SDP naming one leaves the call running without media
//!     until a packet from an allowed source latches.
//!   - Without `symmetric_rtp` we send to the SDP address (under the same rules) and accept
//!     RTP from the SDP address's IP or the signalling source's IP only.
//! - **Hold** (RFC 3264 §8.4): when our negotiated direction does not include sending
//!   (caller sendonly/inactive, or c=0.0.0.0), nothing is sent. The player keeps running
//!   on its schedule (prompts progress, `PlaybackFinished` still fires, timestamps follow
//!   real time) but uses no sequence numbers ([`Player::poll_discard`]), so the receiver
//!   sees no loss; the first packet after the hold carries the marker bit. The RTP timeout only applies while the stream is
//!   sendrecv, so it never fires during hold.
//! - **DTMF**: telephone-event packets go to the RFC 4733 receiver; audio (PT 0/8, decoded
//!   with the law of the packet's PT) goes to the in-band detector until the first RFC 4733
//!   event is seen, after which in-band detection is off for the rest of the call (phones
//!   that send both would otherwise report each digit twice). The in-band detector is
//!   reset on sequence gaps, on an SSRC change and on large sequence jumps; duplicates and
//!   reordered packets are not fed to it. The RFC 4733 receiver is reset on an SSRC change.
//! - The initial stream is sendrecv; if the first negotiation is not, call
//!   [`MediaSession::update`] right after [`MediaSession::new`].
//! - **Bridge** ([`MediaSession::set_bridged`]): the other leg's audio is the source of this
//!   leg's outgoing stream. The player sends nothing (no prompts, no comfort silence): its
//!   schedule idles on real time ([`Player::idle`]) while [`MediaSession::relay_in_place`]
//!   rewrites the other leg's packets into the same stream (same SSRC, sequence numbers
//!   continuing, timestamps on one clock, see [`crate::media::relay`]). Whatever played is
//!   stopped without `PlaybackFinished`; a `play` while bridged waits for the end of the
//!   bridge. DTMF detection is off (the events are relayed instead); latching, the RTP
//!   timeout and the counters work as usual. When the bridge ends the player takes the
//!   stream back: the sequence continues from the last relayed packet, the timestamp
//!   follows real time and never runs back, the marker bit is set.
//! - **Hold while bridged**: relayed packets are counted as suppressed and not sent while
//!   this leg's direction does not send; the first packet after the hold re-bases (sequence
//!   continues, timestamp reflects the pause, marker set).
//! - **Hold music**: [`MediaSession::play_looped`] repeats a list gaplessly (no silence
//!   frame, no marker, no `PlaybackFinished` between rounds; see [`crate::media::player`]).

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::media::codec;
use crate::media::dtmf::{InbandDetector, TelephoneEventReceiver};
use crate::media::player::{Player, PlayerEvent};
use crate::media::prompt::PromptSet;
use crate::media::relay::{PT_CN, RelaySource, Rewriter};
use crate::media::rtp;
use crate::media::sdp::{Direction, Negotiated};
use crate::media::types::{Codec, Digit, DigitSource, PTIME_MS, PromptId, SAMPLES_PER_FRAME};

// Comfort noise (RFC 3389, `PT_CN`) is accepted for latching and liveness but not decoded.
/// A backwards sequence jump larger than this is a restarted stream, not reordering.
const MAX_REORDER: i16 = 100;
const PTIME: Duration = Duration::from_millis(PTIME_MS);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaConfig {
    pub codec: Codec,
    /// Payload type of `telephone-event/8000`, as negotiated.
    pub telephone_event: Option<u8>,
    /// Where the SDP says to send (`None`: wait for latching, or nowhere).
    pub remote: Option<SocketAddr>,
    /// No RTP for this long while sendrecv → [`MediaEvent::RtpTimeout`]. Zero disables.
    pub rtp_timeout: Duration,
    pub ssrc: u32,
    pub initial_sequence: u16,
    pub initial_timestamp: u32,
    /// Send to where the caller's packets come from (and only accept those).
    pub symmetric_rtp: bool,
    /// When to run the in-band tone detector on the caller's audio.
    pub inband_dtmf: InbandDtmf,
    /// Who may feed this stream and where it may be sent.
    pub policy: MediaPolicy,
}

/// Who owns a stream (see "Media ownership" above). Built once per leg.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MediaPolicy {
    /// The IP the leg's SIP signalling comes from (the INVITE's Via `received`, or where
    /// we sent our INVITE). `None`: unknown, only the SDP address may latch.
    pub signalling_ip: Option<IpAddr>,
    /// Send to the SDP address before any RTP came from it, whatever its IP (trusted
    /// trunks whose media gateway is not their SIP address).
    pub trust_sdp_address: bool,
    /// How long after the answer a source with the signalling IP may latch (NAT).
    pub latch_window: Duration,
    /// Our own SIP and HTTP ports: never a media destination on our own addresses.
    pub own_ports: Vec<u16>,
    /// Our own addresses (SIP and media), besides loopback.
    pub own_ips: Vec<IpAddr>,
}

impl MediaPolicy {
    /// True when no media may ever go to `addr`: port 0 or 9 (discard), an unspecified,
    /// "this network" (0/8), broadcast or multicast address, or one of our own SIP/HTTP
    /// ports on loopback or one of our addresses (RTP reflected into our own signalling).
    pub fn forbids(&self, addr: SocketAddr) -> bool {
        if addr.port() == 0 || addr.port() == 9 {
            return true;
        }
        let ip = addr.ip();
        let bad_ip = match ip {
            IpAddr::V4(v4) => {
                v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast() || v4.octets()[0] == 0
            }
            IpAddr::V6(v6) => {
                v6.is_unspecified()
                    || v6.is_multicast()
                    || v6.to_ipv4_mapped().is_some_and(|v4| {
                        v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast()
                    })
            }
        };
        if bad_ip {
            return true;
        }
        let ours = ip.is_loopback() || self.own_ips.contains(&ip);
        ours && self.own_ports.contains(&addr.port())
    }
}

/// When to look for DTMF tones in the audio (the Goertzel detector costs ~1 µs per frame and
/// can be fooled by speech; RFC 4733 events are exact).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum InbandDtmf {
    /// Only when the caller did not offer telephone-event (as Asterisk's `dtmfmode=auto`),
    /// and never again once an RFC 4733 event was seen.
    #[default]
    Auto,
    /// Always (until an RFC 4733 event is seen): for gateways that offer telephone-event but
    /// pass tones in the audio.
    Always,
    Never,
}

impl InbandDtmf {
    fn wanted(self, telephone_event: Option<u8>) -> bool {
        match self {
            InbandDtmf::Auto => telephone_event.is_none(),
            InbandDtmf::Always => true,
            InbandDtmf::Never => false,
        }
    }
}

/// What [`MediaSession::handle_rtp`] made of a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtpVerdict {
    /// Valid RTP from the latched (or an allowed) source with a payload type we accept
    /// (G.711, our telephone-event, CN): in a bridged call, hand it to the other leg's
    /// [`MediaSession::relay_in_place`].
    Accepted,
    /// RTCP, garbage, a foreign source or an unknown payload type (counted in the stats).
    Dropped,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaEvent {
    Digit(Digit, DigitSource),
    /// The prompts of the last `play` were all sent.
    PlaybackFinished,
    /// No RTP received for `rtp_timeout` while the stream was sendrecv. Reported once;
    /// re-armed when packets arrive again.
    RtpTimeout,
}

/// Counters for one call leg.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MediaStats {
    /// Packets handed out by `poll_transmit` or `relay_in_place` (sent).
    pub packets_sent: u64,
    /// 20 ms slots that went by unsent (hold, or no destination yet), and relayed packets
    /// not sent for the same reasons.
    pub packets_suppressed: u64,
    /// Slots skipped because the sweep was more than 60 ms late.
    pub packets_skipped: u64,
    /// Valid RTP packets accepted.
    pub packets_received: u64,
    /// Datagrams that were not valid RTP.
    pub garbage_dropped: u64,
    pub rtcp_ignored: u64,
    /// Valid RTP with a payload type we did not negotiate (includes CN).
    pub unknown_payload_type: u64,
    /// Valid RTP from a source other than the latched one.
    pub foreign_dropped: u64,
    pub digits_rfc4733: u64,
    pub digits_inband: u64,
    /// Packets given to `relay_in_place` that could not be relayed: not bridged, not RTP,
    /// or a payload type this leg cannot carry (see [`crate::media::relay::RelayDrop`]).
    pub relay_dropped: u64,
}

/// Position of an incoming packet relative to the previous one of the stream.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Continuity {
    Next,
    /// New SSRC, first packet, a gap, or a jump: detector state is stale.
    Break,
    /// Duplicate or reordered: already covered.
    Old,
}

#[derive(Debug)]
pub struct MediaSession {
    codec: Codec,
    telephone_event: Option<u8>,
    sdp_remote: Option<SocketAddr>,
    latched: Option<SocketAddr>,
    symmetric: bool,
    policy: MediaPolicy,
    /// Until when a source with the signalling IP may latch.
    latch_until: Instant,
    /// RTP came from the SDP address's IP (without `symmetric_rtp`: sending allowed).
    sdp_verified: bool,
    direction: Direction,
    rtp_timeout: Duration,
    last_rx: Instant,
    timeout_fired: bool,
    player: Player,
    rfc4733: TelephoneEventReceiver,
    inband: InbandDetector,
    inband_enabled: bool,
    inband_mode: InbandDtmf,
    /// A well-formed RFC 4733 event arrived: in-band detection stays off for the call.
    rfc4733_seen: bool,
    /// (ssrc, sequence) of the newest packet received.
    last_in: Option<(u32, u16)>,
    events: VecDeque<MediaEvent>,
    stats: MediaStats,
    /// The other leg's audio is this leg's source ([`MediaSession::set_bridged`]).
    bridged: bool,
    /// The outgoing stream while bridged.
    relay: Rewriter,
}

impl MediaSession {
    pub fn new(now: Instant, config: MediaConfig) -> Self {
        MediaSession {
            codec: config.codec,
            telephone_event: config.telephone_event,
            sdp_remote: config.remote,
            latched: None,
            symmetric: config.symmetric_rtp,
            latch_until: now + config.policy.latch_window,
            policy: config.policy,
            sdp_verified: false,
            direction: Direction::SendRecv,
            rtp_timeout: config.rtp_timeout,
            last_rx: now,
            timeout_fired: false,
            player: Player::new(
                now,
                config.codec,
                config.ssrc,
                config.initial_sequence,
                config.initial_timestamp,
            ),
            rfc4733: TelephoneEventReceiver::new(),
            inband: InbandDetector::new(),
            inband_enabled: config.inband_dtmf.wanted(config.telephone_event),
            inband_mode: config.inband_dtmf,
            rfc4733_seen: false,
            last_in: None,
            events: VecDeque::new(),
            stats: MediaStats::default(),
            bridged: false,
            relay: Rewriter::new(
                config.ssrc,
                config.initial_sequence,
                config.initial_timestamp,
                now,
            ),
        }
    }

    // ---- getters ----

    pub fn is_playing(&self) -> bool {
        self.player.is_playing()
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Our current direction.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// Where packets go now: the latched source, else the SDP address when it may be used
    /// before RTP came from it (see "Media ownership"); never a forbidden address.
    pub fn destination(&self) -> Option<SocketAddr> {
        self.latched
            .or_else(|| {
                self.sdp_remote.filter(|sdp| {
                    self.policy.trust_sdp_address
                        || self.sdp_verified
                        || self.policy.signalling_ip == Some(sdp.ip())
                })
            })
            .filter(|d| !self.policy.forbids(*d))
    }

    /// The latched source address, if any.
    pub fn latched(&self) -> Option<SocketAddr> {
        self.latched
    }

    /// True when `poll_transmit` hands out packets (not on hold and a destination known).
    pub fn is_sending(&self) -> bool {
        self.direction.sends() && self.destination().is_some()
    }

    /// False once an RFC 4733 event was seen.
    pub fn inband_enabled(&self) -> bool {
        self.inband_enabled
    }

    pub fn is_bridged(&self) -> bool {
        self.bridged
    }

    /// This leg's negotiated payload types, for the other leg's
    /// [`MediaSession::relay_in_place`].
    pub fn relay_source(&self) -> RelaySource {
        RelaySource {
            codec: self.codec,
            telephone_event: self.telephone_event,
        }
    }

    pub fn stats(&self) -> MediaStats {
        MediaStats {
            packets_skipped: self.player.packets_skipped(),
            ..self.stats
        }
    }

    // ---- handle ----

    /// One received datagram from `from`. The verdict says whether it is fit to relay.
    pub fn handle_rtp(&mut self, now: Instant, from: SocketAddr, data: &[u8]) -> RtpVerdict {
        let pkt = match rtp::parse(data) {
            Ok(p) => p,
            Err(rtp::RtpError::Rtcp) => {
                self.stats.rtcp_ignored += 1;
                return RtpVerdict::Dropped;
            }
            Err(_) => {
                self.stats.garbage_dropped += 1;
                return RtpVerdict::Dropped;
            }
        };
        let pt = pkt.payload_type;
        let is_te = self.telephone_event == Some(pt);
        let audio_codec = Codec::from_payload_type(pt);
        let negotiated = is_te || audio_codec.is_some() || pt == PT_CN;

        if self.symmetric {
            match self.latched {
                Some(addr) if addr != from => return self.foreign(from),
                Some(_) => {}
                None if !self.may_latch(now, from) => return self.foreign(from),
                None if negotiated => self.latched = Some(from),
                None => {
                    self.stats.unknown_payload_type += 1;
                    return RtpVerdict::Dropped;
                }
            }
        } else {
            let sdp_ip = self.sdp_remote.map(|a| a.ip());
            if sdp_ip == Some(from.ip()) {
                self.sdp_verified = true;
            } else if self.policy.signalling_ip != Some(from.ip()) {
                return self.foreign(from);
            }
        }
        self.stats.packets_received += 1;
        self.last_rx = now;
        self.timeout_fired = false;

        let continuity = match self.last_in {
            Some((ssrc, seq)) if ssrc == pkt.ssrc => {
                let d = pkt.sequence.wrapping_sub(seq) as i16;
                if d == 1 {
                    Continuity::Next
                } else if d <= 0 && d > -MAX_REORDER {
                    Continuity::Old
                } else {
                    Continuity::Break
                }
            }
            _ => Continuity::Break,
        };
        if self.last_in.is_some_and(|(ssrc, _)| ssrc != pkt.ssrc) {
            // A new stream: its event timestamps are unrelated to the old one's.
            self.rfc4733.reset();
        }
        if continuity != Continuity::Old {
            self.last_in = Some((pkt.ssrc, pkt.sequence));
        }
        let verdict = if negotiated {
            RtpVerdict::Accepted
        } else {
            RtpVerdict::Dropped
        };
        if is_te && pkt.payload.len() >= 4 && pkt.payload[0] <= 15 {
            // Even while bridged: the phone sends RFC 4733, so its tones in the audio must
            // not be reported again once we listen again.
            self.inband_enabled = false;
            self.rfc4733_seen = true;
        }
        if self.bridged {
            // The events and tones go to the other party with the relayed packets.
            if !is_te && audio_codec.is_none() {
                self.stats.unknown_payload_type += 1;
            }
            return verdict;
        }

        if is_te {
            let mut next = self
                .rfc4733
                .handle_packet(now, pkt.marker, pkt.timestamp, pkt.payload);
            // Several events in one packet (RFC 4733 §2.5.1.5): the rest wait in poll_digit.
            while let Some(d) = next {
                self.push_digit(d, DigitSource::Rfc4733);
                next = self.rfc4733.poll_digit();
            }
        } else if let Some(law) = audio_codec {
            if !self.inband_enabled || continuity == Continuity::Old {
                return verdict;
            }
            if continuity == Continuity::Break {
                self.inband.reset();
            }
            let mut pcm = [0i16; SAMPLES_PER_FRAME];
            for chunk in pkt.payload.chunks(SAMPLES_PER_FRAME) {
                let n = codec::decode_to_slice(law, chunk, &mut pcm);
                let mut next = self.inband.process(&pcm[..n]);
                while let Some(d) = next {
                    self.push_digit(d, DigitSource::Inband);
                    next = self.inband.poll_digit();
                }
            }
        } else {
            self.stats.unknown_payload_type += 1;
        }
        verdict
    }

    /// Whether an unlatched stream may latch to `from`: the SDP address itself, or the
    /// signalling IP within the latch window; never a forbidden address.
    fn may_latch(&self, now: Instant, from: SocketAddr) -> bool {
        if self.policy.forbids(from) {
            return false;
        }
        self.sdp_remote == Some(from)
            || (self.policy.signalling_ip == Some(from.ip()) && now <= self.latch_until)
    }

    /// A packet from a source that does not own the stream: counted, logged sampled (the
    /// 1st, 2nd, 4th, 8th, ... of the leg), never decoded.
    fn foreign(&mut self, from: SocketAddr) -> RtpVerdict {
        self.stats.foreign_dropped += 1;
        let n = self.stats.foreign_dropped;
        if n.is_power_of_two() {
            tracing::info!(%from, dropped = n, latched = ?self.latched, "RTP from a source that does not own the call dropped");
        }
        RtpVerdict::Dropped
    }

    /// Expires RFC 4733 events and checks the RTP timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.rfc4733.handle_timeout(now);
        if self.rtp_deadline().is_some_and(|deadline| now >= deadline) {
            self.timeout_fired = true;
            self.events.push_back(MediaEvent::RtpTimeout);
        }
    }

    // ---- mutators ----

    /// Applies a new negotiation (re-INVITE): codec, telephone-event PT, remote, direction.
    pub fn update(&mut self, now: Instant, neg: &Negotiated) {
        let was_sending = self.is_sending();
        self.codec = neg.codec;
        self.player.set_codec(neg.codec);
        self.telephone_event = neg.telephone_event;
        if !self.rfc4733_seen {
            let wanted = self.inband_mode.wanted(neg.telephone_event);
            if wanted && !self.inband_enabled {
                self.inband.reset();
            }
            self.inband_enabled = wanted;
        }
        if neg.remote != self.sdp_remote {
            // The dialog moved the stream: the new address (or the signalling IP, within a
            // new window) may latch; the old source no longer owns it.
            self.sdp_remote = neg.remote;
            self.latched = None;
            self.sdp_verified = false;
            self.latch_until = now + self.policy.latch_window;
        }
        self.direction = neg.direction;
        if self.is_sending() && !was_sending {
            self.player.mark_next();
        }
        // A fresh inactivity window: media may (re)start only now, e.g. after unhold.
        self.last_rx = now;
        self.timeout_fired = false;
    }

    /// Replaces what plays with `prompts` (back to back).
    pub fn play(&mut self, prompts: &[PromptId]) {
        self.events.retain(|e| *e != MediaEvent::PlaybackFinished);
        self.player.play(prompts);
    }

    /// Like [`MediaSession::play`], but the list repeats gaplessly until replaced or
    /// stopped, with no `PlaybackFinished` per round (hold music). A list without audio
    /// reports `PlaybackFinished` at once.
    pub fn play_looped(&mut self, prompts: &[PromptId]) {
        self.events.retain(|e| *e != MediaEvent::PlaybackFinished);
        self.player.play_looped(prompts);
    }

    /// Barge-in: the next packet is silence; no `PlaybackFinished` for the stopped run.
    pub fn stop_playback(&mut self) {
        self.events.retain(|e| *e != MediaEvent::PlaybackFinished);
        self.player.stop();
    }

    /// Bridge mode on or off (see "Bridge" above). Turning it on stops what plays (no
    /// `PlaybackFinished` for it) and hands the outgoing stream to the relay; turning it off
    /// hands the stream back to the player, which sends from its next slot on (what was
    /// `play`ed meanwhile, else comfort silence) with the sequence continuing from the last
    /// relayed packet, a timestamp on real time, and the marker bit.
    pub fn set_bridged(&mut self, now: Instant, bridged: bool) {
        if bridged == self.bridged {
            return;
        }
        self.bridged = bridged;
        if bridged {
            self.stop_playback();
            // The relay starts where the player's next packet would have been: its sequence
            // number, and the timestamp of that slot at the slot's time.
            self.relay.take_over(
                self.player.next_sequence(),
                self.player.next_timestamp(),
                self.player.poll_timeout(),
            );
        } else {
            // Slots that went by entirely are gone; the one under way now is sent.
            if let Some(t) = now.checked_sub(PTIME) {
                self.player.idle(t);
            }
            let due = self.player.poll_timeout();
            self.player
                .resume(self.relay.next_sequence(), self.relay.timestamp_at(due));
            // Their state is from before the bridge: stale.
            self.inband.reset();
            self.rfc4733.reset();
        }
    }

    /// Rewrites `packet`, received on the other leg of a bridged call and accepted there
    /// ([`RtpVerdict::Accepted`]; `from` is that leg's [`MediaSession::relay_source`]), in
    /// place into this leg's next outgoing packet, and returns where to send it. `None`:
    /// do not send (not bridged, on hold or sendonly-to-us, no destination yet, or a packet
    /// this leg cannot carry; see [`crate::media::relay`]). Allocates nothing, copies nothing.
    pub fn relay_in_place(
        &mut self,
        now: Instant,
        packet: &mut [u8],
        from: RelaySource,
    ) -> Option<SocketAddr> {
        if !self.bridged {
            // The player owns the stream: a second source on our SSRC would corrupt it.
            self.stats.relay_dropped += 1;
            return None;
        }
        let Some(dst) = self.destination().filter(|_| self.direction.sends()) else {
            self.stats.packets_suppressed += 1;
            self.relay.interrupt();
            return None;
        };
        match self
            .relay
            .rewrite(now, packet, from, self.codec, self.telephone_event)
        {
            Ok(()) => {
                self.stats.packets_sent += 1;
                Some(dst)
            }
            Err(_) => {
                self.stats.relay_dropped += 1;
                None
            }
        }
    }

    // ---- poll ----

    /// If a packet is due, writes it into `out` and returns where to send it. Call in a
    /// loop until `None`. While on hold (or with no destination yet) due slots are consumed
    /// inside, so playback keeps its schedule, and `None` is returned; `out` is then not
    /// written. While bridged it always returns `None` (the relay sends); keep calling it,
    /// so the player's clock keeps up.
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        prompts: &PromptSet,
        out: &mut Vec<u8>,
    ) -> Option<SocketAddr> {
        if self.bridged {
            self.player.idle(now);
            return None;
        }
        let dst = self.destination().filter(|_| self.direction.sends());
        let sent = match dst {
            Some(_) => {
                let pt = self.codec.payload_type();
                self.player.poll_transmit(now, prompts, pt, out)
            }
            None => {
                while self.player.poll_discard(now, prompts) {
                    self.stats.packets_suppressed += 1;
                }
                false
            }
        };
        while let Some(PlayerEvent::Finished) = self.player.poll_event() {
            self.events.push_back(MediaEvent::PlaybackFinished);
        }
        if sent {
            self.stats.packets_sent += 1;
            dst
        } else {
            None
        }
    }

    /// Events are waiting for [`MediaSession::poll_event`] (cheap; for the bridged hot path).
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        self.events.pop_front()
    }

    /// The earliest of: next packet, RFC 4733 event expiry, RTP timeout.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.player.poll_timeout();
        if let Some(d) = self.rfc4733.poll_timeout() {
            t = t.min(d);
        }
        if let Some(d) = self.rtp_deadline() {
            t = t.min(d);
        }
        Some(t)
    }

    // ---- internals ----

    fn push_digit(&mut self, d: Digit, source: DigitSource) {
        match source {
            DigitSource::Inband => self.stats.digits_inband += 1,
            _ => self.stats.digits_rfc4733 += 1,
        }
        self.events.push_back(MediaEvent::Digit(d, source));
    }

    /// When the RTP timeout fires, if it applies now.
    fn rtp_deadline(&self) -> Option<Instant> {
        // Hold in any form (sendonly/inactive offers, c=0.0.0.0, port 0) leaves our
        // direction without sendrecv, see `sdp::negotiate`.
        let applies = !self.rtp_timeout.is_zero()
            && !self.timeout_fired
            && self.direction == Direction::SendRecv;
        if applies {
            self.last_rx.checked_add(self.rtp_timeout)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::sdp;

    const MS: Duration = Duration::from_millis(1);
    const TE: u8 = 101;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn config(remote: Option<&str>, symmetric: bool) -> MediaConfig {
        MediaConfig {
            inband_dtmf: InbandDtmf::Always,
            codec: Codec::Pcmu,
            telephone_event: Some(TE),
            remote: remote.map(addr),
            rtp_timeout: Duration::from_secs(5),
            ssrc: 0x5151,
            initial_sequence: 1000,
            initial_timestamp: 0,
            symmetric_rtp: symmetric,
            // The tests' callers signal from 203.0.113.5 and are trusted: the rules of who
            // owns the stream have tests of their own.
            policy: MediaPolicy {
                signalling_ip: Some("203.0.113.5".parse().unwrap()),
                trust_sdp_address: true,
                latch_window: Duration::from_secs(3600),
                own_ports: vec![5060, 8080],
                own_ips: vec!["192.0.2.1".parse().unwrap()],
            },
        }
    }

    fn packet(pt: u8, seq: u16, ts: u32, ssrc: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        rtp::write(&mut v, marker, pt, seq, ts, ssrc, payload);
        v
    }

    fn silence_packet(seq: u16) -> Vec<u8> {
        packet(0, seq, u32::from(seq) * 160, 0xCA11, false, &[0xFF; 160])
    }

    fn events(s: &mut MediaSession) -> Vec<MediaEvent> {
        std::iter::from_fn(|| s.poll_event()).collect()
    }

    fn digits(s: &mut MediaSession) -> Vec<(Digit, DigitSource)> {
        events(s)
            .into_iter()
            .filter_map(|e| match e {
                MediaEvent::Digit(d, src) => Some((d, src)),
                _ => None,
            })
            .collect()
    }

    fn neg(remote: Option<&str>, direction: Direction) -> Negotiated {
        Negotiated {
            codec: Codec::Pcmu,
            telephone_event: Some(TE),
            remote: remote.map(addr),
            direction,
            media_index: 0,
            remote_ptime: None,
        }
    }

    /// Sends one RFC 4733 event the way phones do: start with marker, updates every 20 ms,
    /// the end packet three times; all with the event's start timestamp.
    fn send_event(
        s: &mut MediaSession,
        t: &mut Instant,
        from: SocketAddr,
        seq: &mut u16,
        ts: u32,
        event: u8,
    ) {
        for i in 0..8u16 {
            let end = i >= 5;
            let dur = (i.min(5) + 1) * 160;
            let payload = [
                event,
                (u8::from(end) << 7) | 10,
                (dur >> 8) as u8,
                dur as u8,
            ];
            let p = packet(TE, *seq, ts, 0xCA11, i == 0, &payload);
            s.handle_rtp(*t, from, &p);
            s.handle_timeout(*t);
            *seq = seq.wrapping_add(1);
            *t += 20 * MS;
        }
        *t += 500 * MS;
        s.handle_timeout(*t);
    }

    /// `ms` of the DTMF tone for `digit` followed by silence, as PCM (−10 dBm0 per tone).
    fn dtmf_pcm(digit: char, ms: usize, start: usize) -> Vec<i16> {
        let keys = "123A456B789C*0#D";
        let i = keys.find(digit).unwrap();
        let (lo, hi) = (
            [697.0, 770.0, 852.0, 941.0][i / 4],
            [1209.0, 1336.0, 1477.0, 1633.0][i % 4],
        );
        (0..ms * 8)
            .map(|k| {
                let t = (start + k) as f64 / 8000.0;
                let v = 7000.0 * (2.0 * std::f64::consts::PI * lo * t).sin()
                    + 7000.0 * (2.0 * std::f64::consts::PI * hi * t).sin();
                v as i16
            })
            .collect()
    }

    /// Feeds `pcm` as 20 ms packets of `law`, `seq` counting up from `*seq`.
    fn send_audio(
        s: &mut MediaSession,
        t: &mut Instant,
        from: SocketAddr,
        seq: &mut u16,
        law: Codec,
        pcm: &[i16],
    ) {
        for frame in pcm.chunks(160) {
            let mut enc = Vec::new();
            codec::encode(law, frame, &mut enc);
            let p = packet(
                law.payload_type(),
                *seq,
                u32::from(*seq) * 160,
                0xCA11,
                false,
                &enc,
            );
            s.handle_rtp(*t, from, &p);
            *seq = seq.wrapping_add(1);
            *t += 20 * MS;
        }
    }

    fn silence_pcm(ms: usize) -> Vec<i16> {
        vec![0; ms * 8]
    }

    #[test]
    fn latching_sends_to_sdp_address_until_the_first_packet_then_to_its_source() {
        let t0 = Instant::now();
        let prompts = PromptSet::default();
        let mut s = MediaSession::new(t0, config(Some("10.0.0.1:4000"), true));
        let mut out = Vec::new();
        assert_eq!(
            s.poll_transmit(t0, &prompts, &mut out),
            Some(addr("10.0.0.1:4000"))
        );
        assert_eq!(
            s.poll_transmit(t0, &prompts, &mut out),
            None,
            "one packet per slot"
        );
        let p = rtp::parse(&out).unwrap();
        assert_eq!(
            (p.payload_type, p.sequence, p.ssrc, p.marker),
            (0, 1000, 0x5151, true)
        );

        // An unknown payload type does not latch.
        let nat = addr("203.0.113.5:30000");
        s.handle_rtp(t0, nat, &packet(96, 1, 0, 0xCA11, false, &[0; 20]));
        assert_eq!(s.latched(), None);
        s.handle_rtp(t0, nat, &silence_packet(2));
        assert_eq!(s.latched(), Some(nat));
        assert_eq!(s.poll_transmit(t0 + 20 * MS, &prompts, &mut out), Some(nat));

        // Someone else's packets are dropped, and do not move the latch.
        s.handle_rtp(t0, addr("198.51.100.9:5000"), &silence_packet(3));
        assert_eq!(s.stats().foreign_dropped, 1);
        assert_eq!(s.destination(), Some(nat));

        // A session-refresh re-INVITE with the same address keeps the latch ...
        s.update(t0, &neg(Some("10.0.0.1:4000"), Direction::SendRecv));
        assert_eq!(s.destination(), Some(nat));
        // ... a new address releases it until the next packet.
        s.update(t0, &neg(Some("10.0.0.2:4000"), Direction::SendRecv));
        assert_eq!(s.destination(), Some(addr("10.0.0.2:4000")));
        let nat2 = addr("203.0.113.5:30002");
        s.handle_rtp(t0, nat2, &silence_packet(4));
        assert_eq!(s.destination(), Some(nat2));
        assert_eq!(s.stats().packets_received, 2);
    }

    #[test]
    fn without_symmetric_rtp_the_sdp_address_is_used_and_only_its_or_the_signalling_ip_accepted() {
        let t0 = Instant::now();
        let prompts = PromptSet::default();
        let mut s = MediaSession::new(t0, config(Some("10.0.0.1:4000"), false));
        s.handle_rtp(t0, addr("203.0.113.5:30000"), &silence_packet(1));
        s.handle_rtp(t0, addr("10.0.0.1:4002"), &silence_packet(2));
        s.handle_rtp(t0, addr("198.51.100.9:5000"), &silence_packet(3));
        assert_eq!(s.stats().packets_received, 2);
        assert_eq!(s.stats().foreign_dropped, 1);
        let mut out = Vec::new();
        assert_eq!(
            s.poll_transmit(t0, &prompts, &mut out),
            Some(addr("10.0.0.1:4000"))
        );
        assert_eq!(s.latched(), None);
    }

    // ---- media ownership -----------------------------------------------------------------

    const CALLER_SIP_IP: &str = "198.51.100.7";

    /// An untrusting policy: the caller signals from 198.51.100.7, latch window 2 s.
    fn owned(remote: Option<&str>) -> MediaConfig {
        MediaConfig {
            policy: MediaPolicy {
                signalling_ip: Some(CALLER_SIP_IP.parse().unwrap()),
                trust_sdp_address: false,
                latch_window: Duration::from_secs(2),
                own_ports: vec![5060, 8080],
                own_ips: vec!["192.0.2.1".parse().unwrap()],
            },
            ..config(remote, true)
        }
    }

    fn te_packet(seq: u16, digit: u8, end: bool) -> Vec<u8> {
        let payload = [digit, if end { 0x80 | 10 } else { 10 }, 0x03, 0x20];
        packet(TE, seq, 8000, 0xBAD, seq == 1, &payload)
    }

    #[test]
    fn third_party_rtp_never_latches_and_its_dtmf_is_ignored() {
        let t0 = Instant::now();
        let mut s = MediaSession::new(t0, owned(Some("198.51.100.7:4000")));
        let intruder = addr("203.0.113.66:4444");
        for seq in 1..=5 {
            s.handle_rtp(
                t0 + u32::from(seq) * 20 * MS,
                intruder,
                &te_packet(seq, 5, seq >= 4),
            );
            s.handle_rtp(t0, intruder, &silence_packet(seq));
        }
        s.handle_timeout(t0 + Duration::from_secs(1));
        assert_eq!(digits(&mut s), []);
        assert_eq!(s.latched(), None);
        assert_eq!(s.stats().foreign_dropped, 10);
        assert_eq!(s.stats().packets_received, 0);
        // The caller's own stream latches and its digits count.
        let caller = addr("198.51.100.7:4000");
        s.handle_rtp(t0, caller, &silence_packet(1));
        assert_eq!(s.latched(), Some(caller));
    }

    #[test]
    fn latched_stream_never_moves_to_a_new_source_mid_call() {
        let t0 = Instant::now();
        let prompts = PromptSet::default();
        let mut s = MediaSession::new(t0, owned(Some("198.51.100.7:4000")));
        let caller = addr("198.51.100.7:4000");
        s.handle_rtp(t0, caller, &silence_packet(1));
        // Another port on the caller's own IP, even within the window, is not the stream.
        s.handle_rtp(t0, addr("198.51.100.7:4002"), &silence_packet(2));
        s.handle_rtp(t0, addr("203.0.113.66:4444"), &silence_packet(3));
        assert_eq!(s.latched(), Some(caller));
        assert_eq!(s.stats().foreign_dropped, 2);
        let mut out = Vec::new();
        assert_eq!(s.poll_transmit(t0, &prompts, &mut out), Some(caller));
    }

    #[test]
    fn natted_caller_latches_from_the_signalling_ip_only_within_the_window() {
        let t0 = Instant::now();
        let prompts = PromptSet::default();
        // A caller behind NAT puts its private address in the SDP.
        let mut s = MediaSession::new(t0, owned(Some("10.1.1.1:4000")));
        let mut out = Vec::new();
        assert_eq!(
            s.poll_transmit(t0, &prompts, &mut out),
            None,
            "nothing to an address the caller did not signal from"
        );
        let nat = addr("198.51.100.7:31000");
        s.handle_rtp(t0 + Duration::from_secs(1), nat, &silence_packet(1));
        assert_eq!(s.latched(), Some(nat));
        assert_eq!(
            s.poll_transmit(t0 + 1020 * MS, &prompts, &mut out),
            Some(nat)
        );

        // Past the window the signalling IP no longer latches a fresh session.
        let mut late = MediaSession::new(t0, owned(Some("10.1.1.1:4000")));
        late.handle_rtp(t0 + Duration::from_secs(3), nat, &silence_packet(1));
        assert_eq!(late.latched(), None);
        assert_eq!(late.stats().foreign_dropped, 1);
    }

    #[test]
    fn sdp_naming_another_host_gets_no_media_until_it_sends_unless_trusted() {
        let t0 = Instant::now();
        let prompts = PromptSet::default();
        let victim = addr("203.0.113.99:7000");
        let mut s = MediaSession::new(t0, owned(Some("203.0.113.99:7000")));
        let mut out = Vec::new();
        for n in 0..50u32 {
            assert_eq!(s.poll_transmit(t0 + n * 20 * MS, &prompts, &mut out), None);
        }
        assert_eq!(s.stats().packets_sent, 0);
        // RTP from the SDP address itself proves it wants the stream.
        s.handle_rtp(t0 + Duration::from_secs(1), victim, &silence_packet(1));
        assert_eq!(
            s.poll_transmit(t0 + Duration::from_secs(1), &prompts, &mut out),
            Some(victim)
        );

        let mut trusted_cfg = owned(Some("203.0.113.99:7000"));
        trusted_cfg.policy.trust_sdp_address = true;
        let mut trusted = MediaSession::new(t0, trusted_cfg);
        assert_eq!(trusted.poll_transmit(t0, &prompts, &mut out), Some(victim));
    }

    #[test]
    fn media_is_never_sent_to_multicast_broadcast_discard_or_our_own_ports() {
        let t0 = Instant::now();
        let prompts = PromptSet::default();
        for bad in [
            "224.0.0.251:5004",
            "255.255.255.255:5004",
            "0.0.0.0:5004",
            "198.51.100.7:9",
            "198.51.100.7:0",
            "127.0.0.1:5060",
            "192.0.2.1:8080",
        ] {
            let mut cfg = owned(Some(bad));
            cfg.policy.trust_sdp_address = true;
            let mut s = MediaSession::new(t0, cfg);
            let mut out = Vec::new();
            assert_eq!(s.poll_transmit(t0, &prompts, &mut out), None, "{bad}");
            assert!(s.policy.forbids(addr(bad)), "{bad}");
            // Spoofed packets "from" such an address latch nothing either.
            s.handle_rtp(t0, addr(bad), &silence_packet(1));
            assert_eq!(s.latched(), None, "{bad}");
        }
        let policy = owned(None).policy;
        assert!(!policy.forbids(addr("127.0.0.1:5062")));
        assert!(
            !policy.forbids(addr("198.51.100.7:5060")),
            "another host's 5060 is not ours"
        );
    }

    #[test]
    fn reinvite_to_a_new_address_reopens_latching_for_that_address() {
        let t0 = Instant::now();
        let mut s = MediaSession::new(t0, owned(Some("198.51.100.7:4000")));
        s.handle_rtp(t0, addr("198.51.100.7:4000"), &silence_packet(1));
        let later = t0 + Duration::from_secs(60);
        s.update(later, &neg(Some("198.51.100.7:4100"), Direction::SendRecv));
        assert_eq!(s.latched(), None);
        s.handle_rtp(later, addr("203.0.113.66:4444"), &silence_packet(2));
        assert_eq!(s.latched(), None);
        s.handle_rtp(later, addr("198.51.100.7:4100"), &silence_packet(3));
        assert_eq!(s.latched(), Some(addr("198.51.100.7:4100")));
    }

    #[test]
    fn no_destination_means_nothing_sent_until_latched() {
        let t0 = Instant::now();
        let prompts = PromptSet::default();
        let mut s = MediaSession::new(t0, config(None, true));
        let mut out = Vec::new();
        for n in 0..=5u32 {
            assert_eq!(s.poll_transmit(t0 + n * 20 * MS, &prompts, &mut out), None);
        }
        assert_eq!(s.stats().packets_suppressed, 6);
        let from = addr("203.0.113.5:30000");
        s.handle_rtp(t0 + 100 * MS, from, &silence_packet(1));
        assert_eq!(
            s.poll_transmit(t0 + 120 * MS, &prompts, &mut out),
            Some(from)
        );
        let p = rtp::parse(&out).unwrap();
        assert_eq!(
            p.sequence, 1000,
            "no sequence numbers were used while unsent"
        );
        assert_eq!(p.timestamp, 6 * 160, "timestamps follow real time");
        assert!(p.marker);
    }

    #[test]
    fn rfc4733_digits_surface_as_events() {
        let mut t = Instant::now();
        let mut s = MediaSession::new(t, config(Some("10.0.0.1:4000"), true));
        let from = addr("203.0.113.5:30000");
        let mut seq = 7;
        send_event(&mut s, &mut t, from, &mut seq, 16000, 5);
        send_event(&mut s, &mut t, from, &mut seq, 32000, 11);
        send_event(&mut s, &mut t, from, &mut seq, 48000, 5);
        assert_eq!(
            digits(&mut s),
            [
                (Digit::D5, DigitSource::Rfc4733),
                (Digit::Pound, DigitSource::Rfc4733),
                (Digit::D5, DigitSource::Rfc4733)
            ]
        );
        assert_eq!(s.stats().digits_rfc4733, 3);
        assert!(!s.inband_enabled());
    }

    #[test]
    fn inband_tone_in_g711_packets_surfaces_as_inband_digit() {
        for law in [Codec::Pcmu, Codec::Pcma] {
            let mut t = Instant::now();
            let mut s = MediaSession::new(t, config(Some("10.0.0.1:4000"), true));
            let from = addr("203.0.113.5:30000");
            let mut seq = 1;
            send_audio(&mut s, &mut t, from, &mut seq, law, &silence_pcm(200));
            send_audio(&mut s, &mut t, from, &mut seq, law, &dtmf_pcm('7', 100, 0));
            send_audio(&mut s, &mut t, from, &mut seq, law, &silence_pcm(200));
            send_audio(&mut s, &mut t, from, &mut seq, law, &dtmf_pcm('#', 100, 0));
            send_audio(&mut s, &mut t, from, &mut seq, law, &silence_pcm(200));
            assert_eq!(
                digits(&mut s),
                [
                    (Digit::D7, DigitSource::Inband),
                    (Digit::Pound, DigitSource::Inband)
                ],
                "{law:?}"
            );
            assert_eq!(s.stats().digits_inband, 2);
        }
    }

    #[test]
    fn inband_detection_is_off_once_rfc4733_was_seen() {
        let mut t = Instant::now();
        let mut s = MediaSession::new(t, config(Some("10.0.0.1:4000"), true));
        let from = addr("203.0.113.5:30000");
        let mut seq = 1;
        send_event(&mut s, &mut t, from, &mut seq, 160, 1);
        // The phone also leaks the tone in-band: it must not be reported twice.
        send_audio(
            &mut s,
            &mut t,
            from,
            &mut seq,
            Codec::Pcmu,
            &dtmf_pcm('1', 100, 0),
        );
        send_audio(
            &mut s,
            &mut t,
            from,
            &mut seq,
            Codec::Pcmu,
            &dtmf_pcm('9', 100, 0),
        );
        send_audio(
            &mut s,
            &mut t,
            from,
            &mut seq,
            Codec::Pcmu,
            &silence_pcm(200),
        );
        assert_eq!(digits(&mut s), [(Digit::D1, DigitSource::Rfc4733)]);
    }

    #[test]
    fn inband_detector_is_reset_on_sequence_gaps_and_ssrc_changes() {
        // Two 20 ms pieces of tone: contiguous they make a 40 ms digit (Q.24 accepts
        // ≥ 40 ms), separated by lost packets or a new SSRC they are two 20 ms blips.
        let tone = dtmf_pcm('3', 40, 0);
        let run = |gap: u16, new_ssrc: bool| {
            let mut t = Instant::now();
            let mut s = MediaSession::new(t, config(Some("10.0.0.1:4000"), false));
            let from = addr("203.0.113.5:30000");
            let mut seq = 1;
            send_audio(
                &mut s,
                &mut t,
                from,
                &mut seq,
                Codec::Pcmu,
                &silence_pcm(100),
            );
            send_audio(&mut s, &mut t, from, &mut seq, Codec::Pcmu, &tone[..160]);
            seq = seq.wrapping_add(gap);
            let mut enc = Vec::new();
            codec::encode(Codec::Pcmu, &tone[160..], &mut enc);
            let ssrc = if new_ssrc { 0xBEEF } else { 0xCA11 };
            s.handle_rtp(
                t,
                from,
                &packet(0, seq, u32::from(seq) * 160, ssrc, false, &enc),
            );
            seq = seq.wrapping_add(1);
            t += 20 * MS;
            send_audio(
                &mut s,
                &mut t,
                from,
                &mut seq,
                Codec::Pcmu,
                &silence_pcm(100),
            );
            digits(&mut s)
        };
        assert_eq!(
            run(0, false),
            [(Digit::D3, DigitSource::Inband)],
            "contiguous"
        );
        assert_eq!(run(3, false), [], "gap of 3 lost packets");
        assert_eq!(run(0, true), [], "SSRC change");
    }

    #[test]
    fn duplicates_are_not_fed_twice_and_restarted_sequences_recover() {
        let mut t = Instant::now();
        let mut s = MediaSession::new(t, config(None, false));
        let from = addr("203.0.113.5:30000");
        let tone = dtmf_pcm('6', 100, 0);
        let mut seq = 40_000;
        send_audio(
            &mut s,
            &mut t,
            from,
            &mut seq,
            Codec::Pcmu,
            &silence_pcm(100),
        );
        // The same tone packets, each delivered twice.
        for frame in tone.chunks(160) {
            let mut enc = Vec::new();
            codec::encode(Codec::Pcmu, frame, &mut enc);
            let p = packet(0, seq, 0, 0xCA11, false, &enc);
            s.handle_rtp(t, from, &p);
            s.handle_rtp(t, from, &p);
            seq += 1;
            t += 20 * MS;
        }
        send_audio(
            &mut s,
            &mut t,
            from,
            &mut seq,
            Codec::Pcmu,
            &silence_pcm(100),
        );
        assert_eq!(digits(&mut s), [(Digit::D6, DigitSource::Inband)]);
        // The phone restarts its sequence numbers (same SSRC): detection still works.
        let mut seq = 10;
        send_audio(
            &mut s,
            &mut t,
            from,
            &mut seq,
            Codec::Pcmu,
            &dtmf_pcm('2', 100, 0),
        );
        send_audio(
            &mut s,
            &mut t,
            from,
            &mut seq,
            Codec::Pcmu,
            &silence_pcm(100),
        );
        assert_eq!(digits(&mut s), [(Digit::D2, DigitSource::Inband)]);
    }

    #[test]
    fn rtp_timeout_fires_once_and_rearms_on_traffic() {
        let t0 = Instant::now();
        let mut s = MediaSession::new(t0, config(Some("10.0.0.1:4000"), true));
        assert_eq!(s.poll_timeout(), Some(t0), "first packet is due now");
        let mut out = Vec::new();
        let prompts = PromptSet::default();
        while s.poll_transmit(t0, &prompts, &mut out).is_some() {}
        assert_eq!(s.poll_timeout(), Some(t0 + 20 * MS));
        s.handle_timeout(t0 + 4999 * MS);
        assert_eq!(events(&mut s), []);
        s.handle_timeout(t0 + 5000 * MS);
        assert_eq!(events(&mut s), [MediaEvent::RtpTimeout]);
        s.handle_timeout(t0 + 9000 * MS);
        assert_eq!(events(&mut s), [], "reported once");

        let t1 = t0 + 10 * Duration::from_secs(1);
        s.handle_rtp(t1, addr("203.0.113.5:30000"), &silence_packet(1));
        // Re-armed: the next timeout is 5 s after the last packet.
        s.handle_timeout(t1 + 4 * Duration::from_secs(1));
        assert_eq!(events(&mut s), []);
        s.handle_timeout(t1 + 5 * Duration::from_secs(1));
        assert_eq!(events(&mut s), [MediaEvent::RtpTimeout]);
    }

    #[test]
    fn rtp_timeout_is_the_next_deadline_when_nothing_else_is_sooner() {
        let t0 = Instant::now();
        let mut cfg = config(Some("10.0.0.1:4000"), true);
        cfg.rtp_timeout = Duration::from_millis(10);
        let s = MediaSession::new(t0 + 15 * MS, cfg);
        assert_eq!(s.poll_timeout(), Some(t0 + 15 * MS));
        let mut cfg = config(Some("10.0.0.1:4000"), true);
        cfg.rtp_timeout = Duration::ZERO;
        let mut s = MediaSession::new(t0, cfg);
        s.handle_timeout(t0 + Duration::from_secs(3600));
        assert_eq!(events(&mut s), [], "zero disables the timeout");
    }

    #[test]
    fn hold_stops_sending_and_the_timeout_then_unhold_resumes_with_marker() {
        let t0 = Instant::now();
        let prompts = PromptSet::from_prompts(vec![("p".into(), vec![500; 160 * 10])]);
        let id = prompts.lookup("p").unwrap();
        let mut s = MediaSession::new(t0, config(Some("10.0.0.1:4000"), true));
        let mut out = Vec::new();
        let mut sent = 0;
        let sweep = |s: &mut MediaSession, n: u32, out: &mut Vec<u8>| {
            let mut k = 0;
            while s.poll_transmit(t0 + n * 20 * MS, &prompts, out).is_some() {
                k += 1;
            }
            k
        };
        sent += sweep(&mut s, 0, &mut out);
        s.play(&[id]);

        // The caller puts us on hold (sendonly → we are recvonly).
        let held = sdp::negotiate(
            &sdp::parse(
                b"v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 0 101\r\n\
a=rtpmap:101 telephone-event/8000\r\na=sendonly\r\n",
            )
            .unwrap(),
            &[Codec::Pcmu],
        )
        .unwrap();
        s.update(t0, &held);
        assert!(!s.is_sending());
        for n in 1..=100 {
            sent += sweep(&mut s, n, &mut out);
            s.handle_timeout(t0 + n * 20 * MS);
        }
        assert_eq!(sent, 1, "nothing sent on hold");
        // The prompt kept playing out during the hold; no timeout although nothing came in.
        assert_eq!(events(&mut s), [MediaEvent::PlaybackFinished]);
        s.handle_timeout(t0 + Duration::from_secs(600));
        assert_eq!(events(&mut s), []);
        assert!(s.poll_timeout().unwrap() <= t0 + 101 * 20 * MS);

        // Unhold.
        let t1 = t0 + 101 * 20 * MS;
        s.update(t1, &neg(Some("10.0.0.1:4000"), Direction::SendRecv));
        assert!(s.is_sending());
        assert_eq!(
            s.poll_transmit(t1, &prompts, &mut out),
            Some(addr("10.0.0.1:4000"))
        );
        let p = rtp::parse(&out).unwrap();
        assert!(p.marker);
        assert_eq!(p.sequence, 1001, "sequence continues without a gap");
        assert_eq!(
            p.timestamp,
            101 * 160,
            "timestamp reflects the time on hold"
        );
        // The timeout applies again, from the unhold.
        s.handle_timeout(t1 + 5 * Duration::from_secs(1));
        assert_eq!(events(&mut s), [MediaEvent::RtpTimeout]);

        // RFC 2543 hold (c=0.0.0.0) stops sending too, even when latched.
        s.handle_rtp(t1, addr("203.0.113.5:30000"), &silence_packet(9));
        let zero = sdp::negotiate(
            &sdp::parse(b"v=0\r\nc=IN IP4 0.0.0.0\r\nm=audio 4000 RTP/AVP 0\r\n").unwrap(),
            &[Codec::Pcmu],
        )
        .unwrap();
        s.update(t1, &zero);
        assert!(!s.is_sending());
        assert_eq!(
            s.poll_transmit(t1 + Duration::from_secs(1), &prompts, &mut out),
            None
        );
    }

    #[test]
    fn playback_events_and_barge_in() {
        let t0 = Instant::now();
        let prompts = PromptSet::from_prompts(vec![("p".into(), vec![500; 320])]);
        let id = prompts.lookup("p").unwrap();
        let mut s = MediaSession::new(t0, config(Some("10.0.0.1:4000"), false));
        let mut out = Vec::new();
        s.play(&[id]);
        assert!(s.is_playing());
        for n in 0..2u32 {
            assert!(
                s.poll_transmit(t0 + n * 20 * MS, &prompts, &mut out)
                    .is_some()
            );
        }
        assert!(!s.is_playing());
        assert_eq!(events(&mut s), [MediaEvent::PlaybackFinished]);

        s.play(&[id]);
        assert!(s.poll_transmit(t0 + 40 * MS, &prompts, &mut out).is_some());
        s.stop_playback();
        assert!(s.poll_transmit(t0 + 60 * MS, &prompts, &mut out).is_some());
        assert_eq!(rtp::parse(&out).unwrap().payload, &[0xFF; 160]);
        assert_eq!(events(&mut s), [], "no PlaybackFinished after barge-in");
    }

    #[test]
    fn update_switches_codec_and_telephone_event_pt() {
        let t0 = Instant::now();
        let prompts = PromptSet::default();
        let mut s = MediaSession::new(t0, config(Some("10.0.0.1:4000"), false));
        let mut n = neg(Some("10.0.0.1:4000"), Direction::SendRecv);
        n.codec = Codec::Pcma;
        n.telephone_event = Some(96);
        s.update(t0, &n);
        let mut out = Vec::new();
        s.poll_transmit(t0, &prompts, &mut out).unwrap();
        let p = rtp::parse(&out).unwrap();
        assert_eq!(p.payload_type, 8);
        assert_eq!(p.payload, &[0xD5; 160]);
        let mut t = t0;
        let mut seq = 1;
        send_event(&mut s, &mut t, addr("203.0.113.5:30000"), &mut seq, 0, 2);
        let buf = packet(96, seq, 160, 0xCA11, true, &[4, 0, 0, 160]);
        // PT 101 is no longer telephone-event: the first events were unknown payload.
        assert_eq!(digits(&mut s), []);
        s.handle_rtp(t, addr("203.0.113.5:30000"), &buf);
        s.handle_timeout(t + Duration::from_secs(1));
        assert_eq!(digits(&mut s), [(Digit::D4, DigitSource::Rfc4733)]);
    }

    #[test]
    fn per_call_state_is_small() {
        // Budget is 32 KB per call in total; the session itself (player, both detectors)
        // is about 1.8 KB inline plus a few hundred bytes of small queues.
        let size = std::mem::size_of::<MediaSession>();
        assert!(size <= 4096, "MediaSession is {size} bytes");
    }

    #[test]
    fn rtcp_garbage_and_odd_payloads_never_panic() {
        let t0 = Instant::now();
        let prompts = PromptSet::default();
        let mut s = MediaSession::new(t0, config(Some("10.0.0.1:4000"), false));
        let from = addr("203.0.113.5:30000");
        s.handle_rtp(t0, from, &[0x80, 201, 0, 1, 0, 0, 0, 1]);
        s.handle_rtp(t0, from, &[]);
        s.handle_rtp(t0, from, &[0x80; 11]);
        let st = s.stats();
        assert_eq!(
            (st.rtcp_ignored, st.garbage_dropped, st.packets_received),
            (1, 2, 0)
        );

        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut out = Vec::new();
        let mut t = t0;
        for i in 0..20_000u32 {
            let len = (next() % 400) as usize;
            let mut d: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if i % 2 == 0 && d.len() >= 12 {
                // Valid headers with random PT (often ours) and random payloads.
                d[0] = 0x80;
                d[1] = [0u8, 8, TE, 13, 96, (next() % 128) as u8][(next() % 6) as usize];
            }
            s.handle_rtp(t, from, &d);
            if i % 10 == 0 {
                t += 20 * MS;
                s.handle_timeout(t);
                while s.poll_transmit(t, &prompts, &mut out).is_some() {}
                while s.poll_event().is_some() {}
            }
        }
        let st = s.stats();
        assert!(st.garbage_dropped > 0 && st.packets_received > 0, "{st:?}");
    }

    #[test]
    fn auto_inband_runs_only_without_telephone_event() {
        let t0 = Instant::now();
        let mut with_te = config(Some("127.0.0.1:4000"), true);
        with_te.inband_dtmf = InbandDtmf::Auto;
        with_te.telephone_event = Some(101);
        assert!(!MediaSession::new(t0, with_te.clone()).inband_enabled());
        with_te.telephone_event = None;
        assert!(MediaSession::new(t0, with_te.clone()).inband_enabled());
        with_te.inband_dtmf = InbandDtmf::Never;
        assert!(!MediaSession::new(t0, with_te).inband_enabled());
    }

    // ---- bridge / relay ----

    const AGENT: &str = "10.0.0.2:4000";

    fn pcmu_te() -> RelaySource {
        RelaySource {
            codec: Codec::Pcmu,
            telephone_event: Some(TE),
        }
    }

    /// (marker, pt, seq, ts, ssrc) of a packet.
    fn fields(buf: &[u8]) -> (bool, u8, u16, u32, u32) {
        let p = rtp::parse(buf).unwrap();
        (p.marker, p.payload_type, p.sequence, p.timestamp, p.ssrc)
    }

    fn ten_frame_prompt() -> (PromptSet, PromptId) {
        let prompts = PromptSet::from_prompts(vec![("p".into(), vec![500; 160 * 10])]);
        let id = prompts.lookup("p").unwrap();
        (prompts, id)
    }

    #[test]
    fn sequence_continues_from_prompt_stream_across_switch() {
        let t0 = Instant::now();
        let (prompts, id) = ten_frame_prompt();
        let mut b = MediaSession::new(t0, config(Some(AGENT), false));
        let mut out = Vec::new();
        b.play(&[id]);
        for n in 0..3u32 {
            assert_eq!(
                b.poll_transmit(t0 + n * 20 * MS, &prompts, &mut out),
                Some(addr(AGENT))
            );
            let (_, _, seq, ts, _) = fields(&out);
            assert_eq!((seq, ts), (1000 + n as u16, 160 * n));
        }
        b.set_bridged(t0 + 50 * MS, true);
        assert!(b.is_bridged() && !b.is_playing());
        // The shard keeps sweeping; the player sends nothing.
        for n in 3..5u32 {
            assert_eq!(b.poll_transmit(t0 + n * 20 * MS, &prompts, &mut out), None);
        }
        // The caller's packets, in the caller's numbering, 100 ms after the prompt's start.
        let mut p = packet(0, 7000, 3_000_000, 0xA9E7, false, &[0x55; 160]);
        assert_eq!(
            b.relay_in_place(t0 + 100 * MS, &mut p, pcmu_te()),
            Some(addr(AGENT))
        );
        assert_eq!(
            fields(&p),
            (true, 0, 1003, 320 + 60 * 8, 0x5151),
            "seq +1, ts advanced by the 60 ms since the last frame went out, marker"
        );
        let mut p = packet(0, 7001, 3_000_160, 0xA9E7, false, &[0x55; 160]);
        assert_eq!(
            b.relay_in_place(t0 + 120 * MS, &mut p, pcmu_te()),
            Some(addr(AGENT))
        );
        assert_eq!(fields(&p), (false, 0, 1004, 960, 0x5151));
        assert_eq!(b.stats().packets_sent, 5);
        assert_eq!(events(&mut b), [], "the interrupted prompt reports nothing");
    }

    #[test]
    fn unbridge_resumes_prompts_with_continuous_sequence() {
        let t0 = Instant::now();
        let (prompts, id) = ten_frame_prompt();
        let mut b = MediaSession::new(t0, config(Some(AGENT), false));
        let mut out = Vec::new();
        assert!(b.poll_transmit(t0, &prompts, &mut out).is_some()); // seq 1000, ts 0
        b.set_bridged(t0 + 10 * MS, true);
        for n in 1..=5u32 {
            assert_eq!(b.poll_transmit(t0 + n * 20 * MS, &prompts, &mut out), None);
            // The last one carries 60 ms (a phone switching to ptime 60).
            let len = if n == 5 { 480 } else { 160 };
            let mut p = packet(0, 6999 + n as u16, 160 * n, 0xA9E7, false, &vec![0x55; len]);
            assert!(
                b.relay_in_place(t0 + n * 20 * MS, &mut p, pcmu_te())
                    .is_some()
            );
            let (_, _, seq, ts, _) = fields(&p);
            assert_eq!((seq, ts), (1000 + n as u16, 160 * n));
        }
        // Back to prompts (the agent hung up); the bridge ends between two slots.
        b.set_bridged(t0 + 105 * MS, false);
        assert!(!b.is_bridged());
        b.play(&[id]);
        assert_eq!(b.poll_transmit(t0 + 110 * MS, &prompts, &mut out), None);
        assert!(b.poll_transmit(t0 + 120 * MS, &prompts, &mut out).is_some());
        let p = rtp::parse(&out).unwrap();
        assert!(p.marker, "the switch back is a new talkspurt");
        assert_eq!(p.sequence, 1006, "continues from the last relayed packet");
        assert_eq!(
            p.timestamp,
            800 + 480,
            "never before the end of the relayed 60 ms"
        );
        assert_eq!(
            p.payload,
            prompts.get(id).unwrap().frame(Codec::Pcmu, 0).unwrap()
        );
        assert!(b.poll_transmit(t0 + 140 * MS, &prompts, &mut out).is_some());
        assert_eq!(fields(&out), (false, 0, 1007, 1280 + 160, 0x5151));

        // Not bridged: relaying would put a second source on our SSRC.
        let mut p = packet(0, 7006, 1120, 0xA9E7, false, &[0x55; 160]);
        assert_eq!(b.relay_in_place(t0 + 140 * MS, &mut p, pcmu_te()), None);
        assert_eq!(b.stats().relay_dropped, 1);
        assert_eq!(b.stats().packets_sent, 1 + 5 + 2);
    }

    #[test]
    fn unbridge_without_relayed_packets_keeps_the_players_clock() {
        let t0 = Instant::now();
        let (prompts, _) = ten_frame_prompt();
        let mut b = MediaSession::new(t0, config(Some(AGENT), false));
        let mut out = Vec::new();
        assert!(b.poll_transmit(t0, &prompts, &mut out).is_some());
        b.set_bridged(t0, true);
        // Nobody polls for a second (no sweep calls for this leg): the clock still holds.
        b.set_bridged(t0 + 1005 * MS, false);
        assert_eq!(
            b.poll_transmit(t0 + 1005 * MS, &prompts, &mut out),
            Some(addr(AGENT))
        );
        assert_eq!(fields(&out), (true, 0, 1001, 50 * 160, 0x5151));
        assert_eq!(
            b.stats().packets_skipped,
            0,
            "idle slots are not late sweeps"
        );
    }

    #[test]
    fn bridged_session_sends_no_prompts() {
        let mut t = Instant::now();
        let t0 = t;
        let (prompts, id) = ten_frame_prompt();
        let mut s = MediaSession::new(t0, config(Some("10.0.0.1:4000"), true));
        let mut out = Vec::new();
        s.play(&[id]);
        assert!(s.poll_transmit(t0, &prompts, &mut out).is_some());
        s.set_bridged(t0 + 5 * MS, true);
        s.play(&[id]); // waits for the end of the bridge
        for n in 1..=50u32 {
            assert_eq!(s.poll_transmit(t0 + n * 20 * MS, &prompts, &mut out), None);
        }
        assert_eq!(
            events(&mut s),
            [],
            "no PlaybackFinished, no comfort silence"
        );
        let st = s.stats();
        assert_eq!((st.packets_sent, st.packets_suppressed), (1, 0));

        // DTMF detection is off (the digits go to the agent), latching and counters work.
        let from = addr("203.0.113.5:30000");
        let mut seq = 1;
        send_event(&mut s, &mut t, from, &mut seq, 160, 1);
        send_audio(
            &mut s,
            &mut t,
            from,
            &mut seq,
            Codec::Pcmu,
            &dtmf_pcm('7', 100, 0),
        );
        send_audio(
            &mut s,
            &mut t,
            from,
            &mut seq,
            Codec::Pcmu,
            &silence_pcm(200),
        );
        assert_eq!(digits(&mut s), []);
        assert_eq!(s.latched(), Some(from));
        assert_eq!(
            s.handle_rtp(t, addr("198.51.100.9:4000"), &silence_packet(seq)),
            RtpVerdict::Dropped
        );
        let st = s.stats();
        assert_eq!((st.packets_received, st.foreign_dropped), (8 + 5 + 10, 1));
        assert_eq!(st.digits_rfc4733 + st.digits_inband, 0);
        // The RTP timeout still applies.
        s.handle_timeout(t + Duration::from_secs(5));
        assert_eq!(events(&mut s), [MediaEvent::RtpTimeout]);

        // After the bridge, the prompt played meanwhile starts and digits count again.
        let t1 = t + Duration::from_secs(6);
        s.set_bridged(t1, false);
        assert!(s.poll_transmit(t1, &prompts, &mut out).is_some());
        assert_eq!(
            rtp::parse(&out).unwrap().payload,
            prompts.get(id).unwrap().frame(Codec::Pcmu, 0).unwrap()
        );
        let mut t = t1;
        send_event(&mut s, &mut t, from, &mut seq, 32_000, 9);
        assert_eq!(digits(&mut s), [(Digit::D9, DigitSource::Rfc4733)]);
    }

    #[test]
    fn handle_rtp_verdict_says_what_may_be_relayed() {
        let t0 = Instant::now();
        let mut s = MediaSession::new(t0, config(None, true));
        let x = addr("203.0.113.5:30000");
        let y = addr("198.51.100.9:4000");
        let p = |pt: u8, seq: u16| packet(pt, seq, 0, 0xCA11, false, &[0xFF; 160]);
        assert_eq!(
            s.handle_rtp(t0, x, &p(96, 1)),
            RtpVerdict::Dropped,
            "not ours"
        );
        assert_eq!(
            s.handle_rtp(t0, x, &p(0, 2)),
            RtpVerdict::Accepted,
            "latches"
        );
        assert_eq!(
            s.handle_rtp(t0, y, &p(0, 3)),
            RtpVerdict::Dropped,
            "foreign"
        );
        assert_eq!(s.handle_rtp(t0, x, &p(8, 4)), RtpVerdict::Accepted);
        assert_eq!(s.handle_rtp(t0, x, &p(TE, 5)), RtpVerdict::Accepted);
        assert_eq!(s.handle_rtp(t0, x, &p(PT_CN, 6)), RtpVerdict::Accepted);
        assert_eq!(s.handle_rtp(t0, x, &p(96, 7)), RtpVerdict::Dropped);
        let rr = [0x80, 201, 0, 1, 0, 0, 0, 1];
        assert_eq!(s.handle_rtp(t0, x, &rr), RtpVerdict::Dropped, "RTCP");
        assert_eq!(s.handle_rtp(t0, x, &[0x80; 11]), RtpVerdict::Dropped);
    }

    #[test]
    fn relay_blocked_while_on_hold() {
        let t0 = Instant::now();
        let mut b = MediaSession::new(t0, config(Some(AGENT), false));
        b.set_bridged(t0, true);
        let relay = |b: &mut MediaSession, k: u32| {
            let mut p = packet(0, 7000 + k as u16, 160 * k, 0xA9E7, false, &[0x55; 160]);
            b.relay_in_place(t0 + k * 20 * MS, &mut p, pcmu_te())
                .map(|d| (d, fields(&p)))
        };
        assert_eq!(
            relay(&mut b, 0),
            Some((addr(AGENT), (true, 0, 1000, 0, 0x5151)))
        );
        assert_eq!(relay(&mut b, 1).unwrap().1, (false, 0, 1001, 160, 0x5151));
        // The agent puts the call on hold (sendonly: we are recvonly).
        b.update(t0 + 30 * MS, &neg(Some(AGENT), Direction::RecvOnly));
        for k in 2..6 {
            assert_eq!(relay(&mut b, k), None);
        }
        b.update(t0 + 110 * MS, &neg(Some(AGENT), Direction::Inactive));
        assert_eq!(relay(&mut b, 6), None);
        assert_eq!(b.stats().packets_suppressed, 5);
        // Off hold: the sequence continues without a gap, the timestamp shows the pause.
        b.update(t0 + 130 * MS, &neg(Some(AGENT), Direction::SendRecv));
        assert_eq!(
            relay(&mut b, 7),
            Some((addr(AGENT), (true, 0, 1002, 160 + 120 * 8, 0x5151)))
        );
        assert_eq!(relay(&mut b, 8).unwrap().1, (false, 0, 1003, 1280, 0x5151));
        // No address at all (c=0.0.0.0) blocks too.
        b.update(t0 + 170 * MS, &neg(None, Direction::SendRecv));
        assert_eq!(relay(&mut b, 9), None);
        let st = b.stats();
        assert_eq!((st.packets_sent, st.packets_suppressed), (4, 6));
    }

    #[test]
    fn bridged_legs_with_different_laws_transcode_both_ways() {
        let t0 = Instant::now();
        let caller = addr("203.0.113.5:30000");
        let mut a = MediaSession::new(t0, config(Some(caller.to_string().as_str()), true));
        let mut cfg = config(Some(AGENT), true);
        cfg.codec = Codec::Pcma;
        cfg.telephone_event = Some(96);
        cfg.ssrc = 0xB0B;
        let mut b = MediaSession::new(t0, cfg);
        a.set_bridged(t0, true);
        b.set_bridged(t0, true);
        let pcm: Vec<i16> = (0..160)
            .map(|i| ((i * 997) % 20_000 - 10_000) as i16)
            .collect();
        let mut enc = Vec::new();
        codec::encode(Codec::Pcmu, &pcm, &mut enc);

        // Caller → agent, as the shard does it: one buffer, no copy.
        let mut buf = packet(0, 1, 160, 0xCA11, false, &enc);
        assert_eq!(a.handle_rtp(t0, caller, &buf), RtpVerdict::Accepted);
        assert_eq!(
            b.relay_in_place(t0, &mut buf, a.relay_source()),
            Some(addr(AGENT))
        );
        let p = rtp::parse(&buf).unwrap();
        assert_eq!((p.payload_type, p.ssrc), (8, 0xB0B));
        let mut out = Vec::new();
        codec::decode(Codec::Pcma, p.payload, &mut out);
        for (x, y) in pcm.iter().zip(&out) {
            let (x, y) = (i32::from(*x), i32::from(*y));
            // Two quantisations (µ-law then A-law): within two steps of A-law at |x|.
            assert!((x - y).abs() <= (x.abs() / 8).max(32), "{x} -> {y}");
        }
        let mut ev = packet(TE, 2, 320, 0xCA11, true, &[1, 10, 0, 160]);
        assert_eq!(a.handle_rtp(t0, caller, &ev), RtpVerdict::Accepted);
        assert!(b.relay_in_place(t0, &mut ev, a.relay_source()).is_some());
        assert_eq!(rtp::parse(&ev).unwrap().payload_type, 96);
        assert_eq!(digits(&mut a), [], "bridged: the event is the agent's");

        // Agent → caller.
        let agent_pkt =
            |seq: u16, pt: u8, payload: &[u8]| packet(pt, seq, 0, 0xA6E, false, payload);
        let mut buf = agent_pkt(50, 8, &[0xD5; 160]);
        assert_eq!(b.handle_rtp(t0, addr(AGENT), &buf), RtpVerdict::Accepted);
        assert_eq!(
            a.relay_in_place(t0, &mut buf, b.relay_source()),
            Some(caller)
        );
        let p = rtp::parse(&buf).unwrap();
        assert_eq!((p.payload_type, p.ssrc), (0, 0x5151));
        assert!(
            p.payload
                .iter()
                .all(|&c| codec::decode_sample(Codec::Pcmu, c).abs() <= 8)
        );
        // The agent's telephone-event (96) becomes the caller's (101).
        let mut buf = agent_pkt(51, 96, &[11, 10, 0, 160]);
        assert_eq!(b.handle_rtp(t0, addr(AGENT), &buf), RtpVerdict::Accepted);
        assert!(a.relay_in_place(t0, &mut buf, b.relay_source()).is_some());
        assert_eq!(rtp::parse(&buf).unwrap().payload_type, TE);
    }

    #[test]
    fn garbage_never_panics() {
        let t0 = Instant::now();
        let (prompts, id) = ten_frame_prompt();
        let mut s = MediaSession::new(t0, config(Some(AGENT), false));
        s.set_bridged(t0, true);
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut out = Vec::new();
        let mut t = t0;
        let mut relayed = 0;
        for i in 0..20_000u32 {
            let len = (next() % 400) as usize;
            let mut d: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if i % 2 == 0 && d.len() >= 12 {
                d[0] = 0x80 | (d[0] & 0x3F);
                d[1] = [0u8, 8, TE, 13, 96, (next() % 128) as u8][(next() % 6) as usize];
            }
            let from = RelaySource {
                codec: [Codec::Pcmu, Codec::Pcma][(next() % 2) as usize],
                telephone_event: [None, Some(TE), Some(96)][(next() % 3) as usize],
            };
            if s.relay_in_place(t, &mut d, from).is_some() {
                relayed += 1;
                assert!(rtp::parse(&d).is_ok());
            }
            assert_eq!(d.len(), len);
            if i % 10 == 0 {
                t += 20 * MS;
                s.handle_timeout(t);
                let sent = s.poll_transmit(t, &prompts, &mut out).is_some();
                assert!(!(sent && s.is_bridged()), "a bridged player sends nothing");
                while s.poll_event().is_some() {}
            }
            match i % 3000 {
                1000 => s.update(t, &neg(Some(AGENT), Direction::Inactive)),
                1500 => s.update(t, &neg(Some(AGENT), Direction::SendRecv)),
                2000 => s.set_bridged(t, false),
                2100 => {
                    s.play_looped(&[id]);
                    s.set_bridged(t, true);
                }
                _ => {}
            }
        }
        let st = s.stats();
        assert!(
            relayed > 1000 && st.relay_dropped > 1000,
            "{relayed} {st:?}"
        );
    }

    #[test]
    fn play_looped_hold_music_is_gapless() {
        let t0 = Instant::now();
        let prompts = PromptSet::from_prompts(vec![
            ("a".into(), vec![1000; 320]),
            ("b".into(), vec![-1000; 160]),
        ]);
        let (a, b) = (prompts.lookup("a").unwrap(), prompts.lookup("b").unwrap());
        let frame = |id, i| {
            prompts
                .get(id)
                .unwrap()
                .frame(Codec::Pcmu, i)
                .unwrap()
                .to_vec()
        };
        let mut s = MediaSession::new(t0, config(Some(AGENT), false));
        s.play_looped(&[a, b]);
        let mut out = Vec::new();
        let mut got = Vec::new();
        for n in 0..10u32 {
            assert!(
                s.poll_transmit(t0 + n * 20 * MS, &prompts, &mut out)
                    .is_some()
            );
            let p = rtp::parse(&out).unwrap();
            got.push((p.marker, p.payload.to_vec()));
            assert!(s.is_playing());
        }
        let round = [frame(a, 0), frame(a, 1), frame(b, 0)];
        for (n, (marker, payload)) in got.iter().enumerate() {
            assert_eq!(*marker, n == 0, "one talkspurt, packet {n}");
            assert_eq!(payload, &round[n % 3], "packet {n}");
        }
        assert_eq!(events(&mut s), [], "no PlaybackFinished per round");
        // Replaced by a normal play: that one finishes.
        s.play(&[b]);
        assert!(s.poll_transmit(t0 + 200 * MS, &prompts, &mut out).is_some());
        assert_eq!(events(&mut s), [MediaEvent::PlaybackFinished]);
    }
}
