//! Any SIP INFO body: the DTMF relay parsers.
#![no_main]
use libfuzzer_sys::fuzz_target;
use phonetree::media::dtmf::parse_info_body;

fuzz_target!(|data: &[u8]| {
    let _ = parse_info_body("application/dtmf-relay", data);
    let _ = parse_info_body("application/dtmf", data);
});
