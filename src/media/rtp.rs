//! RTP fixed header (RFC 3550 §5.1), parsed and written by hand, zero-copy.
//!
//! - Owns: nothing; pure functions over byte slices.
//! - Takes: received datagrams (untrusted), or header fields plus a payload to send.
//! - Gives: a borrowed [`RtpPacket`] view or an [`RtpError`]; a packet appended to a `Vec`;
//!   [`is_rtcp`] to tell RTCP apart when RTP and RTCP share a port (RFC 5761 §4).
//! - Never: panics or allocates on input, reads past the datagram, trusts a length field.

use std::fmt;

/// Length of the fixed RTP header without CSRCs or extension.
pub const HEADER_LEN: usize = 12;

/// A parsed RTP packet borrowing its payload from the datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    /// Always 2 (anything else is rejected).
    pub version: u8,
    /// The P bit; `payload` already excludes the padding.
    pub padding: bool,
    /// The X bit; `payload` already excludes the header extension.
    pub extension: bool,
    /// Number of CSRC identifiers that were skipped.
    pub csrc_count: u8,
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: &'a [u8],
}

/// Why a datagram is not a usable RTP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtpError {
    /// Shorter than the 12-byte fixed header.
    TooShort { len: usize },
    /// Version field is not 2.
    BadVersion(u8),
    /// The CSRC list runs past the end of the datagram.
    CsrcOverrun,
    /// The header extension runs past the end of the datagram.
    ExtensionOverrun,
    /// Padding count is 0 or larger than what follows the header.
    BadPadding { count: u8 },
    /// The datagram is RTCP (RFC 5761 §4 demultiplexing), not RTP.
    Rtcp,
}

impl fmt::Display for RtpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RtpError::TooShort { len } => write!(f, "RTP datagram too short ({len} bytes)"),
            RtpError::BadVersion(v) => write!(f, "RTP version {v}, expected 2"),
            RtpError::CsrcOverrun => f.write_str("RTP CSRC list runs past the datagram"),
            RtpError::ExtensionOverrun => {
                f.write_str("RTP header extension runs past the datagram")
            }
            RtpError::BadPadding { count } => write!(f, "RTP padding count {count} is invalid"),
            RtpError::Rtcp => f.write_str("datagram is RTCP"),
        }
    }
}

impl std::error::Error for RtpError {}

/// True when the datagram looks like RTCP: version 2 and a second byte in 192..=223
/// (RFC 5761 §4; this covers SR/RR/SDES/BYE/APP = 200–204 as well as RTPFB/PSFB/XR
/// = 205–207, which phones also send). RTP payload types 64–95 with the marker set
/// collide with this range, which is why RFC 5761 forbids them.
pub fn is_rtcp(buf: &[u8]) -> bool {
    match buf {
        [b0, b1, ..] => b0 >> 6 == 2 && (192..=223).contains(b1),
        _ => false,
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at + 2)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Parses one RTP packet. RTCP is reported as [`RtpError::Rtcp`] so callers can ignore it.
pub fn parse(buf: &[u8]) -> Result<RtpPacket<'_>, RtpError> {
    // Before the length check: an RTCP RR without report blocks is only 8 bytes.
    if is_rtcp(buf) {
        return Err(RtpError::Rtcp);
    }
    if buf.len() < HEADER_LEN {
        return Err(RtpError::TooShort { len: buf.len() });
    }
    let b0 = buf[0];
    let b1 = buf[1];
    let version = b0 >> 6;
    if version != 2 {
        return Err(RtpError::BadVersion(version));
    }
    let padding = b0 & 0x20 != 0;
    let extension = b0 & 0x10 != 0;
    let csrc_count = b0 & 0x0F;
    let marker = b1 & 0x80 != 0;
    let payload_type = b1 & 0x7F;
    let (Some(sequence), Some(timestamp), Some(ssrc)) = (be16(buf, 2), be32(buf, 4), be32(buf, 8))
    else {
        return Err(RtpError::TooShort { len: buf.len() });
    };

    let mut start = HEADER_LEN + 4 * usize::from(csrc_count);
    if start > buf.len() {
        return Err(RtpError::CsrcOverrun);
    }
    if extension {
        // 16-bit profile-defined field, 16-bit length in 32-bit words, then the data.
        let words = be16(buf, start + 2).ok_or(RtpError::ExtensionOverrun)?;
        start += 4 + 4 * usize::from(words);
        if start > buf.len() {
            return Err(RtpError::ExtensionOverrun);
        }
    }
    let mut end = buf.len();
    if padding {
        let count = buf[end - 1];
        if count == 0 || usize::from(count) > end - start {
            return Err(RtpError::BadPadding { count });
        }
        end -= usize::from(count);
    }
    Ok(RtpPacket {
        version,
        padding,
        extension,
        csrc_count,
        marker,
        payload_type,
        sequence,
        timestamp,
        ssrc,
        payload: &buf[start..end],
    })
}

