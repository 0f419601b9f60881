//! CSV import into the SQLite store: every row checked first, every bad row
//! reported with its line number, then all rows written in one transaction,
//! or none.
//!
//! Columns (a header row names them, in any order; empty cells are "none"):
//!
//! | column | meaning |
//! |---|---|
//! | `id` | customer id (letters, digits, `_`, `-`; at most 32) — required |
//! | `name` | customer name — required |
//! | `phones` | caller numbers separated by `;` (`+1 555-123-4567`) |
//! | `language` | prompt language (default `en`) |
//! | `tier` | service tier (default `standard`) |
//! | `pin` | 4 to 8 digits, stored hashed; empty: no self-service |
//! | `pin_hash` | instead of `pin`: an Argon2id PHC string (`$argon2id$v=19$m=7168,t=5,p=1$...`) stored as it is, so the file never holds a plain PIN (quote the cell: the string has commas) |
//! | `balance` | `123.45` (at most 2 decimals); empty: no account |
//! | `currency` | ISO 4217 code (`USD`), required with a balance |
//! | `order_id`, `order_status`, `order_placed_on`, `order_shipped_on`, `order_eta` | the last order; dates `YYYY-MM-DD` |
//! | `appointment_id`, `appointment_starts_at`, `appointment_status` | the next appointment; RFC 3339 with offset, `scheduled`/`confirmed`/`cancelled` |
//!
//! A file with plain `pin`s is a list of everyone's PIN: delete it once
//! imported (or give `pin_hash` instead).
//!
//! A customer already in the database is replaced with all their rows (phones,
//! account, orders, appointments; the PIN failure counter restarts).

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::Path;

use rusqlite::{TransactionBehavior, params};

use super::sqlite::{SqliteDirectory, check_pin_hash, hash_pin};
use super::{Appointment, AppointmentStatus, DirectoryError, mask, normalize_phone};

const COLUMNS: &[&str] = &[
    "id",
    "name",
    "phones",
    "language",
    "tier",
    "pin",
    "pin_hash",
    "balance",
    "currency",
    "order_id",
    "order_status",
    "order_placed_on",
    "order_shipped_on",
    "order_eta",
    "appointment_id",
    "appointment_starts_at",
    "appointment_status",
];
const REQUIRED: &[&str] = &["id", "name"];

/// One problem in the file, at a 1-based line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowError {
    pub line: u64,
    pub message: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{} problem(s), nothing imported:\n{}", .0.len(), lines(.0))]
    Rows(Vec<RowError>),
    #[error(transparent)]
    Directory(#[from] DirectoryError),
}

fn lines(errors: &[RowError]) -> String {
    errors
        .iter()
        .map(|e| format!("  {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What an import wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub customers: usize,
    pub phones: usize,
    pub accounts: usize,
    pub orders: usize,
    pub appointments: usize,
}

/// A checked row, ready to write.
struct Row {
    line: u64,
    id: String,
    name: String,
    phones: Vec<String>,
    language: String,
    tier: String,
    pin: Option<String>,
    /// Checked PHC string, given instead of `pin`.
    pin_hash: Option<String>,
    account: Option<(i64, String)>,
    order: Option<[Option<String>; 5]>,
    appointment: Option<Appointment>,
}

impl SqliteDirectory {
    /// Imports a customers CSV file (see the module docs for its columns).
    pub fn import_csv(&self, path: impl AsRef<Path>) -> Result<ImportReport, ImportError> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|source| ImportError::Io {
            path: path.display().to_string(),
            source,
        })?;
        self.import_csv_reader(file)
    }

    /// Like [`SqliteDirectory::import_csv`], from any reader.
    pub fn import_csv_reader(&self, input: impl Read) -> Result<ImportReport, ImportError> {
        let rows = parse(input)?;
        // Hash before the transaction: ~30 ms each, no lock held.
        let mut hashes = Vec::with_capacity(rows.len());
        for r in &rows {
            hashes.push(match (&r.pin, &r.pin_hash) {
                (Some(p), _) => Some(hash_pin(p)?),
                (None, Some(h)) => Some(h.clone()),
                (None, None) => None,
            });
        }
        let mut conn = self.conn()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(DirectoryError::from)?;
        let mut report = ImportReport::default();
        let mut errors = Vec::new();
        for (r, hash) in rows.iter().zip(&hashes) {
            if let Err(e) = write_row(&tx, r, hash.as_deref(), &mut report) {
                errors.push(RowError {
                    line: r.line,
                    message: db_message(&e),
                });
            }
        }
        if !errors.is_empty() {
            // Dropping `tx` rolls everything back.
            return Err(ImportError::Rows(errors));
        }
        tx.commit().map_err(DirectoryError::from)?;
        Ok(report)
    }
}

