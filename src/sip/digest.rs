//! HTTP Digest for SIP (RFC 3261 §22.4, updated by RFC 8760 for SHA-256; the computation is
//! RFC 7616 §3.4): reading an `Authorization` header, computing HA1 and the response, and
//! writing `WWW-Authenticate` challenges. Pure functions, no state, no clock.

use md5::Md5;
use sha2::{Digest as _, Sha256};

/// The digest algorithms we verify (RFC 7616 §3.2, RFC 8760 §2.1). The `-sess` variants
/// and SHA-512-256 are not offered, so an answer naming them is a broken client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    /// The token used in `algorithm=` (RFC 7616 §3.3).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    pub fn parse(token: &str) -> Option<Algorithm> {
        if token.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else if token.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    /// H(data) in lowercase hex (RFC 7616 §3.4.1: "the hexadecimal representation").
    pub fn hash_hex(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 => hex(&Md5::digest(data)),
            Algorithm::Sha256 => hex(&Sha256::digest(data)),
        }
    }

    /// Length of H(...) in hex characters; a stored HA1 of another length is unusable.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Md5 => 32,
            Algorithm::Sha256 => 64,
        }
    }
}

/// Why an `Authorization` value cannot be used. All of these answer 400 (RFC 3261 §21.4.1):
/// they come from a client that does not speak Digest as we offered it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("authorization scheme is not Digest")]
    NotDigest,
    #[error("malformed auth-param list at byte {0}")]
    Syntax(usize),
    #[error("auth-param {0} appears twice")]
    Duplicate(String),
    #[error("missing auth-param {0}")]
    Missing(&'static str),
    #[error("unsupported algorithm {0}")]
    UnsupportedAlgorithm(String),
    #[error("unsupported qop {0}")]
    UnsupportedQop(String),
    #[error("nc is not 8 hex digits")]
    BadNonceCount,
    #[error("userhash is not supported")]
    UserHash,
    #[error("authorization header too long")]
    TooLong,
}

/// The credentials of one `Authorization: Digest ...` header (RFC 7616 §3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    /// The client's response, lowercased.
    pub response: String,
    pub algorithm: Algorithm,
    /// Always `auth`: we require qop (RFC 2069-style answers without cnonce/nc have no
    /// replay protection, so they are refused at parse time).
    pub qop: String,
    pub nc: u32,
    /// `nc` exactly as sent: it is hashed verbatim.
    pub nc_text: String,
    pub cnonce: String,
    pub opaque: Option<String>,
}

/// Upper bound on what we parse; real headers are a few hundred bytes.
const MAX_AUTHORIZATION_LEN: usize = 4096;

/// Parses an `Authorization` header value. Never panics, whatever the bytes.
pub fn parse_authorization(value: &str) -> Result<Credentials, DigestError> {
    if value.len() > MAX_AUTHORIZATION_LEN {
        return Err(DigestError::TooLong);
    }
    let v = value.trim_start();
    let (scheme, rest) = match v.find(|c: char| c.is_ascii_whitespace()) {
        Some(i) => (&v[..i], &v[i..]),
        None => (v, ""),
    };
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err(DigestError::NotDigest);
    }
    let params = parse_params(rest)?;
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let need = |name: &'static str| {
        get(name)
            .map(str::to_string)
            .ok_or(DigestError::Missing(name))
    };
    // RFC 7616 §3.4.4: userhash=true hides the username; we never offer it.
    if get("userhash").is_some_and(|u| u.eq_ignore_ascii_case("true")) {
        return Err(DigestError::UserHash);
    }
    let algorithm = match get("algorithm") {
        // RFC 7616 §3.4: absent means MD5.
        None => Algorithm::Md5,
        Some(a) => {
            Algorithm::parse(a).ok_or_else(|| DigestError::UnsupportedAlgorithm(a.into()))?
        }
    };
    let qop = need("qop")?;
    if !qop.eq_ignore_ascii_case("auth") {
        return Err(DigestError::UnsupportedQop(qop));
    }
    let nc_text = need("nc")?;
    if nc_text.len() != 8 || !nc_text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(DigestError::BadNonceCount);
    }
    let nc = u32::from_str_radix(&nc_text, 16).map_err(|_| DigestError::BadNonceCount)?;
    let cnonce = need("cnonce")?;
    if cnonce.is_empty() {
        return Err(DigestError::Missing("cnonce"));
    }
    Ok(Credentials {
        username: need("username")?,
        realm: need("realm")?,
        nonce: need("nonce")?,
        uri: need("uri")?,
        response: need("response")?.to_ascii_lowercase(),
        algorithm,
        qop: "auth".to_string(),
        nc,
        nc_text,
        cnonce,
        opaque: get("opaque").map(str::to_string),
    })
}

