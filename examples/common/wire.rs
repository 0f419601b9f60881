//! What callgen and agentgen share: a minimal, tolerant SIP text parser borrowing from the
//! receive buffer, the RTP header writer, and the latency histogram. Both generators use
//! std + mio only, never the phonetree library, so that they measure the engine from
//! outside; each includes this file with `#[path]`.

// ---------------------------------------------------------------------------------------
// Histograms

/// Counts of values (µs). `Log`: exact below 128 µs, then 64 sub-buckets per power of two
/// (≤ 1.6 % error) — for latencies that range from 0.1 ms to seconds. `Linear`: fixed width.
pub struct Hist {
    pub linear_width: Option<u64>,
    pub counts: Vec<u64>,
    pub overflow: u64,
    pub count: u64,
    pub sum: u64,
    pub max: u64,
}

impl Hist {
    pub fn log() -> Hist {
        Hist {
            linear_width: None,
            counts: vec![0; 40 * 64],
            overflow: 0,
            count: 0,
            sum: 0,
            max: 0,
        }
    }
    pub fn linear(width_us: u64, range_us: u64) -> Hist {
        Hist {
            linear_width: Some(width_us),
            counts: vec![0; range_us.div_ceil(width_us) as usize],
            overflow: 0,
            count: 0,
            sum: 0,
            max: 0,
        }
    }
    pub fn index(&self, v: u64) -> usize {
        match self.linear_width {
            Some(w) => (v / w) as usize,
            None if v < 128 => v as usize,
            None => {
                let e = 63 - v.leading_zeros() - 6; // v >> e in [64, 128)
                (e as usize + 1) * 64 + ((v >> e) as usize - 64)
            }
        }
    }
    /// Upper edge (exclusive) of bucket `i`, µs.
    pub fn upper(&self, i: usize) -> u64 {
        match self.linear_width {
            Some(w) => (i as u64 + 1) * w,
            None if i < 128 => i as u64 + 1,
            None => {
                let e = (i / 64 - 1) as u32;
                ((i % 64) as u64 + 64 + 1) << e
            }
        }
    }
    pub fn record(&mut self, v: u64) {
        self.count += 1;
        self.sum = self.sum.saturating_add(v);
        self.max = self.max.max(v);
        let i = self.index(v);
        match self.counts.get_mut(i) {
            Some(c) => *c += 1,
            None => self.overflow += 1,
        }
    }
    /// Value (µs) at or below which a fraction `q` of the samples lie (bucket upper edge,
    /// capped at the maximum seen).
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return self.upper(i).min(self.max);
            }
        }
        self.max
    }
    /// Fraction of samples below `v` µs (exact for a linear histogram at bucket edges).
    pub fn fraction_below(&self, v: u64) -> f64 {
        if self.count == 0 {
            return 1.0;
        }
        let n: u64 = (0..self.counts.len())
            .filter(|&i| self.upper(i) <= v)
            .map(|i| self.counts[i])
            .sum();
        n as f64 / self.count as f64
    }
    pub fn mean(&self) -> u64 {
        self.sum.checked_div(self.count).unwrap_or(0)
    }
}

pub fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

// ---------------------------------------------------------------------------------------
// RTP

pub fn rtp_header(buf: &mut [u8], marker: bool, pt: u8, seq: u16, ts: u32, ssrc: u32) {
    buf[0] = 0x80;
    buf[1] = (if marker { 0x80 } else { 0 }) | pt;
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
    buf[4..8].copy_from_slice(&ts.to_be_bytes());
    buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
}

// ---------------------------------------------------------------------------------------
// SIP parsing: minimal and tolerant, borrowing from the receive buffer.

#[derive(Default)]
pub struct Msg<'a> {
    /// 0 for a request.
    pub status: u16,
    pub method: &'a [u8],
    pub call_id: &'a [u8],
    pub cseq: &'a [u8],
    pub cseq_method: &'a [u8],
    pub from: &'a [u8],
    pub to: &'a [u8],
    pub contact: &'a [u8],
    pub contact_uri: &'a [u8],
    pub expires: Option<u64>,
    pub www_authenticate: &'a [u8],
    pub vias: [&'a [u8]; 8],
    pub n_via: usize,
    pub body: &'a [u8],
}