fn db_message(e: &rusqlite::Error) -> String {
    let s = e.to_string();
    if s.contains("phones.number") {
        "a phone number belongs to another customer already in the database".into()
    } else if s.contains("orders.id") {
        "the order id belongs to another customer already in the database".into()
    } else if s.contains("appointments.id") {
        "the appointment id belongs to another customer already in the database".into()
    } else {
        format!("database: {s}")
    }
}

fn write_row(
    tx: &rusqlite::Transaction<'_>,
    r: &Row,
    hash: Option<&str>,
    report: &mut ImportReport,
) -> Result<(), rusqlite::Error> {
    tx.execute("DELETE FROM customers WHERE id = ?1", [&r.id])?;
    tx.execute(
        "INSERT INTO customers (id, name, language, tier, pin_hash) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![r.id, r.name, r.language, r.tier, hash],
    )?;
    report.customers += 1;
    for p in &r.phones {
        tx.execute(
            "INSERT INTO phones (number, customer_id) VALUES (?1, ?2)",
            params![p, r.id],
        )?;
        report.phones += 1;
    }
    if let Some((minor, cur)) = &r.account {
        tx.execute(
            "INSERT INTO accounts (customer_id, balance_minor, currency) VALUES (?1, ?2, ?3)",
            params![r.id, minor, cur],
        )?;
        report.accounts += 1;
    }
    if let Some([id, status, placed, shipped, eta]) = &r.order {
        tx.execute(
            "INSERT INTO orders (id, customer_id, status, placed_on, shipped_on, eta)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, r.id, status, placed, shipped, eta],
        )?;
        report.orders += 1;
    }
    if let Some(a) = &r.appointment {
        tx.execute(
            "INSERT INTO appointments (id, customer_id, starts_at, starts_at_ms, status)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                a.id,
                r.id,
                a.starts_at,
                a.starts_at_unix_ms,
                a.status.as_str()
            ],
        )?;
        report.appointments += 1;
    }
    Ok(())
}

