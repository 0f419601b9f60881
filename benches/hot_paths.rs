//! Micro-benchmarks of the per-packet and per-message hot paths. Results go in
//! docs/performance.md; nothing here asserts a time.

use criterion::{Criterion, criterion_group, criterion_main};
use phonetree::media::dtmf::InbandDetector;
use phonetree::media::player::Player;
use phonetree::media::prompt::PromptSet;
use phonetree::media::relay::RelaySource;
use phonetree::media::session::{InbandDtmf, MediaConfig, MediaSession};
use phonetree::media::types::Codec;
use phonetree::sip::screen::screen_datagram;
use std::hint::black_box;
use std::time::{Duration, Instant};

const INVITE: &str = "INVITE sip:ivr@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK776asdhds;rport\r\nMax-Forwards: 70\r\nTo: <sip:ivr@127.0.0.1>\r\nFrom: \"Alice\" <sip:+15551234567@127.0.0.1>;tag=1928301774\r\nCall-ID: a84b4c76e66710@127.0.0.1\r\nCSeq: 314159 INVITE\r\nContact: <sip:alice@127.0.0.1:5070>\r\nContent-Type: application/sdp\r\nContent-Length: 212\r\n\r\nv=0\r\no=alice 2890844526 2890844526 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n";

fn sdp_body() -> &'static str {
    INVITE.split("\r\n\r\n").nth(1).unwrap_or("")
}

fn bench(c: &mut Criterion) {
    c.bench_function("sip_screen_invite", |b| {
        b.iter(|| screen_datagram(black_box(INVITE.as_bytes())))
    });
    c.bench_function("sip_parse_invite", |b| {
        b.iter(|| phonetree::sip::rsip::SipMessage::try_from(black_box(INVITE.as_bytes())).is_ok())
    });
    c.bench_function("sdp_parse_and_negotiate", |b| {
        b.iter(|| {
            let o = phonetree::media::sdp::parse(black_box(sdp_body().as_bytes())).unwrap();
            phonetree::media::sdp::negotiate(&o, &[Codec::Pcmu, Codec::Pcma]).is_ok()
        })
    });

    let pcm: Vec<i16> = (0..8000 * 5)
        .map(|n| ((n as f32 * 0.3).sin() * 8000.0) as i16)
        .collect();
    let prompts = PromptSet::from_prompts(vec![("en/p".into(), pcm)]);
    let id = prompts.lookup("en/p").unwrap();
    c.bench_function("player_one_packet", |b| {
        let t0 = Instant::now();
        let mut p = Player::new(t0, Codec::Pcmu, 1, 1, 1);
        let mut out = Vec::with_capacity(256);
        let mut n = 0u64;
        b.iter(|| {
            n += 1;
            if !p.is_playing() {
                p.play(&[id]);
            }
            p.poll_transmit(t0 + Duration::from_millis(20 * n), &prompts, 0, &mut out)
        })
    });

    let frame: Vec<i16> = (0..160)
        .map(|n| ((n as f32 * 0.37).sin() * 3000.0) as i16)
        .collect();
    c.bench_function("inband_detector_20ms_frame", |b| {
        let mut d = InbandDetector::new();
        b.iter(|| d.process(black_box(&frame)))
    });
}

/// One bridged leg whose far end negotiated `codec`, sending to its SDP address.
fn bridged_leg(t0: Instant, codec: Codec) -> MediaSession {
    let mut s = MediaSession::new(
        t0,
        MediaConfig {
            codec,
            telephone_event: Some(101),
            remote: "127.0.0.1:40000".parse().ok(),
            rtp_timeout: Duration::from_secs(30),
            ssrc: 0x5151,
            initial_sequence: 1,
            initial_timestamp: 0,
            symmetric_rtp: false,
            inband_dtmf: InbandDtmf::Never,
        },
    );
    s.set_bridged(t0, true);
    s
}

/// The per-packet cost of a bridged call's second leg: rewrite the received 20 ms packet
/// in place (PCMU in; out as PCMU, or transcoded to PCMA).
fn bench_relay(c: &mut Criterion) {
    let from = RelaySource {
        codec: Codec::Pcmu,
        telephone_event: Some(101),
    };
    let payload: Vec<u8> = (0..160u32).map(|i| (i * 37 % 256) as u8).collect();
    for (name, codec) in [
        ("relay_in_place_same_codec", Codec::Pcmu),
        ("relay_in_place_pcmu_to_pcma", Codec::Pcma),
    ] {
        c.bench_function(name, |b| {
            let t0 = Instant::now();
            let mut leg = bridged_leg(t0, codec);
            let mut buf = Vec::with_capacity(172);
            phonetree::media::rtp::write(&mut buf, false, 0, 0, 0, 0xCA11, &payload);
            let mut k = 0u64;
            b.iter(|| {
                k += 1;
                let n = k as u16;
                // The caller's next packet (the relay rewrote the header of the last one;
                // the payload bytes do not matter to the cost).
                buf[1] = 0;
                buf[2..4].copy_from_slice(&n.to_be_bytes());
                buf[4..8].copy_from_slice(&(u32::from(n) * 160).to_be_bytes());
                buf[8..12].copy_from_slice(&0xCA11u32.to_be_bytes());
                let now = t0 + Duration::from_millis(20 * k);
                leg.relay_in_place(now, black_box(&mut buf), from)
            })
        });
    }
}

criterion_group!(benches, bench, bench_relay);
criterion_main!(benches);
