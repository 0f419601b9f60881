//! The SQLite store against real database files in a temporary directory.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use super::*;
use crate::directory::{
    CustomerRecord, DirectoryRequest, DirectoryResponse, ImportError, LookupKey, execute,
};

/// A fresh directory under the system temp dir, removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "phonetree-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }

    pub(crate) fn db(&self) -> PathBuf {
        self.0.join("phonetree.db")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn demo_csv() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/customers.csv")
}

/// The demo data, imported into a new database.
fn demo(t: &TempDir) -> SqliteDirectory {
    let db = SqliteDirectory::open(t.db()).expect("open");
    let report = db.import_csv(demo_csv()).expect("import demo");
    assert_eq!(report.customers, 10);
    db
}

const NOW: i64 = 1_796_000_000_000; // 2026-11-29

fn real_clock() -> std::sync::Arc<dyn crate::directory::Clock> {
    std::sync::Arc::new(crate::runtime::clock::SystemClock::default())
}

#[test]
fn migrations_run_on_an_empty_file_in_wal_mode() {
    let t = TempDir::new("migrate");
    let db = SqliteDirectory::open(t.db()).unwrap();
    assert_eq!(db.schema_version().unwrap(), MIGRATIONS.len() as i64);
    assert_eq!(db.customer_count().unwrap(), 0);
    let conn = db.conn().unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    for table in ["customers", "phones", "accounts", "orders", "appointments"] {
        let n: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1, "{table}");
    }
}

