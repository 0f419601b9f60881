//! The SQLite store: one database file in WAL mode, its schema migrated at
//! open, PINs as salted Argon2id hashes with a failure counter and lockout.
//!
//! PIN hashing: Argon2id (RFC 9106) with 7 MiB, 5 passes, 1 lane, one of the
//! OWASP-recommended equivalent settings with the least memory, so a worker
//! pool checking several PINs at once stays small (~30 ms per check). A 4-digit
//! PIN has only 10 000 values, so no hash makes a stolen database safe: the
//! hash stops precomputed tables and makes each guess cost, the lockout stops
//! guessing by phone, and the database file must stay private.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{
    Account, Appointment, AppointmentStatus, Customer, Directory, DirectoryConfig, DirectoryError,
    Order, PinOutcome, config_duration, normalize_phone,
};

/// Schema migrations, applied in order; `schema_version` records the last one
/// applied. Never edit a released entry: append a new one.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    "CREATE TABLE customers (
        id           TEXT PRIMARY KEY,
        name         TEXT NOT NULL,
        language     TEXT NOT NULL DEFAULT 'en',
        tier         TEXT NOT NULL DEFAULT 'standard',
        pin_hash     TEXT,
        failed_pins  INTEGER NOT NULL DEFAULT 0,
        locked_until INTEGER
    );
    CREATE TABLE phones (
        number       TEXT PRIMARY KEY,
        customer_id  TEXT NOT NULL REFERENCES customers(id) ON DELETE CASCADE
    );
    CREATE INDEX phones_customer ON phones(customer_id);
    CREATE TABLE accounts (
        customer_id   TEXT PRIMARY KEY REFERENCES customers(id) ON DELETE CASCADE,
        balance_minor INTEGER NOT NULL,
        currency      TEXT NOT NULL
    );
    CREATE TABLE orders (
        id          TEXT PRIMARY KEY,
        customer_id TEXT NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
        status      TEXT NOT NULL,
        placed_on   TEXT NOT NULL,
        shipped_on  TEXT,
        eta         TEXT
    );
    CREATE INDEX orders_customer ON orders(customer_id, placed_on);
    CREATE TABLE appointments (
        id           TEXT PRIMARY KEY,
        customer_id  TEXT NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
        starts_at    TEXT NOT NULL,
        starts_at_ms INTEGER NOT NULL,
        status       TEXT NOT NULL CHECK (status IN ('scheduled', 'confirmed', 'cancelled'))
    );
    CREATE INDEX appointments_customer ON appointments(customer_id, starts_at_ms);",
];

/// Idle connections kept for reuse.
const MAX_IDLE: usize = 8;

/// PIN policy of a [`SqliteDirectory`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqliteOptions {
    /// Wrong PINs in a row that lock the customer (at least 1).
    pub max_pin_attempts: u32,
    /// How long a lockout lasts.
    pub lockout_ms: i64,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            max_pin_attempts: 3,
            lockout_ms: 15 * 60 * 1000,
        }
    }
}

impl SqliteOptions {
    pub fn from_config(cfg: &DirectoryConfig) -> Result<SqliteOptions, DirectoryError> {
        if cfg.max_pin_attempts == 0 {
            return Err(DirectoryError::Config(
                "max_pin_attempts must be at least 1".into(),
            ));
        }
        let lockout = config_duration("lockout", &cfg.lockout)?;
        Ok(SqliteOptions {
            max_pin_attempts: cfg.max_pin_attempts,
            lockout_ms: i64::try_from(lockout.as_millis()).unwrap_or(i64::MAX),
        })
    }
}

/// A customer directory in one SQLite file. `Send + Sync`: worker threads
/// share it; each call takes a connection from a small pool.
pub struct SqliteDirectory {
    path: PathBuf,
    opts: SqliteOptions,
    idle: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for SqliteDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteDirectory")
            .field("path", &self.path)
            .field("opts", &self.opts)
            .finish()
    }
}

/// A connection borrowed from the pool; returned on drop.
pub(super) struct Pooled<'a> {
    dir: &'a SqliteDirectory,
    conn: Option<Connection>,
}

impl std::ops::Deref for Pooled<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        // Always `Some` until drop.
        self.conn.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl std::ops::DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            let mut idle = self.dir.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < MAX_IDLE {
                idle.push(c);
            }
        }
    }
}