/// Reads and checks every row; all problems at once.
fn parse(input: impl Read) -> Result<Vec<Row>, ImportError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(input);
    let mut errors: Vec<RowError> = Vec::new();
    let mut records = reader.records();
    let header = match records.next() {
        Some(Ok(h)) => h,
        Some(Err(e)) => {
            return Err(ImportError::Rows(vec![csv_error(&e)]));
        }
        None => {
            return Err(ImportError::Rows(vec![RowError {
                line: 1,
                message: "empty file: expected a header row".into(),
            }]));
        }
    };
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, name) in header.iter().enumerate() {
        let name = name.trim_start_matches('\u{feff}');
        match COLUMNS.iter().find(|c| **c == name) {
            Some(c) if index.contains_key(c) => errors.push(RowError {
                line: 1,
                message: format!("column `{name}` appears twice"),
            }),
            Some(c) => {
                index.insert(c, i);
            }
            None => errors.push(RowError {
                line: 1,
                message: format!("unknown column `{name}` (expected: {})", COLUMNS.join(", ")),
            }),
        }
    }
    for c in REQUIRED {
        if !index.contains_key(c) {
            errors.push(RowError {
                line: 1,
                message: format!("missing column `{c}`"),
            });
        }
    }
    if !errors.is_empty() {
        return Err(ImportError::Rows(errors));
    }

    let mut rows = Vec::new();
    let mut ids: HashMap<String, u64> = HashMap::new();
    let mut phones: HashMap<String, u64> = HashMap::new();
    let mut orders: HashMap<String, u64> = HashMap::new();
    let mut appointments: HashMap<String, u64> = HashMap::new();
    for rec in records {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                errors.push(csv_error(&e));
                continue;
            }
        };
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        if rec.iter().all(str::is_empty) {
            continue; // blank line
        }
        if rec.len() != header.len() {
            errors.push(RowError {
                line,
                message: format!("{} fields, but the header has {}", rec.len(), header.len()),
            });
            continue;
        }
        let get = |c: &str| -> Option<String> {
            index
                .get(c)
                .and_then(|i| rec.get(*i))
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let mut bad = |message: String| errors.push(RowError { line, message });

        let id = get("id").unwrap_or_default();
        if id.is_empty() {
            bad("`id` is empty".into());
        } else if id.len() > 32
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            bad("`id` must be 1-32 letters, digits, `_` or `-`".into());
        } else if let Some(prev) = ids.get(&id) {
            bad(format!("customer id already used on line {prev}"));
        } else {
            ids.insert(id.clone(), line);
        }
        let name = get("name").unwrap_or_default();
        if name.is_empty() {
            bad("`name` is empty".into());
        }
        let mut row_phones = Vec::new();
        for p in get("phones")
            .unwrap_or_default()
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            match normalize_phone(p) {
                None => bad(format!("`{}` is not a phone number", mask(p))),
                Some(n) => match phones.get(&n) {
                    Some(prev) => bad(format!(
                        "phone number {} is already used on line {prev}",
                        mask(&n)
                    )),
                    None => {
                        phones.insert(n.clone(), line);
                        row_phones.push(n);
                    }
                },
            }
        }
        let language = get("language").unwrap_or_else(|| "en".into());
        if !(2..=12).contains(&language.len())
            || !language
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            bad("`language` must be a tag like `en` or `pt-BR`".into());
        }
        let tier = get("tier").unwrap_or_else(|| "standard".into());
        let pin = get("pin");
        if let Some(p) = &pin
            && !((4..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_digit()))
        {
            // Never echo the PIN.
            bad("`pin` must be 4 to 8 digits".into());
        }
        let pin_hash = get("pin_hash");
        if let Some(h) = &pin_hash {
            if pin.is_some() {
                bad("give `pin` or `pin_hash`, not both".into());
            } else if let Err(e) = check_pin_hash(h) {
                bad(e);
            }
        }
        let account = match (get("balance"), get("currency")) {
            (None, None) => None,
            (Some(_), None) => {
                bad("`balance` needs a `currency`".into());
                None
            }
            (None, Some(_)) => {
                bad("`currency` without a `balance`".into());
                None
            }
            (Some(b), Some(c)) => {
                let minor = parse_minor(&b);
                if minor.is_none() {
                    bad(format!(
                        "`balance` `{b}` is not an amount like 123.45 (at most 2 decimals)"
                    ));
                }
                let cur = c.to_ascii_uppercase();
                if cur.len() != 3 || !cur.chars().all(|c| c.is_ascii_uppercase()) {
                    bad(format!(
                        "`currency` `{c}` is not a 3-letter ISO 4217 code like USD"
                    ));
                }
                minor.map(|m| (m, cur))
            }
        };
        let order = match get("order_id") {
            None => {
                for c in [
                    "order_status",
                    "order_placed_on",
                    "order_shipped_on",
                    "order_eta",
                ] {
                    if get(c).is_some() {
                        bad(format!("`{c}` without an `order_id`"));
                    }
                }
                None
            }
            Some(oid) => {
                if let Some(prev) = orders.get(&oid) {
                    bad(format!("order id already used on line {prev}"));
                } else {
                    orders.insert(oid.clone(), line);
                }
                let status = get("order_status");
                if status.is_none() {
                    bad("`order_status` is empty".into());
                }
                let placed = get("order_placed_on");
                match &placed {
                    None => bad("`order_placed_on` is empty".into()),
                    Some(d) if !is_date(d) => {
                        bad(format!("`order_placed_on` `{d}` is not a date YYYY-MM-DD"))
                    }
                    _ => {}
                }
                for c in ["order_shipped_on", "order_eta"] {
                    if let Some(d) = get(c)
                        && !is_date(&d)
                    {
                        bad(format!("`{c}` `{d}` is not a date YYYY-MM-DD"));
                    }
                }
                Some([
                    Some(oid),
                    status,
                    placed,
                    get("order_shipped_on"),
                    get("order_eta"),
                ])
            }
        };
        let appointment = match get("appointment_id") {
            None => {
                for c in ["appointment_starts_at", "appointment_status"] {
                    if get(c).is_some() {
                        bad(format!("`{c}` without an `appointment_id`"));
                    }
                }
                None
            }
            Some(aid) => {
                if let Some(prev) = appointments.get(&aid) {
                    bad(format!("appointment id already used on line {prev}"));
                } else {
                    appointments.insert(aid.clone(), line);
                }
                let status = match AppointmentStatus::parse(
                    &get("appointment_status").unwrap_or_default(),
                ) {
                    Some(s) => s,
                    None => {
                        bad(
                            "`appointment_status` must be scheduled, confirmed or cancelled".into(),
                        );
                        AppointmentStatus::Scheduled
                    }
                };
                match get("appointment_starts_at") {
                    None => {
                        bad("`appointment_starts_at` is empty".into());
                        None
                    }
                    Some(t) => {
                        let a = Appointment::new(&aid, &t, status);
                        if a.as_ref().and_then(Appointment::local_date_time).is_none() {
                            bad(format!(
                                "`appointment_starts_at` `{t}` is not an RFC 3339 time with offset like 2026-12-03T14:30:00-05:00"
                            ));
                        }
                        a
                    }
                }
            }
        };
        rows.push(Row {
            line,
            id,
            name,
            phones: row_phones,
            language,
            tier,
            pin,
            pin_hash,
            account,
            order,
            appointment,
        });
    }
    if !errors.is_empty() {
        return Err(ImportError::Rows(errors));
    }
    Ok(rows)
}

