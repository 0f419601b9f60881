//! The HTTP store against an HTTP server in the test (a `TcpListener` thread
//! on 127.0.0.1), on a fake clock for the breaker, the cache and backoff.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use super::*;
use crate::directory::{DirectoryRequest, DirectoryResponse, LookupKey, execute};

/// A clock that only moves when told to (or when the store "sleeps").
#[derive(Default)]
struct FakeClock {
    ms: AtomicU64,
    slept: Mutex<Vec<Duration>>,
}

impl FakeClock {
    fn advance(&self, d: Duration) {
        self.ms.fetch_add(d.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now_ms(&self) -> u64 {
        self.ms.load(Ordering::SeqCst)
    }
    fn sleep(&self, d: Duration) {
        self.slept.lock().unwrap().push(d);
        self.advance(d);
    }
}

/// What the test server received.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    body: String,
}

type Handler = dyn Fn(&Seen) -> (Duration, String) + Send + Sync;

/// An HTTP/1.1 server answering each request with the handler's raw response
/// after the handler's delay. Stops accepting when dropped.
struct Server {
    port: u16,
    hits: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn start(handler: impl Fn(&Seen) -> (Duration, String) + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (h2, s2, st2) = (hits.clone(), seen.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut conn) = conn else { continue };
                let (h, s, handler) = (h2.clone(), s2.clone(), handler.clone());
                std::thread::spawn(move || {
                    let Some(req) = read_request(&mut conn) else {
                        return;
                    };
                    h.fetch_add(1, Ordering::SeqCst);
                    s.lock().unwrap().push(req.clone());
                    let (delay, response) = handler(&req);
                    std::thread::sleep(delay);
                    let _ = conn.write_all(response.as_bytes());
                });
            }
        });
        Server {
            port,
            hits,
            seen,
            stop,
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn settings(&self) -> HttpSettings {
        HttpSettings {
            host: "127.0.0.1".into(),
            port: self.port,
            base_path: "/crm".into(),
            timeout: Duration::from_millis(500),
            retries: 2,
            backoff: Duration::from_millis(100),
            breaker_failures: 3,
            breaker_cooldown: Duration::from_secs(10),
            cache_ttl: Duration::from_secs(30),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn read_request(conn: &mut TcpStream) -> Option<Seen> {
    let mut r = BufReader::new(conn.try_clone().ok()?);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        if h == "\r\n" || h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).ok()?;
    Some(Seen {
        method,
        path,
        body: String::from_utf8(body).ok()?,
    })
}

fn json(status: u16, body: &str) -> String {
    format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// A small CRM: customer 1001 (Alice, +15551234567) and nothing else.
fn crm(req: &Seen) -> (Duration, String) {
    let r = match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/crm/customers/1001") | ("GET", "/crm/customers/by-phone/15551234567") => {
            json(200, r#"{"id":"1001","name":"Alice Smith","tier":"gold"}"#)
        }
        ("GET", "/crm/customers/1001/account") => {
            json(200, r#"{"balance_minor":12345,"currency":"USD"}"#)
        }
        ("GET", "/crm/customers/1001/last-order") => json(
            200,
            r#"{"id":"A-1","status":"shipped","placed_on":"2026-11-20","shipped_on":"2026-11-24"}"#,
        ),
        ("GET", p) if p.starts_with("/crm/customers/1001/next-appointment?after=") => json(
            200,
            r#"{"id":"AP-1","starts_at":"2027-12-03T14:30:00-05:00","status":"scheduled"}"#,
        ),
        ("POST", "/crm/customers/1001/verify-pin") if req.body.contains(r#""pin":"1234""#) => {
            json(200, r#"{"result":"ok"}"#)
        }
        ("POST", "/crm/customers/1001/verify-pin") => {
            json(200, r#"{"result":"wrong","attempts_left":2}"#)
        }
        ("PUT", "/crm/customers/1001/appointments/AP-1") => {
            "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n".to_string()
        }
        _ => json(404, r#"{"error":"not found"}"#),
    };
    (Duration::ZERO, r)
}

fn store(server: &Server, s: HttpSettings) -> (HttpDirectory, Arc<FakeClock>) {
    let clock = Arc::new(FakeClock::default());
    let _ = server;
    (HttpDirectory::with_clock(s, clock.clone()).unwrap(), clock)
}

#[test]
fn lookups_pin_and_update_succeed_against_the_crm() {
    let server = Server::start(crm);
    let (dir, _clock) = store(&server, server.settings());
    let alice = dir.customer_by_id("1001").unwrap().unwrap();
    assert_eq!(
        (
            alice.name.as_str(),
            alice.tier.as_str(),
            alice.language.as_str()
        ),
        ("Alice Smith", "gold", "en")
    );
    assert_eq!(
        dir.customer_by_phone("+1 555-123-4567").unwrap(),
        Some(alice)
    );
    assert_eq!(dir.customer_by_id("4242").unwrap(), None);
    assert_eq!(dir.customer_by_phone("anonymous").unwrap(), None);
    assert_eq!(dir.verify_pin("1001", "1234", 5).unwrap(), PinOutcome::Ok);
    assert_eq!(
        dir.verify_pin("1001", "9999", 5).unwrap(),
        PinOutcome::Wrong { attempts_left: 2 }
    );
    assert!(matches!(
        dir.verify_pin("4242", "1234", 5),
        Err(DirectoryError::NotFound)
    ));
    dir.set_appointment_status("1001", "AP-1", AppointmentStatus::Confirmed)
        .unwrap();
    assert!(matches!(
        dir.set_appointment_status("1001", "AP-2", AppointmentStatus::Confirmed),
        Err(DirectoryError::NotFound)
    ));
    let put = server
        .seen
        .lock()
        .unwrap()
        .iter()
        .find(|s| s.method == "PUT")
        .cloned()
        .unwrap();
    assert_eq!(put.body, r#"{"status":"confirmed"}"#);
    // The whole lookup, as a flow asks for it.
    let r = execute(
        &dir,
        &DirectoryRequest::Lookup {
            by: LookupKey::Phone("+15551234567".into()),
        },
        1_796_000_000_000,
    );
    let DirectoryResponse::Found(rec) = r else {
        panic!("{r:?}")
    };
    assert_eq!(rec.account.unwrap().amount(), "123.45");
    assert_eq!(
        rec.last_order.unwrap().shipped_on.as_deref(),
        Some("2026-11-24")
    );
    assert_eq!(rec.next_appointment.unwrap().id, "AP-1");
}

#[test]
fn ids_are_percent_encoded_in_paths() {
    let server = Server::start(crm);
    let (dir, _) = store(&server, server.settings());
    assert_eq!(dir.customer_by_id("a/b c").unwrap(), None);
    assert_eq!(
        server.seen.lock().unwrap()[0].path,
        "/crm/customers/a%2Fb%20c"
    );
}

#[test]
fn a_slow_answer_is_a_timeout() {
    let server = Server::start(|req| {
        let (_, r) = crm(req);
        (Duration::from_millis(1500), r)
    });
    let s = HttpSettings {
        timeout: Duration::from_millis(200),
        retries: 1,
        ..server.settings()
    };
    let (dir, clock) = store(&server, s);
    let t = Instant::now();
    assert!(matches!(
        dir.customer_by_id("1001"),
        Err(DirectoryError::Timeout)
    ));
    // Two attempts of 200 ms each, not the server's 1.5 s.
    assert!(
        t.elapsed() < Duration::from_millis(1200),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(server.hits(), 2);
    assert_eq!(*clock.slept.lock().unwrap(), [Duration::from_millis(100)]);
    // A flow hears it as its `timeout` branch.
    assert_eq!(
        execute(
            &dir,
            &DirectoryRequest::Lookup {
                by: LookupKey::Id("1001".into())
            },
            0
        ),
        DirectoryResponse::TimedOut
    );
}

#[test]
fn server_errors_are_retried_with_backoff_then_reported() {
    let server = Server::start(|_| (Duration::ZERO, json(500, "{}")));
    let (dir, clock) = store(&server, server.settings());
    assert!(matches!(
        dir.customer_by_id("1001"),
        Err(DirectoryError::Status(500))
    ));
    assert_eq!(server.hits(), 3, "1 attempt + 2 retries");
    assert_eq!(
        *clock.slept.lock().unwrap(),
        [Duration::from_millis(100), Duration::from_millis(200)]
    );
    // The PIN check is not idempotent: never retried after the server saw it.
    assert!(matches!(
        dir.verify_pin("1001", "1234", 0),
        Err(DirectoryError::Status(500))
    ));
    assert_eq!(server.hits(), 4);
    let r = execute(
        &dir,
        &DirectoryRequest::VerifyPin {
            customer_id: "1001".into(),
            pin: "1234".into(),
            origin: crate::directory::Origin::default(),
        },
        0,
    );
    let DirectoryResponse::Failed(msg) = r else {
        panic!("{r:?}")
    };
    assert!(!msg.contains("1234"), "{msg}");
}

#[test]
fn a_refused_connection_is_retried_and_reported() {
    // A port nobody listens on: bind, note the port, close.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = HttpSettings {
        host: "127.0.0.1".into(),
        port,
        base_path: String::new(),
        timeout: Duration::from_millis(300),
        retries: 1,
        backoff: Duration::from_millis(10),
        breaker_failures: 5,
        breaker_cooldown: Duration::from_secs(1),
        cache_ttl: Duration::ZERO,
    };
    let clock = Arc::new(FakeClock::default());
    let dir = HttpDirectory::with_clock(s, clock.clone()).unwrap();
    assert!(matches!(
        dir.verify_pin("1", "1234", 0),
        Err(DirectoryError::Connect(_))
    ));
    assert_eq!(clock.slept.lock().unwrap().len(), 1, "retried once");
}

#[test]
fn the_breaker_opens_after_consecutive_failures_and_closes_after_a_good_trial() {
    let healthy = Arc::new(AtomicBool::new(false));
    let h = healthy.clone();
    let server = Server::start(move |req| {
        if h.load(Ordering::SeqCst) {
            crm(req)
        } else {
            (Duration::ZERO, json(503, "{}"))
        }
    });
    let s = HttpSettings {
        retries: 0,
        cache_ttl: Duration::ZERO,
        ..server.settings()
    };
    let (dir, clock) = store(&server, s);
    for _ in 0..3 {
        assert!(matches!(
            dir.customer_by_id("1001"),
            Err(DirectoryError::Status(503))
        ));
    }
    assert_eq!(server.hits(), 3);
    // Open: fails fast, the server is not asked.
    assert!(matches!(
        dir.customer_by_id("1001"),
        Err(DirectoryError::Unavailable)
    ));
    assert_eq!(server.hits(), 3);
    assert_eq!(
        execute(
            &dir,
            &DirectoryRequest::Lookup {
                by: LookupKey::Id("1001".into())
            },
            0
        ),
        DirectoryResponse::Failed("directory unavailable (circuit breaker open)".into())
    );
    // After the cool-down one trial goes through; it fails: open again.
    clock.advance(Duration::from_secs(10));
    assert!(matches!(
        dir.customer_by_id("1001"),
        Err(DirectoryError::Status(503))
    ));
    assert_eq!(server.hits(), 4);
    assert!(matches!(
        dir.customer_by_id("1001"),
        Err(DirectoryError::Unavailable)
    ));
    // The CRM recovers: the next trial succeeds and closes the breaker.
    healthy.store(true, Ordering::SeqCst);
    clock.advance(Duration::from_secs(9));
    assert!(matches!(
        dir.customer_by_id("1001"),
        Err(DirectoryError::Unavailable)
    ));
    clock.advance(Duration::from_secs(1));
    assert!(dir.customer_by_id("1001").unwrap().is_some());
    assert!(dir.account("1001").unwrap().is_some());
    assert_eq!(server.hits(), 6);
}

#[test]
fn lookups_are_cached_within_the_ttl_and_pins_never() {
    let server = Server::start(crm);
    let (dir, clock) = store(&server, server.settings());
    assert!(dir.customer_by_id("1001").unwrap().is_some());
    assert!(dir.customer_by_id("1001").unwrap().is_some());
    assert_eq!(dir.customer_by_id("4242").unwrap(), None);
    assert_eq!(dir.customer_by_id("4242").unwrap(), None);
    assert_eq!(server.hits(), 2, "one per id, 404 cached too");
    clock.advance(Duration::from_secs(29));
    assert!(dir.customer_by_id("1001").unwrap().is_some());
    assert_eq!(server.hits(), 2);
    clock.advance(Duration::from_secs(1));
    assert!(dir.customer_by_id("1001").unwrap().is_some());
    assert_eq!(server.hits(), 3, "expired after 30 s");
    dir.verify_pin("1001", "1234", 0).unwrap();
    dir.verify_pin("1001", "1234", 0).unwrap();
    assert_eq!(server.hits(), 5);
    dir.clear_cache();
    assert!(dir.customer_by_id("1001").unwrap().is_some());
    assert_eq!(server.hits(), 6);
}

#[test]
fn bad_answers_are_protocol_errors() {
    let server = Server::start(|req| {
        let r = match req.path.as_str() {
            "/crm/customers/1" => json(200, "not json"),
            "/crm/customers/2" => "garbage\r\n\r\n".to_string(),
            "/crm/customers/3" => json(418, "{}"),
            _ => "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n{}".to_string(),
        };
        (Duration::ZERO, r)
    });
    let s = HttpSettings {
        retries: 0,
        ..server.settings()
    };
    let (dir, _) = store(&server, s);
    assert!(matches!(
        dir.customer_by_id("1"),
        Err(DirectoryError::Protocol(_))
    ));
    assert!(matches!(
        dir.customer_by_id("2"),
        Err(DirectoryError::Protocol(_))
    ));
    assert!(matches!(
        dir.customer_by_id("3"),
        Err(DirectoryError::Status(418))
    ));
    assert!(matches!(
        dir.customer_by_id("4"),
        Err(DirectoryError::Protocol(_))
    ));
}

#[test]
fn responses_parse_with_length_chunks_or_eof() {
    let full = |s: &str| parse_response(s.as_bytes(), true).unwrap().unwrap();
    assert_eq!(
        full("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3;x=y\r\n:1}\r\n0\r\n\r\n")
            .body,
        "{\"a\":1}"
    );
    assert_eq!(full("HTTP/1.0 200 OK\r\n\r\n{}").body, "{}");
    assert_eq!(
        full("HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}xyz").status,
        404
    );
    // Incomplete until more bytes come.
    assert!(
        parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{}", false)
            .unwrap()
            .is_none()
    );
    assert!(
        parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{}",
            false
        )
        .unwrap()
        .is_none()
    );
    for bad in [
        "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        "SIP/2.0 200 OK\r\n\r\n",
        "HTTP/1.1 999 Huh\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ] {
        assert!(parse_response(bad.as_bytes(), true).is_err(), "{bad}");
    }
}

#[test]
fn urls_must_be_plain_http() {
    let cfg = |url: &str| DirectoryConfig {
        kind: crate::directory::DirectoryKind::Http,
        url: Some(url.into()),
        ..DirectoryConfig::default()
    };
    let s = HttpSettings::from_config(&cfg("http://crm.local:8081/api/")).unwrap();
    assert_eq!(
        (s.host.as_str(), s.port, s.base_path.as_str()),
        ("crm.local", 8081, "/api")
    );
    let s = HttpSettings::from_config(&cfg("http://[::1]")).unwrap();
    assert_eq!((s.host.as_str(), s.port), ("::1", 80));
    for bad in [
        "https://crm.example.com",
        "crm.local",
        "http://:80",
        "http://h:99999",
        "http://u@h/",
    ] {
        assert!(
            matches!(
                HttpSettings::from_config(&cfg(bad)),
                Err(DirectoryError::Config(_))
            ),
            "{bad}"
        );
    }
    let no_url = DirectoryConfig {
        kind: crate::directory::DirectoryKind::Http,
        ..DirectoryConfig::default()
    };
    assert!(HttpSettings::from_config(&no_url).is_err());
}
