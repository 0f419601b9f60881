//! The SQLite store: one database file in WAL mode, its schema migrated at
//! open, PINs as salted Argon2id hashes with a failure counter and lockout.
//!
//! PIN hashing: Argon2id (RFC 9106) with 7 MiB, 5 passes, 1 lane, one of the
//! OWASP-recommended equivalent settings with the least memory, so a worker
//! pool checking several PINs at once stays small (~30 ms per check). A 4-digit
//! PIN has only 10 000 values, so no hash makes a stolen database safe: the
//! hash stops precomputed tables and makes each guess cost, the lockout stops
//! guessing by phone, and the database file must stay private: it and its
//! `-wal`/`-shm` files are mode 0600 whatever the umask.
//!
//! PIN attempts are *reserved* before the slow hash (see [`SqliteDirectory`]'s
//! `verify_pin`): a burst of concurrent guesses cannot get more than
//! `max_pin_attempts` hashes past a lockout that is still being decided.
//!
//! Connections come from a fixed pool opened at start ([`POOL_SIZE`]): a burst
//! of requests waits for a connection instead of opening files.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

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
    // 2: PIN attempts reserved before hashing and not yet decided (see `verify_pin`).
    "ALTER TABLE customers ADD COLUMN pins_in_flight INTEGER NOT NULL DEFAULT 0;",
];

/// Connections of a store, all opened at start and never more: SQLite
/// serialises writers anyway, and every connection holds three files (the
/// database, `-wal`, `-shm`) open.
pub const POOL_SIZE: usize = 4;
/// How long a request waits for a free connection before it gives up
/// ([`DirectoryError::Timeout`]: the flow's `timeout` branch).
const POOL_WAIT: Duration = Duration::from_secs(5);
/// Owner read/write only: the database holds PIN hashes (a 4-digit PIN falls
/// to 10 000 guesses offline), names and phone numbers.
const FILE_MODE: u32 = 0o600;

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
/// share it; each call borrows a connection from a fixed pool.
pub struct SqliteDirectory {
    path: PathBuf,
    opts: SqliteOptions,
    idle: Mutex<Vec<Connection>>,
    /// Signalled when a connection goes back to `idle`.
    returned: Condvar,
    /// Argon2 verifications run (real and dummy), for tests and metrics.
    pin_checks: AtomicU64,
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
            self.dir
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(c);
            self.dir.returned.notify_one();
        }
    }
}

