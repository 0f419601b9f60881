//! G.711 µ-law / A-law (ITU-T G.711, RFC 3551 §4.5.14) between 16-bit linear PCM and bytes.
//!
//! - Owns: two 256-entry decode tables, built once per process.
//! - Takes: PCM samples or encoded bytes, and the law (`Codec`) to use.
//! - Gives: encoded bytes / decoded samples appended to a caller-provided buffer, and the
//!   encoded value of digital silence for each law.
//! - Never: allocates beyond growing the caller's buffer, panics, or keeps per-call state.
//!
//! The sample arithmetic comes from `audio-codec-algorithms` (its decode tables match sox for
//! all 256 codes; its encoder differs from sox by one adjacent code on ~11 % of samples, so
//! compare decoded PCM with a tolerance in tests, never bytes).

use std::sync::LazyLock;

use audio_codec_algorithms::{decode_alaw, decode_ulaw, encode_alaw, encode_ulaw};

use crate::media::types::Codec;

static ULAW_TABLE: LazyLock<[i16; 256]> = LazyLock::new(|| table(decode_ulaw));
static ALAW_TABLE: LazyLock<[i16; 256]> = LazyLock::new(|| table(decode_alaw));

fn table(decode: fn(u8) -> i16) -> [i16; 256] {
    let mut t = [0i16; 256];
    for (code, slot) in (0u8..=255).zip(t.iter_mut()) {
        *slot = decode(code);
    }
    t
}

fn decode_table(codec: Codec) -> &'static [i16; 256] {
    match codec {
        Codec::Pcmu => &ULAW_TABLE,
        Codec::Pcma => &ALAW_TABLE,
    }
}

/// Encodes `pcm` with `codec`, appending one byte per sample to `out` (not cleared first).
pub fn encode(codec: Codec, pcm: &[i16], out: &mut Vec<u8>) {
    out.reserve(pcm.len());
    match codec {
        Codec::Pcmu => out.extend(pcm.iter().map(|&s| encode_ulaw(s))),
        Codec::Pcma => out.extend(pcm.iter().map(|&s| encode_alaw(s))),
    }
}

/// Decodes `data` with `codec`, appending one sample per byte to `out` (not cleared first).
pub fn decode(codec: Codec, data: &[u8], out: &mut Vec<i16>) {
    let t = decode_table(codec);
    out.reserve(data.len());
    out.extend(data.iter().map(|&b| t[usize::from(b)]));
}

/// Decodes `data` into the front of `out` without allocating; returns how many samples
/// were written (`min(data.len(), out.len())`).
pub fn decode_to_slice(codec: Codec, data: &[u8], out: &mut [i16]) -> usize {
    let t = decode_table(codec);
    let mut n = 0;
    for (s, &b) in out.iter_mut().zip(data) {
        *s = t[usize::from(b)];
        n += 1;
    }
    n
}

/// Decodes one byte.
pub fn decode_sample(codec: Codec, byte: u8) -> i16 {
    decode_table(codec)[usize::from(byte)]
}

/// Encodes one sample.
pub fn encode_sample(codec: Codec, sample: i16) -> u8 {
    match codec {
        Codec::Pcmu => encode_ulaw(sample),
        Codec::Pcma => encode_alaw(sample),
    }
}

/// The encoded value of a zero sample: 0xFF for µ-law, 0xD5 for A-law.
pub fn silence(codec: Codec) -> u8 {
    match codec {
        Codec::Pcmu => 0xFF,
        Codec::Pcma => 0xD5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: [Codec; 2] = [Codec::Pcmu, Codec::Pcma];

    #[test]
    fn silence_is_the_encoding_of_zero() {
        for c in BOTH {
            assert_eq!(encode_sample(c, 0), silence(c));
            // A-law has no exact zero: its smallest magnitude decodes to ±8.
            assert!(decode_sample(c, silence(c)).abs() <= 8, "{c:?}");
        }
        assert_eq!(silence(Codec::Pcmu), 0xFF);
        assert_eq!(silence(Codec::Pcma), 0xD5);
    }

    #[test]
    fn tables_match_the_library_for_all_codes() {
        for b in 0u8..=255 {
            assert_eq!(decode_sample(Codec::Pcmu, b), decode_ulaw(b));
            assert_eq!(decode_sample(Codec::Pcma, b), decode_alaw(b));
        }
    }

    #[test]
    fn known_values() {
        // G.711 tables: µ-law 0x00 is the most negative value, 0x80 the most positive.
        assert_eq!(decode_sample(Codec::Pcmu, 0x00), -32124);
        assert_eq!(decode_sample(Codec::Pcmu, 0x80), 32124);
        assert_eq!(decode_sample(Codec::Pcma, 0xD5), 8);
        assert_eq!(decode_sample(Codec::Pcma, 0x55), -8);
        assert_eq!(encode_sample(Codec::Pcmu, i16::MAX), 0x80);
        assert_eq!(encode_sample(Codec::Pcmu, i16::MIN), 0x00);
    }

    #[test]
    fn every_code_round_trips_through_decode_and_encode() {
        for c in BOTH {
            for b in 0u8..=255 {
                let s = decode_sample(c, b);
                let back = encode_sample(c, s);
                // µ-law has two codes for zero (0x7F and 0xFF); both decode to 0.
                assert_eq!(decode_sample(c, back), s, "{c:?} code {b:#04x}");
            }
        }
    }

    #[test]
    fn round_trip_error_is_within_the_quantisation_step() {
        for c in BOTH {
            let mut pcm = Vec::new();
            let mut s: i32 = -32768;
            while s <= 32767 {
                pcm.push(s as i16);
                s += 37;
            }
            let mut enc = Vec::new();
            encode(c, &pcm, &mut enc);
            assert_eq!(enc.len(), pcm.len());
            let mut dec = Vec::new();
            decode(c, &enc, &mut dec);
            for (&a, &b) in pcm.iter().zip(&dec) {
                let err = (i32::from(a) - i32::from(b)).abs();
                // G.711 steps grow with magnitude (8..1024 for µ-law, 16..1024 for A-law), so
                // the error stays below a sixteenth of the value, or a small constant near 0.
                let bound = (i32::from(a).abs() / 16).max(16) + 8;
                assert!(err <= bound, "{c:?}: {a} -> {b} (err {err})");
            }
        }
    }

    #[test]
    fn encode_and_decode_append() {
        let mut out = vec![1u8];
        encode(Codec::Pcmu, &[0, 0], &mut out);
        assert_eq!(out, [1, 0xFF, 0xFF]);
        let mut pcm = vec![7i16];
        decode(Codec::Pcma, &[0xD5], &mut pcm);
        assert_eq!(pcm, [7, 8]);
        let mut buf = [1i16; 3];
        assert_eq!(decode_to_slice(Codec::Pcmu, &[0xFF, 0x80], &mut buf), 2);
        assert_eq!(buf, [0, 32124, 1]);
        assert_eq!(decode_to_slice(Codec::Pcmu, &[0; 5], &mut buf), 3);
    }
}
