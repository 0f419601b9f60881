//! Any datagram on an RTP port: the media session (RTP parse, RFC 4733, in-band detector).
#![no_main]
use libfuzzer_sys::fuzz_target;
use phonetree::media::session::{MediaConfig, MediaSession};
use phonetree::media::types::Codec;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut s = MediaSession::new(
        t0,
        MediaConfig {
            codec: Codec::Pcmu,
            telephone_event: Some(101),
            remote: None,
            rtp_timeout: Duration::from_secs(30),
            ssrc: 1,
            initial_sequence: 1,
            initial_timestamp: 1,
            symmetric_rtp: true,
            inband_dtmf: phonetree::media::session::InbandDtmf::Always,
        },
    );
    let from = "127.0.0.1:4000".parse().unwrap();
    // Split the input into several datagrams so state carries across packets.
    for (i, chunk) in data.chunks(180).enumerate() {
        s.handle_rtp(t0 + Duration::from_millis(20 * i as u64), from, chunk);
        while s.poll_event().is_some() {}
    }
});
