//! SIP INFO DTMF bodies: `application/dtmf-relay` and `application/dtmf`.
//!
//! Neither format has an RFC that phones agree on, so parsing is lenient where phones differ and
//! strict where a wrong digit could result:
//! - the content type is compared without parameters and without case;
//! - `dtmf-relay` lines may end in CRLF or LF, keys are case-insensitive, spaces around `=` (or
//!   `:`) are ignored, unknown lines (`Duration=`, vendor extras) are skipped, the first `Signal`
//!   wins;
//! - a key is one of `0-9 * # A-D` (a-d too) or an RFC 4733 event code `0`-`15` written as a number
//!   (several phones send `10`/`11` for `*`/`#`); anything else is an error, never a guess.
//!
//! Input is untrusted bytes: no panic, and no allocation except an error's short, sanitised
//! excerpt.

use std::fmt;

use crate::media::types::Digit;

/// Why an INFO body did not yield a digit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InfoError {
    /// The Content-Type is neither `application/dtmf-relay` nor `application/dtmf`
    /// (carries the media type as received, sanitised and shortened).
    UnsupportedContentType(String),
    /// No `Signal=` line in a `dtmf-relay` body, or an empty `application/dtmf` body.
    MissingSignal,
    /// The signal is not a DTMF key (carries the value as received, sanitised and shortened).
    InvalidSignal(String),
}

impl fmt::Display for InfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InfoError::UnsupportedContentType(ct) => {
                write!(f, "unsupported INFO content type {ct:?} for DTMF")
            }
            InfoError::MissingSignal => f.write_str("INFO body carries no DTMF signal"),
            InfoError::InvalidSignal(value) => {
                write!(
                    f,
                    "INFO DTMF signal {value:?} is not a key (0-9 * # A-D or event 0-15)"
                )
            }
        }
    }
}

impl std::error::Error for InfoError {}

/// `content_type` as received (may have parameters, any case). Supports `application/dtmf-relay`
/// (body like `"Signal=5\r\nDuration=160\r\n"`) and `application/dtmf` (body is just the key).
pub fn parse_info_body(content_type: &str, body: &[u8]) -> Result<Digit, InfoError> {
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim_matches(|c: char| c.is_ascii_whitespace());
    if media_type.eq_ignore_ascii_case("application/dtmf-relay") {
        for line in body.split(|&b| b == b'\n') {
            let Some(sep) = line.iter().position(|&b| b == b'=' || b == b':') else {
                continue;
            };
            let (key, value) = (trim(&line[..sep]), trim(&line[sep + 1..]));
            if key.eq_ignore_ascii_case(b"signal") {
                return parse_key(value);
            }
        }
        Err(InfoError::MissingSignal)
    } else if media_type.eq_ignore_ascii_case("application/dtmf") {
        let value = trim(body);
        if value.is_empty() {
            Err(InfoError::MissingSignal)
        } else {
            parse_key(value)
        }
    } else {
        Err(InfoError::UnsupportedContentType(excerpt(
            media_type.as_bytes(),
        )))
    }
}

/// One key: a single character, or an event code 0-15 as a decimal number.
fn parse_key(value: &[u8]) -> Result<Digit, InfoError> {
    let digit = match value {
        [c] => Digit::from_char(char::from(*c)),
        [a, b] if a.is_ascii_digit() && b.is_ascii_digit() => {
            Digit::from_event((a - b'0') * 10 + (b - b'0'))
        }
        _ => None,
    };
    digit.ok_or_else(|| InfoError::InvalidSignal(excerpt(value)))
}