/// Appends a version-2 RTP packet without padding, extension or CSRCs to `out`
/// (`out` is not cleared, so a caller may reuse one buffer). `payload_type` is masked to 7 bits.
pub fn write(
    out: &mut Vec<u8>,
    marker: bool,
    payload_type: u8,
    sequence: u16,
    timestamp: u32,
    ssrc: u32,
    payload: &[u8],
) {
    out.reserve(HEADER_LEN + payload.len());
    out.push(0x80);
    out.push((u8::from(marker) << 7) | (payload_type & 0x7F));
    out.extend_from_slice(&sequence.to_be_bytes());
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(marker: bool, pt: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        write(
            &mut v,
            marker,
            pt,
            0xBEEF,
            0xDEAD_BEEF,
            0x1234_5678,
            payload,
        );
        v
    }

    #[test]
    fn write_then_parse_round_trips() {
        let buf = packet(true, 0, &[1, 2, 3]);
        assert_eq!(
            buf[..12],
            [
                0x80, 0x80, 0xBE, 0xEF, 0xDE, 0xAD, 0xBE, 0xEF, 0x12, 0x34, 0x56, 0x78
            ]
        );
        let p = parse(&buf).unwrap();
        assert_eq!(p.version, 2);
        assert!(p.marker && !p.padding && !p.extension);
        assert_eq!(p.payload_type, 0);
        assert_eq!(p.sequence, 0xBEEF);
        assert_eq!(p.timestamp, 0xDEAD_BEEF);
        assert_eq!(p.ssrc, 0x1234_5678);
        assert_eq!(p.payload, &[1, 2, 3]);

        let buf = packet(false, 101, &[]);
        let p = parse(&buf).unwrap();
        assert!(!p.marker);
        assert_eq!(p.payload_type, 101);
        assert!(p.payload.is_empty());
    }

    #[test]
    fn write_appends_and_masks_payload_type() {
        let mut v = vec![9];
        write(&mut v, false, 0xFF, 1, 2, 3, &[4]);
        assert_eq!(v.len(), 1 + 12 + 1);
        assert_eq!(v[2], 0x7F);
    }

    #[test]
    fn csrcs_extension_and_padding_are_skipped() {
        let mut b = vec![0x80 | 0x20 | 0x10 | 2, 8, 0, 1, 0, 0, 0, 160, 0, 0, 0, 7];
        b.extend_from_slice(&[0xAA; 8]); // two CSRCs
        b.extend_from_slice(&[0xBE, 0xDE, 0, 1, 0x11, 0x22, 0x33, 0x44]); // one-word extension
        b.extend_from_slice(&[5, 6, 7]); // payload
        b.extend_from_slice(&[0, 0, 3]); // three bytes of padding
        let p = parse(&b).unwrap();
        assert_eq!(p.csrc_count, 2);
        assert!(p.padding && p.extension);
        assert_eq!(p.payload_type, 8);
        assert_eq!(p.timestamp, 160);
        assert_eq!(p.payload, &[5, 6, 7]);
    }

    #[test]
    fn malformed_packets_are_errors() {
        assert_eq!(parse(&[]), Err(RtpError::TooShort { len: 0 }));
        assert_eq!(parse(&[0x80; 11]), Err(RtpError::TooShort { len: 11 }));
        let mut b = packet(false, 0, &[1, 2]);
        b[0] = 0x40; // version 1
        assert_eq!(parse(&b), Err(RtpError::BadVersion(1)));
        b[0] = 0x00;
        assert_eq!(parse(&b), Err(RtpError::BadVersion(0)));

        let mut b = packet(false, 0, &[0; 7]);
        b[0] = 0x82; // two CSRCs = 8 bytes, only 7 follow
        assert_eq!(parse(&b), Err(RtpError::CsrcOverrun));
        b[0] = 0x8F;
        assert_eq!(parse(&b), Err(RtpError::CsrcOverrun));

        let mut b = packet(false, 0, &[0xBE, 0xDE, 0, 2, 0, 0, 0, 0]);
        b[0] = 0x90; // extension claims 2 words, only 1 present
        assert_eq!(parse(&b), Err(RtpError::ExtensionOverrun));
        let mut b = packet(false, 0, &[0xBE, 0xDE]);
        b[0] = 0x90; // extension header itself truncated
        assert_eq!(parse(&b), Err(RtpError::ExtensionOverrun));
        let mut b = packet(false, 0, &[0xBE, 0xDE, 0, 0]);
        b[0] = 0x90; // empty extension, empty payload: fine
        assert_eq!(parse(&b).unwrap().payload, &[] as &[u8]);

        let mut b = packet(false, 0, &[1, 2, 0]);
        b[0] = 0xA0; // padding count 0
        assert_eq!(parse(&b), Err(RtpError::BadPadding { count: 0 }));
        let mut b = packet(false, 0, &[1, 2, 4]);
        b[0] = 0xA0; // padding count 4 > 3 payload bytes
        assert_eq!(parse(&b), Err(RtpError::BadPadding { count: 4 }));
        let mut b = packet(false, 0, &[1, 2, 3]);
        b[0] = 0xA0; // all of the payload is padding
        assert_eq!(parse(&b).unwrap().payload, &[] as &[u8]);
        let mut b = packet(false, 0, &[]);
        b[0] = 0xA0; // padding bit on a header-only packet: count is the SSRC's last byte
        assert!(parse(&b).is_err());
    }

    #[test]
    fn rtcp_is_detected_and_not_parsed_as_rtp() {
        for pt in 200u8..=207 {
            let rr = [0x80, pt, 0, 1, 0, 0, 0, 1];
            assert!(is_rtcp(&rr), "{pt}");
            assert_eq!(
                parse(&rr),
                Err(RtpError::Rtcp),
                "an 8-byte RR is RTCP, not short RTP"
            );
            let mut long = rr.to_vec();
            long.extend_from_slice(&[0; 8]);
            assert_eq!(parse(&long), Err(RtpError::Rtcp));
        }
        assert!(!is_rtcp(&packet(true, 0, &[])));
        assert!(!is_rtcp(&packet(true, 8, &[])));
        assert!(!is_rtcp(&packet(true, 101, &[])));
        assert!(!is_rtcp(&packet(false, 127, &[])));
        assert!(!is_rtcp(&[0x80]));
        assert!(!is_rtcp(&[0x00, 200]));
    }

    /// xorshift64*: deterministic bytes, no dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
    }

    #[test]
    fn random_and_mutated_bytes_never_panic() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let valid = packet(true, 0, &[0x55; 160]);
        let mut ok = 0;
        for i in 0..200_000 {
            let len = (rng.next() % 64) as usize;
            let mut buf: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if i % 2 == 0 {
                // Mostly-valid packets: version 2 with random flag bits, so the
                // CSRC/extension/padding paths are exercised, not just BadVersion.
                if let Some(b) = buf.first_mut() {
                    *b = 0x80 | (*b & 0x3F);
                }
            }
            if let Ok(p) = parse(&buf) {
                assert!(p.payload.len() <= buf.len());
                ok += 1;
            }
            let _ = is_rtcp(&buf);

            let mut m = valid.clone();
            let flips = rng.next() % 4;
            for _ in 0..=flips {
                let at = (rng.next() as usize) % m.len();
                m[at] = rng.next() as u8;
            }
            m.truncate((rng.next() as usize) % (valid.len() + 1));
            let _ = parse(&m);
        }
        assert!(
            ok > 1000,
            "the loop should also produce valid packets ({ok})"
        );
    }
}
