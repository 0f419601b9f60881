//! Regression tests for the rsipstack patch carried in `vendor/rsipstack` (PATCHES.md §1, §2).
//!
//! A flood of INVITEs that are refused (503, RFC 3261 §17.2.1: Completed, waiting for an ACK
//! that never comes) leaves one ACK route per transaction until its `TimerCleanup`. Unpatched,
//! each cleanup scanned every route (`retain`), so N cleanups cost O(N²) and, running in the
//! same task as the transport loop, silenced SIP for minutes. These tests drive rsipstack's
//! public API the way the engine does: a real loopback UDP connection, server transactions
//! answered with `reply`, then the endpoint's `serve` running the cleanups.

use rsipstack::sip::headers::{CallId, From, Via};
use rsipstack::sip::{Header, Request, StatusCode};
use rsipstack::transaction::Transaction;
use rsipstack::transaction::endpoint::{Endpoint, EndpointOption};
use rsipstack::transaction::key::{TransactionKey, TransactionRole};
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::{SipConnection, TransportLayer};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// An endpoint on 127.0.0.1 whose cleanups fall due 1 ms after a transaction ends (64×T1 in
/// production), and the connection its transactions answer on.
async fn endpoint(cancel: &CancellationToken) -> (Endpoint, SipConnection, SocketAddr) {
    let udp = UdpConnection::create_connection(
        "127.0.0.1:0".parse().unwrap(),
        None,
        Some(cancel.child_token()),
    )
    .await
    .expect("bind loopback UDP");
    let connection: SipConnection = udp.into();
    let addr = connection
        .get_addr()
        .get_socketaddr()
        .expect("bound address");
    let transports = TransportLayer::new(cancel.child_token());
    transports.add_transport(connection.clone());
    let endpoint = rsipstack::EndpointBuilder::new()
        .with_transport_layer(transports)
        .with_cancel_token(cancel.child_token())
        .with_option(EndpointOption {
            t1x64: Duration::from_millis(1),
            ..Default::default()
        })
        .build();
    (endpoint, connection, addr)
}

fn invite(caller: SocketAddr) -> Request {
    let text = format!(
        "INVITE sip:ivr@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {caller};branch=z9hG4bK-flood\r\n\
         From: <sip:flood@127.0.0.2>;tag=flood\r\n\
         To: <sip:ivr@127.0.0.1>\r\n\
         Call-ID: flood@127.0.0.2\r\n\
         CSeq: 1 INVITE\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    );
    Request::try_from(text.as_str()).expect("test INVITE parses")
}

/// The `i`-th INVITE of the flood: its own branch (transaction), From tag and Call-ID
/// (dialog). Edited rather than parsed: parsing 100,000 messages would dominate the test.
fn numbered(template: &Request, i: usize) -> Request {
    let mut request = template.clone();
    for header in request.headers.iter_mut() {
        match header {
            Header::Via(v) => *v = Via::new(v.value().replace("flood", &format!("flood-{i}"))),
            Header::From(f) => *f = From::new(f.value().replace("flood", &format!("f{i}"))),
            Header::CallId(c) => *c = CallId::new(format!("flood-{i}@127.0.0.2")),
            _ => {}
        }
    }
    request
}

/// `n` INVITEs refused with 503 and never ACKed; returns the endpoint with `n` ACK routes and
/// `n` finished transactions whose cleanups are all due.
async fn refused_invites(n: usize, cancel: &CancellationToken, caller: &UdpSocket) -> Endpoint {
    let (endpoint, connection, _) = endpoint(cancel).await;
    let caller = caller.local_addr().unwrap();
    let template = invite(caller);
    for i in 0..n {
        let request = numbered(&template, i);
        let key = TransactionKey::from_request(&request, TransactionRole::Server).unwrap();
        let mut tx = Transaction::new_server(
            key,
            request,
            endpoint.inner.clone(),
            Some(connection.clone()),
        );
        tx.reply(StatusCode::ServiceUnavailable)
            .await
            .expect("503 sent");
        // Dropped in Completed: the ACK route stays until TimerCleanup (§17.2.1).
    }
    assert_eq!(
        endpoint.inner.waiting_ack.len(),
        n,
        "one ACK route per refused INVITE"
    );
    assert_eq!(endpoint.inner.finished_transactions.len(), n);
    tokio::time::sleep(Duration::from_millis(5)).await;
    endpoint
}

/// A socket standing for the flooding caller: it receives the 503s and never reads them.
fn caller() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").expect("bind caller socket")
}