#[test]
fn reopening_applies_nothing_twice_and_keeps_data() {
    let t = TempDir::new("reopen");
    drop(demo(&t));
    for _ in 0..2 {
        let db = SqliteDirectory::open(t.db()).unwrap();
        assert_eq!(db.schema_version().unwrap(), MIGRATIONS.len() as i64);
        assert_eq!(db.customer_count().unwrap(), 10);
        let rows: i64 = db
            .conn()
            .unwrap()
            .query_row("SELECT COUNT(*) FROM schema_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, MIGRATIONS.len() as i64);
    }
}

#[test]
fn a_database_from_a_newer_version_is_refused() {
    let t = TempDir::new("newer");
    drop(SqliteDirectory::open(t.db()).unwrap());
    let conn = rusqlite::Connection::open(t.db()).unwrap();
    conn.execute("INSERT INTO schema_version (version) VALUES (99)", [])
        .unwrap();
    drop(conn);
    match SqliteDirectory::open(t.db()) {
        Err(DirectoryError::SchemaTooNew { found: 99, known }) => {
            assert_eq!(known, MIGRATIONS.len() as i64)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn demo_import_gives_lookups_by_id_and_by_any_writing_of_the_number() {
    let t = TempDir::new("lookup");
    let db = demo(&t);
    let alice = db.customer_by_id("1001").unwrap().expect("alice");
    assert_eq!(alice.name, "Alice Smith");
    assert_eq!(alice.tier, "gold");
    for n in [
        "+15551234567",
        "15551234567",
        "+1 555-123-4567",
        "+1 (555) 123 4567",
    ] {
        assert_eq!(
            db.customer_by_phone(n).unwrap().as_ref(),
            Some(&alice),
            "{n}"
        );
    }
    // Second number of Bob.
    assert_eq!(
        db.customer_by_phone("+15559876543").unwrap().map(|c| c.id),
        Some("1002".into())
    );
    assert_eq!(db.customer_by_phone("+15550000000").unwrap(), None);
    assert_eq!(db.customer_by_phone("anonymous").unwrap(), None);
    assert_eq!(db.customer_by_id("9999").unwrap(), None);
    assert_eq!(
        db.account("1001").unwrap(),
        Some(Account {
            balance_minor: 12345,
            currency: "USD".into()
        })
    );
    assert_eq!(db.account("1004").unwrap().unwrap().balance_minor, -4210);
    let order = db.last_order("1001").unwrap().unwrap();
    assert_eq!(
        (order.status.as_str(), order.shipped_on.as_deref()),
        ("shipped", Some("2026-11-24"))
    );
    assert_eq!(db.last_order("1008").unwrap(), None);
    let appt = db.next_appointment("1001", NOW).unwrap().unwrap();
    assert_eq!(appt.id, "AP-9001");
    assert_eq!(
        appt.local_date_time(),
        Some(("2027-12-03".into(), "14:30".into()))
    );
    // After it starts, there is no next one.
    assert_eq!(
        db.next_appointment("1001", appt.starts_at_unix_ms + 1)
            .unwrap(),
        None
    );
}

#[test]
fn execute_lookup_returns_the_whole_record() {
    let t = TempDir::new("execute");
    let db = demo(&t);
    let r = execute(
        &db,
        &DirectoryRequest::Lookup {
            by: LookupKey::Phone("+15551234567".into()),
        },
        NOW,
    );
    let DirectoryResponse::Found(rec) = r else {
        panic!("{r:?}")
    };
    let CustomerRecord {
        customer,
        account,
        last_order,
        next_appointment,
    } = *rec;
    assert_eq!(customer.id, "1001");
    assert_eq!(account.unwrap().amount(), "123.45");
    assert_eq!(last_order.unwrap().id, "A-5001");
    assert_eq!(next_appointment.unwrap().id, "AP-9001");
    assert_eq!(
        execute(
            &db,
            &DirectoryRequest::Lookup {
                by: LookupKey::Id("42".into())
            },
            NOW
        ),
        DirectoryResponse::NotFound
    );
    assert_eq!(
        execute(
            &db,
            &DirectoryRequest::Lookup {
                by: LookupKey::Id("".into())
            },
            NOW
        ),
        DirectoryResponse::NotFound
    );
}

#[test]
fn a_bad_csv_reports_every_bad_line_and_imports_nothing() {
    let t = TempDir::new("badcsv");
    let db = SqliteDirectory::open(t.db()).unwrap();
    let csv = "\
id,name,phones,pin,balance,currency,appointment_id,appointment_starts_at
2001,Good Row,+15550100001,1234,1.00,USD,,
2002,Bad Pin,+15550100002,12ab,2.00,USD,,
2003,,+15550100003,1234,3.00,USD,,
2004,Dup Phone,+1 555 010 0001,1234,4.00,USD,,
2005,Bad Money,,1234,4.001,USD,,
2006,Bad Time,,1234,,,AP-1,next tuesday
2001,Dup Id,,1234,,,,
2007,Short Row
2008,\"Quoted, with comma\",,4321,,,,
";
    let err = db.import_csv_reader(csv.as_bytes()).unwrap_err();
    let ImportError::Rows(rows) = &err else {
        panic!("{err:?}")
    };
    let lines: Vec<u64> = rows.iter().map(|r| r.line).collect();
    assert_eq!(lines, [3, 4, 5, 6, 7, 8, 9], "{err}");
    let text = err.to_string();
    assert!(
        text.contains("line 3: `pin` must be 4 to 8 digits"),
        "{text}"
    );
    assert!(text.contains("already used on line 2"), "{text}");
    assert!(!text.contains("12ab"), "the PIN is never echoed: {text}");
    assert!(!text.contains("5550100001"), "numbers are masked: {text}");
    // Nothing half-imported: not even the good rows.
    assert_eq!(db.customer_count().unwrap(), 0);
    assert_eq!(db.customer_by_phone("+15550100001").unwrap(), None);
}

#[test]
fn a_conflict_with_existing_data_rolls_back_the_whole_file() {
    let t = TempDir::new("conflict");
    let db = demo(&t);
    // Row 3 takes Alice's number, which the database already has for 1001.
    let csv = "\
id,name,phones,pin
3001,New One,+15550200001,1234
3002,Number Thief,+15551234567,1234
";
    let err = db.import_csv_reader(csv.as_bytes()).unwrap_err();
    let ImportError::Rows(rows) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].line, 3);
    assert!(rows[0].message.contains("another customer"), "{err}");
    assert_eq!(db.customer_by_id("3001").unwrap(), None);
    assert_eq!(db.customer_count().unwrap(), 10);
}

#[test]
fn header_problems_are_reported_on_line_one() {
    let t = TempDir::new("header");
    let db = SqliteDirectory::open(t.db()).unwrap();
    let err = db
        .import_csv_reader("name,colour\nx,red\n".as_bytes())
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("line 1: unknown column `colour`"), "{text}");
    assert!(text.contains("line 1: missing column `id`"), "{text}");
    assert!(matches!(
        db.import_csv_reader("".as_bytes()),
        Err(ImportError::Rows(_))
    ));
    assert!(matches!(
        db.import_csv(t.0.join("missing.csv")),
        Err(ImportError::Io { .. })
    ));
}

#[test]
fn reimport_replaces_a_customer() {
    let t = TempDir::new("reimport");
    let db = demo(&t);
    let csv =
        "id,name,phones,pin,balance,currency\n1001,Alice Smith-Jones,+15551234567,9999,5.00,EUR\n";
    db.import_csv_reader(csv.as_bytes()).unwrap();
    assert_eq!(
        db.customer_by_id("1001").unwrap().unwrap().name,
        "Alice Smith-Jones"
    );
    assert_eq!(db.account("1001").unwrap().unwrap().currency, "EUR");
    assert_eq!(db.last_order("1001").unwrap(), None);
    assert_eq!(db.verify_pin("1001", "9999", NOW).unwrap(), PinOutcome::Ok);
    assert_eq!(db.customer_count().unwrap(), 10);
}

#[test]
fn pins_are_stored_as_salted_argon2id_hashes() {
    let t = TempDir::new("hash");
    let db = demo(&t);
    let conn = db.conn().unwrap();
    let hashes: Vec<String> = conn
        .prepare("SELECT pin_hash FROM customers WHERE pin_hash IS NOT NULL")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(hashes.len(), 9, "1009 has no PIN");
    for h in &hashes {
        assert!(h.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{h}");
        assert!(!h.contains("1234"));
    }
    // Same PIN, different salt.
    assert_ne!(hash_pin("1234").unwrap(), hash_pin("1234").unwrap());
    assert!(pin_matches("1234", &hash_pin("1234").unwrap()));
    assert!(!pin_matches("1234", "not a hash"));
}

#[test]
fn wrong_pins_lock_the_customer_until_the_lockout_expires() {
    let t = TempDir::new("lockout");
    let db = SqliteDirectory::open_with(
        t.db(),
        SqliteOptions {
            max_pin_attempts: 3,
            lockout_ms: 60_000,
        },
    )
    .unwrap();
    db.import_csv(demo_csv()).unwrap();
    assert_eq!(
        db.verify_pin("1001", "0000", NOW).unwrap(),
        PinOutcome::Wrong { attempts_left: 2 }
    );
    assert_eq!(
        db.verify_pin("1001", "1111", NOW + 1).unwrap(),
        PinOutcome::Wrong { attempts_left: 1 }
    );
    let until = NOW + 2 + 60_000;
    assert_eq!(
        db.verify_pin("1001", "2222", NOW + 2).unwrap(),
        PinOutcome::Locked {
            until_unix_ms: until
        }
    );
    // Even the right PIN is refused while locked, and the lock survives a restart.
    drop(db);
    let db = SqliteDirectory::open_with(
        t.db(),
        SqliteOptions {
            max_pin_attempts: 3,
            lockout_ms: 60_000,
        },
    )
    .unwrap();
    assert_eq!(
        db.verify_pin("1001", "1234", until - 1).unwrap(),
        PinOutcome::Locked {
            until_unix_ms: until
        }
    );
    // Other customers are not affected.
    assert_eq!(db.verify_pin("1002", "2468", NOW).unwrap(), PinOutcome::Ok);
    // Expired: a fresh set of attempts.
    assert_eq!(
        db.verify_pin("1001", "9999", until).unwrap(),
        PinOutcome::Wrong { attempts_left: 2 }
    );
    assert_eq!(
        db.verify_pin("1001", "1234", until + 1).unwrap(),
        PinOutcome::Ok
    );
}

#[test]
fn a_right_pin_resets_the_failure_count() {
    let t = TempDir::new("reset");
    let db = demo(&t);
    assert_eq!(
        db.verify_pin("1003", "0000", NOW).unwrap(),
        PinOutcome::Wrong { attempts_left: 2 }
    );
    assert_eq!(db.verify_pin("1003", "1357", NOW).unwrap(), PinOutcome::Ok);
    assert_eq!(
        db.verify_pin("1003", "0000", NOW).unwrap(),
        PinOutcome::Wrong { attempts_left: 2 }
    );
}

#[test]
fn unknown_customers_and_customers_without_pin_are_not_found() {
    let t = TempDir::new("nopin");
    let db = demo(&t);
    assert!(matches!(
        db.verify_pin("4242", "1234", NOW),
        Err(DirectoryError::NotFound)
    ));
    assert!(matches!(
        db.verify_pin("1009", "", NOW),
        Err(DirectoryError::NotFound)
    ));
}

#[test]
fn a_confirmed_appointment_stays_confirmed_after_a_restart() {
    let t = TempDir::new("confirm");
    let db = demo(&t);
    db.set_appointment_status("1001", "AP-9001", AppointmentStatus::Confirmed)
        .unwrap();
    // Someone else's appointment cannot be touched.
    assert!(matches!(
        db.set_appointment_status("1002", "AP-9003", AppointmentStatus::Cancelled),
        Err(DirectoryError::NotFound)
    ));
    drop(db);
    let db = SqliteDirectory::open(t.db()).unwrap();
    let a = db.next_appointment("1001", NOW).unwrap().unwrap();
    assert_eq!(a.status, AppointmentStatus::Confirmed);
    assert_eq!(
        db.next_appointment("1003", NOW).unwrap().unwrap().status,
        AppointmentStatus::Confirmed
    );
    // A cancelled appointment is no longer "next".
    db.set_appointment_status("1001", "AP-9001", AppointmentStatus::Cancelled)
        .unwrap();
    drop(db);
    let db = SqliteDirectory::open(t.db()).unwrap();
    assert_eq!(db.next_appointment("1001", NOW).unwrap(), None);
}

#[test]
fn open_with_config_imports_only_into_an_empty_database() {
    let t = TempDir::new("config");
    let cfg = DirectoryConfig {
        path: t.db(),
        import: Some(demo_csv()),
        ..DirectoryConfig::default()
    };
    let dir = crate::directory::open(&cfg, real_clock()).unwrap();
    dir.set_appointment_status("1001", "AP-9001", AppointmentStatus::Confirmed)
        .unwrap();
    drop(dir);
    // A restart does not import again over the changes.
    let dir = crate::directory::open(&cfg, real_clock()).unwrap();
    assert_eq!(
        dir.next_appointment("1001", NOW).unwrap().unwrap().status,
        AppointmentStatus::Confirmed
    );
    let bad = DirectoryConfig {
        lockout: "soon".into(),
        ..cfg
    };
    assert!(matches!(
        crate::directory::open(&bad, real_clock()),
        Err(DirectoryError::Config(_))
    ));
}

#[test]
fn the_store_is_shared_by_threads() {
    let t = TempDir::new("threads");
    let db = std::sync::Arc::new(demo(&t));
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let db = std::sync::Arc::clone(&db);
            std::thread::spawn(move || {
                for _ in 0..20 {
                    let id = format!("100{}", i + 1);
                    assert!(db.customer_by_id(&id).unwrap().is_some());
                    assert!(db.account(&id).unwrap().is_some());
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

// -- PIN attempts under concurrency ---------------------------------------------

fn locked_store(t: &TempDir, lockout_ms: i64) -> SqliteDirectory {
    let db = SqliteDirectory::open_with(
        t.db(),
        SqliteOptions {
            max_pin_attempts: 3,
            lockout_ms,
        },
    )
    .unwrap();
    db.import_csv(demo_csv()).unwrap();
    db
}

/// Open descriptors of this process that point into `dir`: the database,
/// `-wal` and `-shm` of every pooled connection. (Only these: other tests of
/// the same process open and close files at the same time.)
fn fds_into(dir: &std::path::Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.starts_with(dir))
        .count()
}

#[test]
fn concurrent_wrong_pins_cannot_race_the_lockout() {
    const LOCKOUT: i64 = 15 * 60 * 1000;
    const THREADS: usize = 200;
    let t = TempDir::new("race");
    let db = std::sync::Arc::new(locked_store(&t, LOCKOUT));
    let fds_before = fds_into(&t.0);
    assert!(fds_before > 0, "the pool keeps its files open");
    let checks_before = db.pin_checks();
    let start = std::sync::Arc::new(std::sync::Barrier::new(THREADS + 1));
    let wrong: Vec<_> = (0..THREADS)
        .map(|i| {
            let (db, start) = (db.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                db.verify_pin("1001", &format!("{:04}", 5000 + i), NOW)
                    .unwrap()
            })
        })
        .collect();
    let right = {
        let (db, start) = (db.clone(), start.clone());
        std::thread::spawn(move || {
            start.wait();
            std::thread::sleep(std::time::Duration::from_millis(20));
            db.verify_pin("1001", "1234", NOW + 20).unwrap()
        })
    };
    let outcomes: Vec<PinOutcome> = wrong.into_iter().map(|h| h.join().unwrap()).collect();
    let right = right.join().unwrap();
    let until = NOW + LOCKOUT;
    assert!(
        matches!(right, PinOutcome::Locked { .. }),
        "the right PIN 20 ms into the burst is refused: {right:?}"
    );
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, PinOutcome::Wrong { .. } | PinOutcome::Locked { .. })),
        "{outcomes:?}"
    );
    let wrongs = outcomes
        .iter()
        .filter(|o| matches!(o, PinOutcome::Wrong { .. }))
        .count();
    assert!(wrongs <= 2, "at most max-1 plain wrongs: {wrongs}");
    // The attempt counter: PINs actually compared since the last success,
    // none in flight any more, and exactly that many Argon2 runs.
    assert_eq!(db.pin_state("1001").unwrap(), Some((3, 0, Some(until))));
    assert_eq!(db.pin_checks() - checks_before, 3);
    // Locked, whatever is entered, until the lockout ends.
    assert_eq!(
        db.verify_pin("1001", "1234", until - 1).unwrap(),
        PinOutcome::Locked {
            until_unix_ms: until
        }
    );
    assert_eq!(
        db.verify_pin("1001", "1234", until).unwrap(),
        PinOutcome::Ok
    );
    assert_eq!(db.pin_state("1001").unwrap(), Some((0, 0, None)));
    // No descriptor left behind by the burst.
    assert_eq!(fds_into(&t.0), fds_before);
}

#[test]
fn correct_pin_after_lock_is_refused_until_expiry() {
    let t = TempDir::new("after-lock");
    let db = locked_store(&t, 60_000);
    for (i, pin) in ["0000", "1111"].iter().enumerate() {
        assert!(matches!(
            db.verify_pin("1002", pin, NOW + i as i64).unwrap(),
            PinOutcome::Wrong { .. }
        ));
    }
    let until = NOW + 2 + 60_000;
    assert_eq!(
        db.verify_pin("1002", "2222", NOW + 2).unwrap(),
        PinOutcome::Locked {
            until_unix_ms: until
        }
    );
    let checks = db.pin_checks();
    for at in [NOW + 3, NOW + 30_000, until - 1] {
        assert_eq!(
            db.verify_pin("1002", "2468", at).unwrap(),
            PinOutcome::Locked {
                until_unix_ms: until
            },
            "right PIN at {at}"
        );
    }
    assert_eq!(db.pin_checks(), checks, "refused without hashing");
    assert_eq!(db.pin_state("1002").unwrap(), Some((3, 0, Some(until))));
    assert_eq!(
        db.verify_pin("1002", "2468", until).unwrap(),
        PinOutcome::Ok
    );
}

#[test]
fn correct_pin_does_not_clear_a_lock_set_meanwhile() {
    let t = TempDir::new("meanwhile");
    let db = locked_store(&t, 60_000);
    // The right PIN's attempt is reserved first and is still hashing...
    let Reservation::Granted { hash } = db.reserve_attempt("1003", NOW).unwrap() else {
        panic!("first attempt is granted")
    };
    // ...while two wrong ones take the rest of the budget and lock.
    assert_eq!(
        db.verify_pin("1003", "0000", NOW).unwrap(),
        PinOutcome::Wrong { attempts_left: 1 }
    );
    let until = NOW + 60_000;
    assert_eq!(
        db.verify_pin("1003", "0001", NOW).unwrap(),
        PinOutcome::Locked {
            until_unix_ms: until
        }
    );
    // Now the right PIN's comparison ends: it does not unlock.
    assert!(pin_matches("1357", &hash));
    assert_eq!(
        db.settle_attempt("1003", true, NOW).unwrap(),
        PinOutcome::Locked {
            until_unix_ms: until
        }
    );
    assert_eq!(db.pin_state("1003").unwrap(), Some((3, 0, Some(until))));

    // Without a lock meanwhile, a right PIN keeps the attempts others still
    // have in flight counted, and forgets the finished wrong ones.
    assert_eq!(
        db.verify_pin("1004", "0000", NOW).unwrap(),
        PinOutcome::Wrong { attempts_left: 2 }
    );
    let Reservation::Granted { .. } = db.reserve_attempt("1004", NOW).unwrap() else {
        panic!()
    };
    let Reservation::Granted { .. } = db.reserve_attempt("1004", NOW).unwrap() else {
        panic!()
    };
    assert!(matches!(
        db.reserve_attempt("1004", NOW).unwrap(),
        Reservation::Refused { .. }
    ));
    assert_eq!(
        db.settle_attempt("1004", true, NOW).unwrap(),
        PinOutcome::Ok
    );
    assert_eq!(db.pin_state("1004").unwrap(), Some((1, 1, None)));
}

#[test]
fn an_attempt_cut_short_by_a_crash_stays_counted() {
    let t = TempDir::new("crash");
    let db = locked_store(&t, 60_000);
    let Reservation::Granted { .. } = db.reserve_attempt("1005", NOW).unwrap() else {
        panic!()
    };
    drop(db);
    let db = SqliteDirectory::open_with(
        t.db(),
        SqliteOptions {
            max_pin_attempts: 3,
            lockout_ms: 60_000,
        },
    )
    .unwrap();
    // Counted (the safe side), no longer in flight.
    assert_eq!(db.pin_state("1005").unwrap(), Some((1, 0, None)));
    assert_eq!(
        db.verify_pin("1005", "0000", NOW).unwrap(),
        PinOutcome::Wrong { attempts_left: 1 }
    );
}

#[test]
fn unknown_ids_cost_a_hash_and_answer_not_found() {
    let t = TempDir::new("unknown");
    let db = demo(&t);
    let before = db.pin_checks();
    assert!(matches!(
        db.verify_pin("7777", "1234", NOW),
        Err(DirectoryError::NotFound)
    ));
    assert_eq!(db.pin_checks(), before + 1, "a dummy Argon2 run");
}

// -- the throttle across customers, on a real store ---------------------------------

fn origin(caller: &str, ip: &str) -> crate::directory::Origin {
    crate::directory::Origin {
        caller: caller.into(),
        source: Some(ip.parse().unwrap()),
    }
}

#[test]
fn caller_throttled_across_customers() {
    use crate::directory::{Directory as _, ThrottleSettings, Throttled};
    const WINDOW: i64 = 15 * 60 * 1000;
    let t = TempDir::new("throttle");
    let store = SqliteDirectory::open(t.db()).unwrap();
    store.import_csv(demo_csv()).unwrap();
    let dir = Throttled::new(
        Box::new(store),
        ThrottleSettings {
            max_per_caller: 5,
            max_per_source: 8,
            window_ms: WINDOW,
        },
    );
    let attacker = origin("+1 555 000 1111", "192.0.2.7");
    // One wrong PIN on each of five customers (an unknown id counts too).
    for (i, id) in ["1001", "1002", "1003", "4242", "1004"].iter().enumerate() {
        let r = dir.verify_pin_from(&attacker, id, "0000", NOW + i as i64);
        assert!(
            matches!(
                r,
                Ok(PinOutcome::Wrong { .. }) | Err(DirectoryError::NotFound)
            ),
            "{id}: {r:?}"
        );
    }
    // The sixth fails fast, whatever the customer, the right PIN included...
    for id in ["1005", "1006", "1002"] {
        assert_eq!(
            dir.verify_pin_from(&attacker, id, "2468", NOW + 10)
                .unwrap(),
            PinOutcome::Locked {
                until_unix_ms: NOW + WINDOW
            },
            "{id}"
        );
    }
    // ...and never reaches those customers' counters.
    let sqlite = SqliteDirectory::open(t.db()).unwrap();
    assert_eq!(sqlite.pin_state("1005").unwrap(), Some((0, 0, None)));
    assert_eq!(sqlite.pin_state("1002").unwrap(), Some((1, 0, None)));
    // The same number written differently is the same caller.
    assert!(matches!(
        dir.verify_pin_from(
            &origin("+15550001111", "198.51.100.1"),
            "1006",
            "0000",
            NOW + 11
        ),
        Ok(PinOutcome::Locked { .. })
    ));
    // Customer 1002 calling from their own number still gets in.
    let bob = origin("+15551234568", "198.51.100.2");
    assert_eq!(
        dir.verify_pin_from(&bob, "1002", "2468", NOW + 12).unwrap(),
        PinOutcome::Ok
    );
    // A window after the first failure, the caller has a place again.
    assert!(matches!(
        dir.verify_pin_from(&attacker, "1006", "0000", NOW + WINDOW)
            .unwrap(),
        PinOutcome::Wrong { .. }
    ));

    // Many numbers from one source: the source limit (8) stops them.
    let mut refused = 0;
    for i in 0..12 {
        let o = origin(&format!("+1555020{i:04}"), "203.0.113.9");
        if let Ok(PinOutcome::Locked { .. }) = dir.verify_pin_from(&o, "4243", "0000", NOW) {
            refused += 1;
        }
    }
    assert_eq!(refused, 4, "8 failures from the source, then refused");
}

#[test]
fn concurrent_checks_from_one_caller_get_only_its_budget_through() {
    use crate::directory::{Directory as _, ThrottleSettings, Throttled};
    let t = TempDir::new("throttle-race");
    let store = SqliteDirectory::open(t.db()).unwrap();
    store.import_csv(demo_csv()).unwrap();
    let dir = std::sync::Arc::new(Throttled::new(
        Box::new(store),
        ThrottleSettings {
            max_per_caller: 5,
            max_per_source: 0,
            window_ms: 60_000,
        },
    ));
    let start = std::sync::Arc::new(std::sync::Barrier::new(50));
    let hs: Vec<_> = (0..50)
        .map(|i| {
            let (dir, start) = (dir.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                let id = format!("100{}", i % 8 + 1);
                dir.verify_pin_from(&origin("+15550003333", "192.0.2.1"), &id, "9999", NOW)
                    .unwrap()
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let sqlite = SqliteDirectory::open(t.db()).unwrap();
    let counted: u32 = (1..=8)
        .map(|n| sqlite.pin_state(&format!("100{n}")).unwrap().unwrap().0)
        .sum();
    assert_eq!(counted, 5, "only the caller's 5 attempts reached the store");
    assert_eq!(dir.throttle().caller_load("+15550003333", NOW), 5);
}

// -- import of pre-hashed PINs ------------------------------------------------------

#[test]
fn import_accepts_prehashed_pins() {
    let t = TempDir::new("prehashed");
    let db = SqliteDirectory::open(t.db()).unwrap();
    let hash = hash_pin("4711").unwrap();
    let csv =
        format!("id,name,pin,pin_hash\n3001,Hashed Helen,,\"{hash}\"\n3002,Plain Paul,2222,\n");
    let report = db.import_csv_reader(csv.as_bytes()).unwrap();
    assert_eq!(report.customers, 2);
    assert_eq!(db.verify_pin("3001", "4711", NOW).unwrap(), PinOutcome::Ok);
    assert_eq!(
        db.verify_pin("3001", "1111", NOW).unwrap(),
        PinOutcome::Wrong { attempts_left: 2 }
    );
    assert_eq!(db.verify_pin("3002", "2222", NOW).unwrap(), PinOutcome::Ok);
    let stored: String = db
        .conn()
        .unwrap()
        .query_row(
            "SELECT pin_hash FROM customers WHERE id = '3001'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, hash, "stored as given");
}

#[test]
fn import_rejects_bad_hash_with_line_number() {
    let t = TempDir::new("badhash");
    let db = SqliteDirectory::open(t.db()).unwrap();
    let good = hash_pin("4711").unwrap();
    let bcrypt = "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW";
    let argon2i = good.replacen("$argon2id$", "$argon2i$", 1);
    let greedy = good.replacen("m=7168", "m=4194304", 1);
    let csv = format!(
        "id,name,pin,pin_hash\n\
         3001,Fine,,\"{good}\"\n\
         3002,Garbage,,not-a-hash\n\
         3003,Bcrypt,,\"{bcrypt}\"\n\
         3004,Argon2i,,\"{argon2i}\"\n\
         3005,Both,1234,\"{good}\"\n\
         3006,Greedy,,\"{greedy}\"\n"
    );
    let err = db.import_csv_reader(csv.as_bytes()).unwrap_err();
    let ImportError::Rows(rows) = &err else {
        panic!("{err:?}")
    };
    let lines: Vec<u64> = rows.iter().map(|r| r.line).collect();
    assert_eq!(lines, [3, 4, 5, 6, 7], "{err}");
    let text = err.to_string();
    assert!(
        text.contains("line 3: `pin_hash` is not a PHC string"),
        "{text}"
    );
    assert!(
        text.contains("line 5: `pin_hash` must be argon2id"),
        "{text}"
    );
    assert!(
        text.contains("line 6: give `pin` or `pin_hash`, not both"),
        "{text}"
    );
    assert!(
        text.contains("line 7: `pin_hash` costs are too high"),
        "{text}"
    );
    assert!(!text.contains(&good[30..]), "hashes are not echoed: {text}");
    assert_eq!(db.customer_count().unwrap(), 0, "nothing imported");
}

// -- file modes ----------------------------------------------------------------------

#[test]
fn database_files_are_0600() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777
    };
    let with = |t: &TempDir, suffix: &str| {
        let mut p = t.db().into_os_string();
        p.push(suffix);
        PathBuf::from(p)
    };
    // A new database in a new data directory.
    let t = TempDir::new("modes");
    let db = demo(&t);
    db.set_appointment_status("1001", "AP-9001", AppointmentStatus::Confirmed)
        .unwrap();
    for suffix in ["", "-wal", "-shm"] {
        assert_eq!(mode(&with(&t, suffix)), 0o600, "phonetree.db{suffix}");
    }
    drop(db);
    // An existing world-readable database is made private when opened.
    let t = TempDir::new("modes-old");
    drop(SqliteDirectory::open(t.db()).unwrap());
    for suffix in ["", "-wal", "-shm"] {
        let p = with(&t, suffix);
        if p.exists() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    let db = SqliteDirectory::open(t.db()).unwrap();
    db.import_csv(demo_csv()).unwrap();
    for suffix in ["", "-wal", "-shm"] {
        assert_eq!(mode(&with(&t, suffix)), 0o600, "phonetree.db{suffix}");
    }
}

// -- what a caller hears: unknown id vs wrong PIN, on the demo flow ---------------

/// A scripted caller whose directory requests go to a real store; it times
/// each PIN check on the wall clock.
struct AgainstStore<'a> {
    keys: crate::flow::testcase::Scripted,
    store: &'a dyn crate::directory::Directory,
    pin_check_times: Vec<std::time::Duration>,
}

impl crate::flow::testcase::Caller for AgainstStore<'_> {
    fn keys(
        &mut self,
        now: std::time::Duration,
        listening: bool,
    ) -> Vec<(std::time::Duration, crate::media::types::Digit)> {
        self.keys.keys(now, listening)
    }

    fn directory(&mut self, request: &DirectoryRequest) -> Option<DirectoryResponse> {
        let t = std::time::Instant::now();
        let r = execute(self.store, request, NOW);
        if matches!(request, DirectoryRequest::VerifyPin { .. }) {
            self.pin_check_times.push(t.elapsed());
        }
        Some(r)
    }
}

/// What the caller perceives of a call: each prompt and the time it starts,
/// timeouts, and how the call ends (not the keys: they are the caller's own).
fn heard(
    trace: &crate::flow::testcase::Trace,
    name: &dyn Fn(crate::media::types::PromptId) -> String,
) -> Vec<String> {
    use crate::flow::testcase::TraceEvent as E;
    trace
        .events
        .iter()
        .filter_map(|(at, e)| match e {
            E::Play { prompts, .. } => Some(format!(
                "{:?} play {}",
                at,
                prompts
                    .iter()
                    .map(|p| name(*p))
                    .collect::<Vec<_>>()
                    .join(",")
            )),
            E::Stop | E::Timeout | E::Hangup | E::Transfer(_) | E::Limit => {
                Some(format!("{at:?} {e:?}"))
            }
            // Queue events do not happen in the directory timing cases.
            _ => None,
        })
        .collect()
}

fn median(mut v: Vec<std::time::Duration>) -> std::time::Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
fn unknown_id_and_wrong_pin_look_the_same() {
    use crate::flow::testcase::{Scripted, Step, drive};
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let catalog = crate::catalog::Catalog::load(&repo.join("flows"), &repo.join("prompts"), 1)
        .expect("demo catalog");
    let t = TempDir::new("same");
    let cfg = DirectoryConfig {
        path: t.db(),
        import: Some(demo_csv()),
        ..DirectoryConfig::default()
    };
    let store = crate::directory::open(&cfg, real_clock()).unwrap();
    let prompts = catalog.prompts.clone();
    let len =
        |p: crate::media::types::PromptId| prompts.get(p).map(|p| p.duration()).unwrap_or_default();
    let name = |p: crate::media::types::PromptId| crate::flow::testcase::prompt_name(&prompts, p);
    let call = |caller: &str, digits: &str| {
        let mut c = AgainstStore {
            keys: Scripted::new(
                Step::groups(digits).unwrap(),
                std::time::Duration::from_millis(300),
            ),
            store: store.as_ref(),
            pin_check_times: Vec::new(),
        };
        let flow = catalog.flows.route("ivr").unwrap();
        let trace = drive(
            catalog.flows.clone(),
            flow,
            crate::flow::CallInfo {
                caller: caller.into(),
                dialled: "ivr".into(),
            },
            None,
            std::time::Duration::from_secs(120),
            &len,
            &mut c,
        );
        (trace, c.pin_check_times)
    };
    // Neither caller's number is on file: both type an ID and a PIN, twice.
    let (unknown, unknown_times) = call("+15550009991", "3,4321#,1111,9876#,2222");
    let (wrong, wrong_times) = call("+15550009992", "3,1001#,1111,1001#,2222");
    let (a, b) = (heard(&unknown, &name), heard(&wrong, &name));
    assert_eq!(a, b, "the caller hears the same call");
    assert_eq!(unknown.path, wrong.path);
    assert!(
        a.iter().any(|l| l.ends_with("play en/details-mismatch")),
        "{a:#?}"
    );
    assert!(
        !a.iter()
            .any(|l| l.contains("customer-not-found") || l.contains("pin-wrong")),
        "{a:#?}"
    );
    assert_eq!(unknown.path.last().map(String::as_str), Some("agent_queue"));
    assert!(unknown.path.iter().any(|n| n == "agent_transfer"));
    // The store was asked the same number of PIN checks...
    assert_eq!((unknown_times.len(), wrong_times.len()), (2, 2));
    // ...and answers an unknown id as slowly as a wrong PIN (a dummy Argon2
    // run): without it the unknown id would answer ~100x faster. Medians of
    // interleaved samples, so a busy machine slows both alike.
    let (mut u, mut w) = (unknown_times, wrong_times);
    for i in 0..5 {
        let t0 = std::time::Instant::now();
        let _ = store.verify_pin(&format!("88{i:02}"), "1111", NOW);
        u.push(t0.elapsed());
        let t0 = std::time::Instant::now();
        let _ = store.verify_pin(&format!("100{}", i + 4), "1111", NOW);
        w.push(t0.elapsed());
    }
    let (mu, mw) = (median(u), median(w));
    assert!(mu * 3 >= mw, "unknown id {mu:?} vs wrong PIN {mw:?}");
}