impl SqliteDirectory {
    /// Opens (creating if needed) the database at `path` with the default PIN
    /// policy, switches it to WAL and applies pending migrations.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteDirectory, DirectoryError> {
        SqliteDirectory::open_with(path, SqliteOptions::default())
    }

    pub fn open_with(
        path: impl AsRef<Path>,
        opts: SqliteOptions,
    ) -> Result<SqliteDirectory, DirectoryError> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| {
                DirectoryError::Config(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        let opts = SqliteOptions {
            max_pin_attempts: opts.max_pin_attempts.max(1),
            lockout_ms: opts.lockout_ms.max(0),
        };
        let dir = SqliteDirectory {
            path,
            opts,
            idle: Mutex::new(Vec::new()),
        };
        let mut conn = dir.connect()?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(DirectoryError::Corrupt(format!(
                "cannot switch the database to WAL (journal mode is {mode})"
            )));
        }
        migrate(&mut conn)?;
        dir.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn);
        Ok(dir)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last migration applied.
    pub fn schema_version(&self) -> Result<i64, DirectoryError> {
        let conn = self.conn()?;
        Ok(conn.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_version",
            [],
            |r| r.get(0),
        )?)
    }

    pub fn customer_count(&self) -> Result<i64, DirectoryError> {
        let conn = self.conn()?;
        Ok(conn.query_row("SELECT COUNT(*) FROM customers", [], |r| r.get(0))?)
    }

    fn connect(&self) -> Result<Connection, DirectoryError> {
        let conn = Connection::open(&self.path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")?;
        Ok(conn)
    }

    pub(super) fn conn(&self) -> Result<Pooled<'_>, DirectoryError> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match idle {
            Some(c) => c,
            None => self.connect()?,
        };
        Ok(Pooled {
            dir: self,
            conn: Some(conn),
        })
    }

    fn customer_where(
        &self,
        sql_where: &str,
        key: &str,
    ) -> Result<Option<Customer>, DirectoryError> {
        let conn = self.conn()?;
        let sql =
            format!("SELECT c.id, c.name, c.language, c.tier FROM customers c {sql_where} LIMIT 1");
        Ok(conn
            .query_row(&sql, [key], |r| {
                Ok(Customer {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    language: r.get(2)?,
                    tier: r.get(3)?,
                })
            })
            .optional()?)
    }
}

fn migrate(conn: &mut Connection) -> Result<(), DirectoryError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
    let found: i64 = tx.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
        [],
        |r| r.get(0),
    )?;
    let known = MIGRATIONS.len() as i64;
    if found > known {
        return Err(DirectoryError::SchemaTooNew { found, known });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            [i as i64 + 1],
        )?;
    }
    tx.commit()?;
    Ok(())
}

fn argon2() -> Result<Argon2<'static>, DirectoryError> {
    let params = Params::new(7 * 1024, 5, 1, None).map_err(|_| DirectoryError::Hash)?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// A salted Argon2id hash of a PIN, as a PHC string (`$argon2id$v=19$...`).
pub fn hash_pin(pin: &str) -> Result<String, DirectoryError> {
    argon2()?
        .hash_password(pin.as_bytes())
        .map(|h| h.to_string())
        .map_err(|_| DirectoryError::Hash)
}

/// Whether `pin` matches a stored hash; the comparison is constant-time. A
/// malformed stored hash never matches.
pub fn pin_matches(pin: &str, stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    Argon2::default()
        .verify_password(pin.as_bytes(), &parsed)
        .is_ok()
}

/// Spends the time of one PIN check, so an unknown customer answers as slowly
/// as a known one.
fn dummy_check(pin: &str) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let h = DUMMY.get_or_init(|| hash_pin("0000").unwrap_or_default());
    let _ = pin_matches(pin, h);
}

fn status_of(s: &str) -> Result<AppointmentStatus, DirectoryError> {
    AppointmentStatus::parse(s)
        .ok_or_else(|| DirectoryError::Corrupt("unknown appointment status".into()))
}

impl Directory for SqliteDirectory {
    fn customer_by_id(&self, id: &str) -> Result<Option<Customer>, DirectoryError> {
        self.customer_where("WHERE c.id = ?1", id.trim())
    }

    fn customer_by_phone(&self, number: &str) -> Result<Option<Customer>, DirectoryError> {
        let Some(n) = normalize_phone(number) else {
            return Ok(None);
        };
        self.customer_where(
            "JOIN phones p ON p.customer_id = c.id WHERE p.number = ?1",
            &n,
        )
    }