/// CPU time this thread has run, in ns (Linux schedstat), else `None`. The endpoint runs on
/// a thread of its own below, so this is its work alone: other processes on a busy 2-core CI
/// machine do not inflate it the way they inflate wall-clock time.
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace()
        .next()?
        .parse()
        .ok()
        .filter(|&ns| ns > 0)
}

/// Runs the endpoint, on a thread and runtime of its own, until every cleanup is done;
/// returns the CPU time (or, where the OS does not tell, the wall time) that took. Fails
/// after `limit`: on its own thread a quadratic cleanup cannot also block the check.
fn run_cleanups(endpoint: &Endpoint, limit: Duration) -> Duration {
    let inner = endpoint.inner.clone();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let started = Instant::now();
            let cpu_start = thread_cpu_ns();
            let serve = tokio::spawn({
                let inner = inner.clone();
                async move { inner.serve().await }
            });
            while inner.finished_transactions.len() > 0 || inner.waiting_ack.len() > 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let wall = started.elapsed();
            serve.abort();
            let took = match (cpu_start, thread_cpu_ns()) {
                (Some(a), Some(b)) => Duration::from_nanos(b.saturating_sub(a)),
                _ => wall,
            };
            let _ = done_tx.send(took);
        });
    });
    done_rx.recv_timeout(limit).unwrap_or_else(|_| {
        panic!(
            "cleanups not done after {limit:?}: {} finished transactions, {} ACK routes left",
            endpoint.inner.finished_transactions.len(),
            endpoint.inner.waiting_ack.len(),
        )
    })
}

#[tokio::test(flavor = "current_thread")]
async fn cleanup_of_unacknowledged_invites_grows_linearly() {
    let cancel = CancellationToken::new();
    let caller = caller();
    let mut took = Vec::new();
    for n in [25_000, 100_000] {
        let endpoint = refused_invites(n, &cancel, &caller).await;
        // Unpatched, 100k cleanups took minutes (O(n²)); a minute means the bug is back.
        took.push(run_cleanups(&endpoint, Duration::from_secs(60)));
        // Nothing is left behind: the maps are empty (BTreeMaps free their nodes).
        assert_eq!(endpoint.inner.waiting_ack.len(), 0);
        assert_eq!(endpoint.inner.transactions.len(), 0);
        assert_eq!(endpoint.inner.get_stats().finished_transactions, 0);
    }
    cancel.cancel();
    // 4× the work: linear (with BTreeMap's log factor) is ~4–5×, quadratic 16×.
    let (small, large) = (took[0], took[1]);
    let ratio = large.as_secs_f64() / small.as_secs_f64().max(1e-3);
    assert!(
        ratio < 8.0,
        "cleanup of 100k took {large:?}, of 25k {small:?}: {ratio:.1}× for 4× the work"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn transport_is_served_while_a_burst_of_cleanups_runs() {
    let cancel = CancellationToken::new();
    let caller = caller();
    let endpoint = refused_invites(10_000, &cancel, &caller).await;
    let mut incoming = endpoint.incoming_transactions().unwrap();
    let addr = endpoint
        .get_addrs()
        .first()
        .and_then(|a| a.get_socketaddr().ok())
        .unwrap();
    // Queued before serve starts: unpatched, the whole burst ran in one poll before the
    // transport loop saw this OPTIONS.
    let options = format!(
        "OPTIONS sip:ivr@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {};branch=z9hG4bK-probe\r\n\
         From: <sip:probe@127.0.0.1>;tag=p\r\n\
         To: <sip:ivr@127.0.0.1>\r\n\
         Call-ID: probe@127.0.0.1\r\n\
         CSeq: 1 OPTIONS\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n",
        caller.local_addr().unwrap()
    );
    caller.send_to(options.as_bytes(), addr).unwrap();
    let inner = endpoint.inner.clone();
    let serve = tokio::spawn(async move { inner.serve().await });
    let tx = tokio::time::timeout(Duration::from_secs(30), incoming.recv())
        .await
        .expect("OPTIONS reached the application")
        .expect("endpoint still running");
    assert_eq!(tx.original.method, rsipstack::sip::Method::Options);
    let left = endpoint.inner.finished_transactions.len();
    assert!(
        left > 0,
        "the OPTIONS was only handled after all 10,000 cleanups had run"
    );
    serve.abort();
    cancel.cancel();
}