/// What the first, short transaction of a PIN check decided.
enum Reservation {
    /// No such customer, or one without a PIN.
    Unknown,
    /// Locked, or every attempt of the budget is taken: refused without hashing.
    Refused { until_unix_ms: i64 },
    /// One attempt is counted; compare the PIN with this hash.
    Granted { hash: String },
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
        // Created by us, private, before SQLite sees it: SQLite gives `-wal`,
        // `-shm` and journals the mode of the database file (and fixes it with
        // fchmod, so the umask does not matter), and its own default is 0644.
        private_file(&path, true)?;
        let opts = SqliteOptions {
            max_pin_attempts: opts.max_pin_attempts.max(1),
            lockout_ms: opts.lockout_ms.max(0),
        };
        let dir = SqliteDirectory {
            path,
            opts,
            idle: Mutex::new(Vec::with_capacity(POOL_SIZE)),
            returned: Condvar::new(),
            pin_checks: AtomicU64::new(0),
        };
        let mut conn = dir.connect()?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(DirectoryError::Corrupt(format!(
                "cannot switch the database to WAL (journal mode is {mode})"
            )));
        }
        migrate(&mut conn)?;
        // Nothing is in flight at start: attempts cut short by a crash stay
        // counted in `failed_pins` (the safe side) but no longer as in flight.
        conn.execute(
            "UPDATE customers SET pins_in_flight = 0 WHERE pins_in_flight != 0",
            [],
        )?;
        let mut idle = vec![conn];
        while idle.len() < POOL_SIZE {
            let c = dir.connect()?;
            // Touch the schema so every connection has its files open now,
            // not at its first request: the fd count stays flat from here on.
            c.query_row("SELECT COUNT(*) FROM schema_version", [], |r| {
                r.get::<_, i64>(0)
            })?;
            idle.push(c);
        }
        *dir.idle.lock().unwrap_or_else(|e| e.into_inner()) = idle;
        // Files made by an older version (or by hand) with a looser mode.
        for suffix in ["", "-wal", "-shm"] {
            let mut p = dir.path.clone().into_os_string();
            p.push(suffix);
            private_file(Path::new(&p), false)?;
        }
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

    /// Argon2 PIN verifications this store has run, the dummy ones for unknown
    /// customers included. Refused attempts (locked, throttled) run none.
    pub fn pin_checks(&self) -> u64 {
        self.pin_checks.load(Ordering::Relaxed)
    }

    /// The attempt counter of a customer and the attempts in flight:
    /// `(failed_pins, pins_in_flight, locked_until)`. See `verify_pin`.
    pub fn pin_state(
        &self,
        customer_id: &str,
    ) -> Result<Option<(u32, u32, Option<i64>)>, DirectoryError> {
        let conn = self.conn()?;
        Ok(conn
            .query_row(
                "SELECT failed_pins, pins_in_flight, locked_until FROM customers WHERE id = ?1",
                [customer_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?)
    }

    fn connect(&self) -> Result<Connection, DirectoryError> {
        let conn = Connection::open(&self.path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")?;
        Ok(conn)
    }

    /// A connection from the pool, waiting up to [`POOL_WAIT`] for one.
    pub(super) fn conn(&self) -> Result<Pooled<'_>, DirectoryError> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let (mut idle, _) = self
            .returned
            .wait_timeout_while(idle, POOL_WAIT, |idle| idle.is_empty())
            .unwrap_or_else(|e| e.into_inner());
        let conn = idle.pop().ok_or(DirectoryError::Timeout)?;
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

    /// First transaction of a PIN check: counts one attempt, or refuses.
    fn reserve_attempt(
        &self,
        customer_id: &str,
        now_unix_ms: i64,
    ) -> Result<Reservation, DirectoryError> {
        let max = i64::from(self.opts.max_pin_attempts);
        let mut conn = self.conn()?;
        // IMMEDIATE: the write lock is taken before the read, so two checks
        // cannot both see the last free attempt.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let row: Option<(Option<String>, i64, Option<i64>)> = tx
            .query_row(
                "SELECT pin_hash, failed_pins, locked_until FROM customers WHERE id = ?1",
                [customer_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let (hash, failed, locked_until) = match row {
            Some((Some(h), f, l)) => (h, f, l),
            _ => return Ok(Reservation::Unknown),
        };
        let failed = match locked_until {
            Some(until) if until > now_unix_ms => {
                return Ok(Reservation::Refused {
                    until_unix_ms: until,
                });
            }
            // The lockout is over: a fresh set of attempts.
            Some(_) => 0,
            None => failed,
        };
        if failed >= max {
            // Every attempt is taken by checks still hashing; if they are all
            // wrong the lock starts about now. Refused without hashing.
            return Ok(Reservation::Refused {
                until_unix_ms: now_unix_ms.saturating_add(self.opts.lockout_ms),
            });
        }
        tx.execute(
            "UPDATE customers SET failed_pins = ?2, pins_in_flight = pins_in_flight + 1,
                 locked_until = NULL
             WHERE id = ?1",
            params![customer_id, failed + 1],
        )?;
        tx.commit()?;
        Ok(Reservation::Granted { hash })
    }

    /// Second transaction of a PIN check: decides the reserved attempt.
    fn settle_attempt(
        &self,
        customer_id: &str,
        right: bool,
        now_unix_ms: i64,
    ) -> Result<PinOutcome, DirectoryError> {
        let max = i64::from(self.opts.max_pin_attempts);
        let conn = self.conn()?;
        // One statement is one atomic compare-and-set: SQLite evaluates the
        // right-hand sides on the row as it was (`pins_in_flight` before the
        // decrement), under the write lock.
        let row: Option<(i64, Option<i64>)> = if right {
            // Right PIN: the failures are forgotten, except the attempts other
            // checks still have in flight, unless a lock was set meanwhile.
            conn.query_row(
                "UPDATE customers SET
                     pins_in_flight = MAX(pins_in_flight - 1, 0),
                     failed_pins = CASE WHEN locked_until IS NULL OR locked_until <= ?2
                         THEN MAX(pins_in_flight - 1, 0) ELSE failed_pins END,
                     locked_until = CASE WHEN locked_until <= ?2 THEN NULL ELSE locked_until END
                 WHERE id = ?1
                 RETURNING failed_pins, locked_until",
                params![customer_id, now_unix_ms],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
        } else {
            // Wrong PIN: the attempt stays counted; the last one of the budget locks.
            conn.query_row(
                "UPDATE customers SET
                     pins_in_flight = MAX(pins_in_flight - 1, 0),
                     locked_until = CASE
                         WHEN locked_until > ?2 THEN locked_until
                         WHEN failed_pins >= ?3 THEN ?4
                         ELSE NULL END
                 WHERE id = ?1
                 RETURNING failed_pins, locked_until",
                params![
                    customer_id,
                    now_unix_ms,
                    max,
                    now_unix_ms.saturating_add(self.opts.lockout_ms)
                ],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
        };
        // Deleted by an import meanwhile.
        let Some((failed, locked_until)) = row else {
            return Err(DirectoryError::NotFound);
        };
        Ok(match locked_until {
            Some(until) if until > now_unix_ms => PinOutcome::Locked {
                until_unix_ms: until,
            },
            _ if right => PinOutcome::Ok,
            _ => PinOutcome::Wrong {
                attempts_left: u32::try_from(max - failed.clamp(0, max)).unwrap_or(0),
            },
        })
    }
}

/// Makes `path` mode 0600 (creating it empty when `create`); a missing file is
/// fine when not creating. Explicit `set_permissions`, so the umask does not matter.
fn private_file(path: &Path, create: bool) -> Result<(), DirectoryError> {
    let fail = |e: std::io::Error| {
        DirectoryError::Config(format!("cannot make {} private: {e}", path.display()))
    };
    if create {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(FILE_MODE)
            .open(path)
            .map_err(fail)?;
    }
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(FILE_MODE)) {
        Ok(()) => Ok(()),
        Err(e) if !create && e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(fail(e)),
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

/// Largest Argon2 costs accepted in an imported hash: a PIN check runs for
/// every call, so a hash asking for gigabytes or minutes is refused at import.
const MAX_IMPORTED_M_KIB: u32 = 64 * 1024;
const MAX_IMPORTED_T: u32 = 16;
const MAX_IMPORTED_P: u32 = 8;

/// Checks a pre-hashed PIN for import: an Argon2id PHC string
/// (`$argon2id$v=19$m=..,t=..,p=..$salt$hash`) with a salt, a hash and
/// bounded costs. The message never repeats the hash.
pub fn check_pin_hash(stored: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(stored).map_err(|_| {
        "`pin_hash` is not a PHC string like $argon2id$v=19$m=..,t=..,p=..$salt$hash".to_string()
    })?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(format!(
            "`pin_hash` must be argon2id, not {}",
            parsed.algorithm.as_str()
        ));
    }
    if parsed.version != Some(0x13) {
        return Err("`pin_hash` must be Argon2 version 19 (v=19)".into());
    }
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err("`pin_hash` needs a salt and a hash".into());
    }
    let params = Params::try_from(&parsed)
        .map_err(|_| "`pin_hash` has invalid Argon2 parameters".to_string())?;
    if params.m_cost() > MAX_IMPORTED_M_KIB
        || params.t_cost() > MAX_IMPORTED_T
        || params.p_cost() > MAX_IMPORTED_P
    {
        return Err(format!(
            "`pin_hash` costs are too high for a PIN check on every call (at most m={MAX_IMPORTED_M_KIB}, t={MAX_IMPORTED_T}, p={MAX_IMPORTED_P})"
        ));
    }
    Ok(())
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

    /// Checks a PIN in three steps, so the slow hash holds no lock and no
    /// connection, yet a burst of checks cannot race the lockout:
    ///
    /// 1. one short `BEGIN IMMEDIATE` transaction *reserves* an attempt: it
    ///    refuses (without hashing) while the customer is locked or while
    ///    `failed_pins` has reached `max_pin_attempts`, else it counts the
    ///    attempt in `failed_pins` and in `pins_in_flight`;
    /// 2. the Argon2 comparison, outside any transaction;
    /// 3. one compare-and-set statement settles it. Wrong: the attempt stays
    ///    counted, and the customer is locked when `failed_pins` has reached
    ///    the maximum. Right: `failed_pins` drops to the attempts still in
    ///    flight, *unless a lock was set meanwhile*: then the right PIN is
    ///    refused too, until the lockout ends.
    ///
    /// The attempt counter `failed_pins` is thus: PINs compared (or being
    /// compared) and not proven right, since the last right PIN or the end of
    /// the last lockout. It never exceeds `max_pin_attempts`; refused attempts
    /// do not count, since they compared nothing.
    fn verify_pin(
        &self,
        customer_id: &str,
        pin: &str,
        now_unix_ms: i64,
    ) -> Result<PinOutcome, DirectoryError> {
        let hash = match self.reserve_attempt(customer_id, now_unix_ms)? {
            Reservation::Unknown => {
                // As slow as a real check: the time does not tell whether the id exists.
                self.pin_checks.fetch_add(1, Ordering::Relaxed);
                dummy_check(pin);
                return Err(DirectoryError::NotFound);
            }
            Reservation::Refused { until_unix_ms } => {
                return Ok(PinOutcome::Locked { until_unix_ms });
            }
            Reservation::Granted { hash } => hash,
        };
        self.pin_checks.fetch_add(1, Ordering::Relaxed);
        let right = pin_matches(pin, &hash);
        self.settle_attempt(customer_id, right, now_unix_ms)
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