    fn verify_pin(
        &self,
        customer_id: &str,
        pin: &str,
        now_unix_ms: i64,
    ) -> Result<PinOutcome, DirectoryError> {
        let mut conn = self.conn()?;
        let row: Option<(Option<String>, Option<i64>)> = conn
            .query_row(
                "SELECT pin_hash, locked_until FROM customers WHERE id = ?1",
                [customer_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let (hash, locked_until) = match row {
            Some((Some(h), l)) => (h, l),
            _ => {
                dummy_check(pin);
                return Err(DirectoryError::NotFound);
            }
        };
        if let Some(until) = locked_until
            && until > now_unix_ms
        {
            return Ok(PinOutcome::Locked {
                until_unix_ms: until,
            });
        }
        // The slow hash runs outside any transaction.
        let ok = pin_matches(pin, &hash);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let outcome = if ok {
            tx.execute(
                "UPDATE customers SET failed_pins = 0, locked_until = NULL WHERE id = ?1",
                [customer_id],
            )?;
            PinOutcome::Ok
        } else {
            // An expired lockout is cleared; the counter restarted when it was set.
            tx.execute(
                "UPDATE customers SET failed_pins = failed_pins + 1,
                     locked_until = CASE WHEN locked_until <= ?2 THEN NULL ELSE locked_until END
                 WHERE id = ?1",
                params![customer_id, now_unix_ms],
            )?;
            let (failed, locked): (i64, Option<i64>) = tx.query_row(
                "SELECT failed_pins, locked_until FROM customers WHERE id = ?1",
                [customer_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let max = i64::from(self.opts.max_pin_attempts);
            match locked {
                // Another attempt locked the customer meanwhile.
                Some(until) if until > now_unix_ms => PinOutcome::Locked {
                    until_unix_ms: until,
                },
                _ if failed >= max => {
                    let until = now_unix_ms.saturating_add(self.opts.lockout_ms);
                    tx.execute(
                        "UPDATE customers SET failed_pins = 0, locked_until = ?2 WHERE id = ?1",
                        params![customer_id, until],
                    )?;
                    PinOutcome::Locked {
                        until_unix_ms: until,
                    }
                }
                _ => PinOutcome::Wrong {
                    attempts_left: u32::try_from(max - failed.max(0)).unwrap_or(0),
                },
            }
        };
        tx.commit()?;
        Ok(outcome)
    }

    fn next_appointment(
        &self,
        customer_id: &str,
        now_unix_ms: i64,
    ) -> Result<Option<Appointment>, DirectoryError> {
        let conn = self.conn()?;
        let row: Option<(String, String, i64, String)> = conn
            .query_row(
                "SELECT id, starts_at, starts_at_ms, status FROM appointments
                 WHERE customer_id = ?1 AND status != 'cancelled' AND starts_at_ms >= ?2
                 ORDER BY starts_at_ms, id LIMIT 1",
                params![customer_id, now_unix_ms],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        row.map(|(id, starts_at, ms, status)| {
            Ok(Appointment {
                id,
                starts_at,
                starts_at_unix_ms: ms,
                status: status_of(&status)?,
            })
        })
        .transpose()
    }

    fn set_appointment_status(
        &self,
        customer_id: &str,
        appointment_id: &str,
        status: AppointmentStatus,
    ) -> Result<(), DirectoryError> {
        let conn = self.conn()?;
        let n = conn.execute(
            "UPDATE appointments SET status = ?3 WHERE id = ?2 AND customer_id = ?1",
            params![customer_id, appointment_id, status.as_str()],
        )?;
        if n == 0 {
            return Err(DirectoryError::NotFound);
        }
        Ok(())
    }

    fn last_order(&self, customer_id: &str) -> Result<Option<Order>, DirectoryError> {
        let conn = self.conn()?;
        Ok(conn
            .query_row(
                "SELECT id, status, placed_on, shipped_on, eta FROM orders
                 WHERE customer_id = ?1 ORDER BY placed_on DESC, id DESC LIMIT 1",
                [customer_id],
                |r| {
                    Ok(Order {
                        id: r.get(0)?,
                        status: r.get(1)?,
                        placed_on: r.get(2)?,
                        shipped_on: r.get(3)?,
                        eta: r.get(4)?,
                    })
                },
            )
            .optional()?)
    }

    fn account(&self, customer_id: &str) -> Result<Option<Account>, DirectoryError> {
        let conn = self.conn()?;
        Ok(conn
            .query_row(
                "SELECT balance_minor, currency FROM accounts WHERE customer_id = ?1",
                [customer_id],
                |r| {
                    Ok(Account {
                        balance_minor: r.get(0)?,
                        currency: r.get(1)?,
                    })
                },
            )
            .optional()?)
    }
}

#[cfg(test)]
pub(super) mod tests;
