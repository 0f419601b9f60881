//! `/api/records`: finished calls read back from `call-records.jsonl`.
//!
//! Lines are read as plain JSON, not as `CallRecord`, so records written by an older or a
//! newer engine still list; a line that does not parse (a torn last line after a crash) is
//! skipped and counted.

use serde::Deserialize;
use serde_json::Value;
use std::io::BufRead;
use std::path::Path;

/// Default page size, and the largest page (JSON, CSV).
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;
pub const MAX_CSV_LIMIT: usize = 100_000;

/// The query string as given.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawQuery {
    pub from: Option<String>,
    pub to: Option<String>,
    pub outcome: Option<String>,
    pub queue: Option<String>,
    pub limit: Option<usize>,
    pub offset: Option<usize>,
    pub format: Option<String>,
}

/// A checked query: times in unix ms, `from` inclusive, `to` exclusive.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RecordQuery {
    pub from: Option<u64>,
    pub to: Option<u64>,
    pub outcome: Option<String>,
    pub queue: Option<String>,
    pub limit: usize,
    pub offset: usize,
}

/// Unix milliseconds, or an RFC 3339 timestamp (`2026-12-03T10:00:00Z`).
pub(crate) fn parse_time(what: &str, s: &str) -> Result<u64, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse()
            .map_err(|_| format!("{what}: `{s}` is out of range"));
    }
    s.parse::<jiff::Timestamp>()
        .ok()
        .and_then(|t| u64::try_from(t.as_millisecond()).ok())
        .ok_or_else(|| format!("{what}: `{s}` is neither unix ms nor an RFC 3339 time"))
}

impl RecordQuery {
    pub fn parse(raw: &RawQuery) -> Result<RecordQuery, String> {
        let csv = match raw.format.as_deref() {
            None | Some("json") => false,
            Some("csv") => true,
            Some(other) => return Err(format!("format: `{other}` is not json or csv")),
        };
        let max = if csv { MAX_CSV_LIMIT } else { MAX_LIMIT };
        let limit = raw.limit.unwrap_or(if csv { max } else { DEFAULT_LIMIT });
        if limit > max {
            return Err(format!("limit: at most {max}"));
        }
        Ok(RecordQuery {
            from: raw
                .from
                .as_deref()
                .map(|s| parse_time("from", s))
                .transpose()?,
            to: raw.to.as_deref().map(|s| parse_time("to", s)).transpose()?,
            outcome: raw.outcome.clone().filter(|s| !s.is_empty()),
            queue: raw.queue.clone().filter(|s| !s.is_empty()),
            limit,
            offset: raw.offset.unwrap_or(0),
        })
    }

    pub fn matches(&self, r: &Value) -> bool {
        let started = r
            .get("started_unix_ms")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let queue = r
            .get("queue")
            .and_then(|q| q.get("queue"))
            .and_then(Value::as_str);
        self.from.is_none_or(|f| started >= f)
            && self.to.is_none_or(|t| started < t)
            && self
                .outcome
                .as_deref()
                .is_none_or(|o| r.get("outcome").and_then(Value::as_str) == Some(o))
            && self.queue.as_deref().is_none_or(|q| queue == Some(q))
    }
}

#[derive(Debug, Default)]
pub struct Page {
    /// Records matching the filters, before paging.
    pub total: usize,
    /// Lines that were not JSON objects.
    pub bad_lines: usize,
    /// Newest first.
    pub records: Vec<Value>,
}

/// Calls `f` with every record (JSON object) of the file, in file order; the number of
/// lines that were not records. A missing file has no records.
pub fn scan(path: &Path, mut f: impl FnMut(Value)) -> std::io::Result<usize> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut bad = 0;
    for line in std::io::BufReader::new(file).split(b'\n') {
        let line = line?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Value>(&line) {
            Ok(v) if v.is_object() => f(v),
            _ => bad += 1,
        }
    }
    Ok(bad)
}

/// Reads, filters, sorts newest first and pages. A missing file is an empty page.
pub fn read(path: &Path, q: &RecordQuery, mask: bool) -> std::io::Result<Page> {
    let mut page = Page::default();
    let mut matched = Vec::new();
    page.bad_lines = scan(path, |v| {
        if q.matches(&v) {
            matched.push(v);
        }
    })?;
    let key = |v: &Value| {
        (
            v.get("started_unix_ms")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            v.get("id").and_then(Value::as_u64).unwrap_or(0),
        )
    };
    matched.sort_by_key(|v| std::cmp::Reverse(key(v)));
    page.total = matched.len();
    page.records = matched.into_iter().skip(q.offset).take(q.limit).collect();
    if mask {
        page.records.iter_mut().for_each(super::mask_json);
    }
    Ok(page)
}

/// A spreadsheet runs a cell that starts with `=`, `@`, or `+`/`-` before a non-digit as a
/// formula (CSV injection); caller numbers come from the network, so such cells get a `'`.
fn cell(s: String) -> String {
    let mut chars = s.chars();
    let risky = match chars.next() {
        Some('=' | '@' | '\t' | '\r') => true,
        Some('+' | '-') => chars.next().is_some_and(|c| !c.is_ascii_digit()),
        _ => false,
    };
    if risky { format!("'{s}") } else { s }
}

/// The main fields of each record, one row each, for spreadsheets.
pub fn to_csv(records: &[Value]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record([
        "id",
        "call_id",
        "started_unix_ms",
        "caller",
        "dialled",
        "flow",
        "outcome",
        "status",
        "duration_ms",
        "talk_ms",
        "queue",
        "queue_result",
        "wait_ms",
        "answered_by",
    ]);
    let text = |v: Option<&Value>| match v {
        Some(Value::String(s)) => cell(s.clone()),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    for r in records {
        let q = r.get("queue");
        let field = |k: &str| text(r.get(k));
        let qfield = |k: &str| text(q.and_then(|q| q.get(k)));
        let _ = w.write_record([
            field("id"),
            field("call_id"),
            field("started_unix_ms"),
            field("caller"),
            field("dialled"),
            field("flow"),
            field("outcome"),
            field("status"),
            field("duration_ms"),
            field("talk_ms"),
            qfield("queue"),
            qfield("result"),
            qfield("wait_ms"),
            qfield("answered_by"),
        ]);
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}
