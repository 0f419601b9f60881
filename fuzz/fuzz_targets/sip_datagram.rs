//! Any datagram on the SIP port: screening, then the message parser and INVITE reading.
#![no_main]
use libfuzzer_sys::fuzz_target;
use phonetree::sip::screen::{Screened, screen_datagram};

fuzz_target!(|data: &[u8]| {
    if let Screened::Accept { len } = screen_datagram(data) {
        if let Ok(phonetree::sip::rsip::SipMessage::Request(req)) =
            phonetree::sip::rsip::SipMessage::try_from(&data[..len])
        {
            let _ = phonetree::sip::message::InviteInfo::from_request(&req);
        }
    }
});