fn csv_error(e: &csv::Error) -> RowError {
    let line = e.position().map(|p| p.line()).unwrap_or(0);
    let message = match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".to_string(),
        csv::ErrorKind::Io(err) => format!("read error: {err}"),
        _ => "malformed CSV".to_string(),
    };
    RowError { line, message }
}

fn is_date(s: &str) -> bool {
    s.len() == 10 && s.parse::<jiff::civil::Date>().is_ok()
}

/// `123.45` → 12345; `-3.5` → -350; `7` → 700.
fn parse_minor(s: &str) -> Option<i64> {
    let (neg, t) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    if whole.is_empty()
        || whole.len() > 15
        || frac.len() > 2
        || !whole.chars().all(|c| c.is_ascii_digit())
        || !frac.chars().all(|c| c.is_ascii_digit())
        || (t.contains('.') && frac.is_empty())
    {
        return None;
    }
    let w: i64 = whole.parse().ok()?;
    let f: i64 = match frac.len() {
        0 => 0,
        1 => frac.parse::<i64>().ok()? * 10,
        _ => frac.parse().ok()?,
    };
    let v = w.checked_mul(100)?.checked_add(f)?;
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_to_minor_units() {
        assert_eq!(parse_minor("123.45"), Some(12345));
        assert_eq!(parse_minor("7"), Some(700));
        assert_eq!(parse_minor("-3.5"), Some(-350));
        assert_eq!(parse_minor("0.05"), Some(5));
        for bad in [
            "",
            "1.234",
            "1.",
            ".5",
            "1e3",
            "12,50",
            "--1",
            "9999999999999999",
        ] {
            assert_eq!(parse_minor(bad), None, "{bad}");
        }
    }
}