pub fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if first.is_ascii_whitespace() {
            s = rest
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if last.is_ascii_whitespace() {
            s = rest
        } else {
            break;
        }
    }
    s
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

pub fn parse_u64(s: &[u8]) -> Option<u64> {
    let s = trim(s);
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |v, &b| v * 10 + (b - b'0') as u64))
}

/// Next line (without CR LF / LF) and the rest.
pub fn next_line(s: &[u8]) -> (&[u8], &[u8]) {
    match s.iter().position(|&b| b == b'\n') {
        Some(i) => {
            let line = &s[..i];
            (line.strip_suffix(b"\r").unwrap_or(line), &s[i + 1..])
        }
        None => (s, &[]),
    }
}

pub fn contact_uri(v: &[u8]) -> &[u8] {
    if let Some(lt) = v.iter().position(|&b| b == b'<') {
        let rest = &v[lt + 1..];
        let gt = rest.iter().position(|&b| b == b'>').unwrap_or(rest.len());
        return trim(&rest[..gt]);
    }
    let end = v
        .iter()
        .position(|&b| b == b';' || b == b',')
        .unwrap_or(v.len());
    trim(&v[..end])
}

pub fn parse_sip(data: &[u8]) -> Option<Msg<'_>> {
    let mut m = Msg::default();
    let (first, mut rest) = next_line(data);
    if let Some(status) = first.strip_prefix(b"SIP/2.0 ") {
        m.status = parse_u64(status.get(..3)?)? as u16;
        if !(100..700).contains(&m.status) {
            return None;
        }
    } else {
        let sp = first.iter().position(|&b| b == b' ')?;
        m.method = &first[..sp];
        if !first.ends_with(b"SIP/2.0") {
            return None;
        }
    }
    let mut content_length: Option<usize> = None;
    while !rest.is_empty() {
        let (line, after) = next_line(rest);
        rest = after;
        if line.is_empty() {
            break; // end of headers
        }
        if line[0] == b' ' || line[0] == b'\t' {
            continue; // folded continuation: ignored
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = trim(&line[..colon]);
        let value = trim(&line[colon + 1..]);
        let is = |long: &[u8], short: &[u8]| {
            name.eq_ignore_ascii_case(long) || name.eq_ignore_ascii_case(short)
        };
        if is(b"call-id", b"i") {
            m.call_id = value;
        } else if is(b"cseq", b"cseq") {
            m.cseq = value;
            let sp = value.iter().position(|&b| b == b' ').unwrap_or(value.len());
            m.cseq_method = trim(&value[sp..]);
        } else if is(b"from", b"f") {
            m.from = value;
        } else if is(b"to", b"t") {
            m.to = value;
        } else if is(b"contact", b"m") {
            if m.contact.is_empty() {
                m.contact = value;
                m.contact_uri = contact_uri(value);
            }
        } else if is(b"expires", b"expires") {
            m.expires = parse_u64(value);
        } else if is(b"www-authenticate", b"www-authenticate") {
            // The first Digest challenge with MD5 (or no algorithm, which means MD5).
            if m.www_authenticate.is_empty() || find(m.www_authenticate, b"MD5").is_none() {
                m.www_authenticate = value;
            }
        } else if is(b"via", b"v") {
            if m.n_via < m.vias.len() {
                m.vias[m.n_via] = value;
                m.n_via += 1;
            }
        } else if is(b"content-length", b"l") {
            content_length = parse_u64(value).map(|v| v as usize);
        }
    }
    m.body = match content_length {
        Some(n) => &rest[..n.min(rest.len())],
        None => rest,
    };
    if m.call_id.is_empty() || m.cseq.is_empty() {
        return None;
    }
    Some(m)
}