fn trim(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

/// At most 24 printable ASCII characters, for error messages and logs.
fn excerpt(bytes: &[u8]) -> String {
    let mut out: String = bytes
        .iter()
        .take(24)
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                char::from(b)
            } else {
                '?'
            }
        })
        .collect();
    if bytes.len() > 24 {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELAY: &str = "application/dtmf-relay";

    #[test]
    fn dtmf_relay_typical_body() {
        assert_eq!(
            parse_info_body(RELAY, b"Signal=5\r\nDuration=160\r\n"),
            Ok(Digit::D5)
        );
    }

    #[test]
    fn dtmf_relay_all_keys_as_characters() {
        for d in Digit::ALL {
            let body = format!("Signal={}\r\nDuration=100\r\n", d.as_char());
            assert_eq!(parse_info_body(RELAY, body.as_bytes()), Ok(d), "{body:?}");
        }
        assert_eq!(parse_info_body(RELAY, b"Signal=c\r\n"), Ok(Digit::C));
    }

    #[test]
    fn dtmf_relay_numeric_event_codes() {
        assert_eq!(parse_info_body(RELAY, b"Signal=10\r\n"), Ok(Digit::Star));
        assert_eq!(parse_info_body(RELAY, b"Signal=11\r\n"), Ok(Digit::Pound));
        assert_eq!(parse_info_body(RELAY, b"Signal=15\r\n"), Ok(Digit::D));
        assert_eq!(parse_info_body(RELAY, b"Signal=07\r\n"), Ok(Digit::D7));
    }

    #[test]
    fn dtmf_relay_tolerates_spacing_case_order_and_line_endings() {
        assert_eq!(parse_info_body(RELAY, b"Signal= 5\r\n"), Ok(Digit::D5));
        assert_eq!(
            parse_info_body(RELAY, b"signal = #\nduration = 250\n"),
            Ok(Digit::Pound)
        );
        assert_eq!(
            parse_info_body(RELAY, b"Duration=160\r\nSignal=*"),
            Ok(Digit::Star)
        );
        assert_eq!(
            parse_info_body(RELAY, b"\r\n  SIGNAL:9  \r\n"),
            Ok(Digit::D9)
        );
        assert_eq!(
            parse_info_body("Application/DTMF-Relay ; charset=utf-8", b"Signal=1\r\n"),
            Ok(Digit::D1)
        );
        // The first Signal line wins.
        assert_eq!(
            parse_info_body(RELAY, b"Signal=2\r\nSignal=3\r\n"),
            Ok(Digit::D2)
        );
    }

    #[test]
    fn dtmf_relay_without_signal_is_an_error() {
        assert_eq!(parse_info_body(RELAY, b""), Err(InfoError::MissingSignal));
        assert_eq!(
            parse_info_body(RELAY, b"Duration=160\r\n"),
            Err(InfoError::MissingSignal)
        );
        assert_eq!(
            parse_info_body(RELAY, b"Signals\r\n"),
            Err(InfoError::MissingSignal)
        );
    }

    #[test]
    fn invalid_signals_are_errors_not_guesses() {
        for body in [
            &b"Signal=\r\n"[..],
            b"Signal=16\r\n",
            b"Signal=55\r\n",
            b"Signal=E\r\n",
            b"Signal=5 5\r\n",
            b"Signal=123\r\n",
            b"Signal=-1\r\n",
            b"Signal=\xff\r\n",
        ] {
            assert!(
                matches!(
                    parse_info_body(RELAY, body),
                    Err(InfoError::InvalidSignal(_))
                ),
                "{body:?}"
            );
        }
    }

    #[test]
    fn application_dtmf_body_is_the_key() {
        assert_eq!(parse_info_body("application/dtmf", b"5"), Ok(Digit::D5));
        assert_eq!(
            parse_info_body("APPLICATION/DTMF", b" #\r\n"),
            Ok(Digit::Pound)
        );
        assert_eq!(parse_info_body("application/dtmf", b"11"), Ok(Digit::Pound));
        assert_eq!(
            parse_info_body("application/dtmf", b"\r\n"),
            Err(InfoError::MissingSignal)
        );
        assert!(matches!(
            parse_info_body("application/dtmf", b"Signal=5"),
            Err(InfoError::InvalidSignal(_))
        ));
    }

    #[test]
    fn other_content_types_are_rejected() {
        for ct in [
            "text/plain",
            "application/sdp",
            "",
            "application/dtmf-relayx",
            "application",
        ] {
            assert!(
                matches!(
                    parse_info_body(ct, b"Signal=5\r\n"),
                    Err(InfoError::UnsupportedContentType(_))
                ),
                "{ct:?}"
            );
        }
    }

    #[test]
    fn errors_display_sanitised_short_values() {
        let long_garbage = [0x07u8; 500];
        let err = parse_info_body("application/dtmf", &long_garbage).unwrap_err();
        let text = err.to_string();
        assert!(text.len() < 120, "{text}");
        assert!(!text.contains('\u{7}'));
        let err = parse_info_body("x/\u{1b}[31mred", b"").unwrap_err();
        assert!(!err.to_string().contains('\u{1b}'));
        // It is a std error (boxable for `?` into anyhow).
        let boxed: Box<dyn std::error::Error> = Box::new(InfoError::MissingSignal);
        assert_eq!(boxed.to_string(), "INFO body carries no DTMF signal");
    }
}