/// `auth-param *( "," auth-param )` with `auth-param = token BWS "=" BWS ( token /
/// quoted-string )` (RFC 7616 §3.4, RFC 7235 §2.1). Empty list elements are allowed.
fn parse_params(s: &str) -> Result<Vec<(String, String)>, DigestError> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out: Vec<(String, String)> = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && b[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        while i < b.len() && b[i] == b',' {
            i += 1;
            skip_ws(&mut i);
        }
        if i >= b.len() {
            break;
        }
        let start = i;
        while i < b.len() && is_tchar(b[i]) {
            i += 1;
        }
        if i == start {
            return Err(DigestError::Syntax(i));
        }
        let name = s[start..i].to_ascii_lowercase();
        skip_ws(&mut i);
        if i >= b.len() || b[i] != b'=' {
            return Err(DigestError::Syntax(i));
        }
        i += 1;
        skip_ws(&mut i);
        let value = if i < b.len() && b[i] == b'"' {
            i += 1;
            let mut v = Vec::new();
            loop {
                match b.get(i) {
                    None => return Err(DigestError::Syntax(i)),
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    // quoted-pair (RFC 7230 §3.2.6)
                    Some(b'\\') => {
                        let c = *b.get(i + 1).ok_or(DigestError::Syntax(i))?;
                        v.push(c);
                        i += 2;
                    }
                    Some(&c) => {
                        v.push(c);
                        i += 1;
                    }
                }
            }
            // The input was a &str and we only split at ASCII bytes, so this holds; map
            // rather than unwrap all the same.
            String::from_utf8(v).map_err(|_| DigestError::Syntax(i))?
        } else {
            let vs = i;
            while i < b.len() && is_tchar(b[i]) {
                i += 1;
            }
            if i == vs {
                return Err(DigestError::Syntax(i));
            }
            s[vs..i].to_string()
        };
        if out.iter().any(|(k, _)| *k == name) {
            return Err(DigestError::Duplicate(name));
        }
        out.push((name, value));
        skip_ws(&mut i);
        match b.get(i) {
            None => break,
            Some(b',') => i += 1,
            Some(_) => return Err(DigestError::Syntax(i)),
        }
    }
    Ok(out)
}

/// RFC 7230 §3.2.6 tchar.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// HA1 = H(username ":" realm ":" password) (RFC 7616 §3.4.2).
pub fn ha1(algorithm: Algorithm, username: &str, realm: &str, password: &str) -> String {
    algorithm.hash_hex(format!("{username}:{realm}:{password}").as_bytes())
}

/// response = H(HA1 ":" nonce ":" nc ":" cnonce ":" qop ":" H(method ":" uri))
/// (RFC 7616 §3.4.1, qop=auth). One argument per field of the formula, in its order.
#[allow(clippy::too_many_arguments)]
pub fn response(
    algorithm: Algorithm,
    ha1: &str,
    nonce: &str,
    nc: &str,
    cnonce: &str,
    qop: &str,
    method: &str,
    uri: &str,
) -> String {
    let ha2 = algorithm.hash_hex(format!("{method}:{uri}").as_bytes());
    algorithm.hash_hex(format!("{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}").as_bytes())
}

/// A `WWW-Authenticate` value (RFC 7616 §3.3; RFC 3261 §22.4 requires quoted realm, nonce
/// and opaque, and `algorithm` unquoted).
pub fn challenge(
    algorithm: Algorithm,
    realm: &str,
    nonce: &str,
    opaque: &str,
    stale: bool,
) -> String {
    let stale = if stale { ", stale=true" } else { "" };
    format!(
        "Digest realm=\"{}\", nonce=\"{nonce}\", opaque=\"{opaque}\", algorithm={}, qop=\"auth\"{stale}",
        quote_escape(realm),
        algorithm.name()
    )
}

fn quote_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Equality that takes the same time wherever the first difference is, so the response
/// comparison leaks nothing about the expected value. Lengths are public (fixed per algorithm).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// HMAC-SHA-256 (RFC 2104) for nonce integrity; keys longer than the block are hashed.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(message);
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner);
    let mut out = [0u8; 32];
    out.copy_from_slice(&outer.finalize());
    out
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7616 §3.9.1 example (the method is GET there; the formula is the same).
    const USER: &str = "Mufasa";
    const PASSWORD: &str = "Circle of Life";
    const REALM: &str = "http-auth@example.org";
    const NONCE: &str = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
    const CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
    const URI: &str = "/dir/index.html";

    #[test]
    fn md5_response_matches_rfc7616_example() {
        let ha1 = ha1(Algorithm::Md5, USER, REALM, PASSWORD);
        let r = response(
            Algorithm::Md5,
            &ha1,
            NONCE,
            "00000001",
            CNONCE,
            "auth",
            "GET",
            URI,
        );
        assert_eq!(r, "8ca523f5e9506fed4657c9700eebdbec");
    }

    #[test]
    fn sha256_response_matches_rfc7616_example() {
        let ha1 = ha1(Algorithm::Sha256, USER, REALM, PASSWORD);
        let r = response(
            Algorithm::Sha256,
            &ha1,
            NONCE,
            "00000001",
            CNONCE,
            "auth",
            "GET",
            URI,
        );
        assert_eq!(
            r,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn authorization_with_quoted_escapes_and_odd_spacing_parses() {
        let c = parse_authorization(
            "Digest username=\"10\\\"01\" ,realm = \"phonetree\",nonce=\"n\", uri=\"sip:h\",\
             response=\"ABCDEF\",algorithm=SHA-256,cnonce=\"c\",nc=0000000a,qop=auth,opaque=\"o\"",
        )
        .unwrap();
        assert_eq!(c.username, "10\"01");
        assert_eq!(c.algorithm, Algorithm::Sha256);
        assert_eq!(c.nc, 10);
        assert_eq!(c.response, "abcdef");
        assert_eq!(c.opaque.as_deref(), Some("o"));
    }

    #[test]
    fn authorization_without_qop_is_refused() {
        let e = parse_authorization(
            "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"sip:h\", response=\"x\"",
        )
        .unwrap_err();
        assert_eq!(e, DigestError::Missing("qop"));
    }

    #[test]
    fn duplicate_and_truncated_params_are_errors() {
        assert!(matches!(
            parse_authorization("Digest username=\"a\", username=\"b\""),
            Err(DigestError::Duplicate(_))
        ));
        assert!(matches!(
            parse_authorization("Digest username=\"a"),
            Err(DigestError::Syntax(_))
        ));
        assert_eq!(
            parse_authorization("Basic YWxhZGRpbg=="),
            Err(DigestError::NotDigest)
        );
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
