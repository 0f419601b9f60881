//! Any SDP body in an INVITE or re-INVITE: parse, negotiate, answer.
#![no_main]
use libfuzzer_sys::fuzz_target;
use phonetree::media::sdp;
use phonetree::media::types::Codec;

fuzz_target!(|data: &[u8]| {
    if let Ok(offer) = sdp::parse(data) {
        if let Ok(n) = sdp::negotiate(&offer, &[Codec::Pcmu, Codec::Pcma]) {
            let _ = sdp::answer(&n, &offer, "127.0.0.1".parse().unwrap(), 10000, 1, 1);
        }
        let _ = sdp::negotiate_answer(&offer, &[Codec::Pcmu]);
    }
});
