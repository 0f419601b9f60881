//! The SIP UDP socket handed to rsipstack, with `sip::screen` in front of it: malformed or
//! unsupported datagrams are answered (400/501/505) or dropped here, and counted.
//!
//! Datagrams are read into a buffer of the largest UDP payload, not the stack's (smaller)
//! one: a request larger than the stack takes is answered 513 Message Too Large (RFC 3261
//! §18.1.1, §21.5.14) when its start line and Via can be read, instead of being cut short
//! by the kernel and refused with a misleading 400.
//!
//! Bad datagrams are logged through a [`LogSampler`]: the first few per source per interval
//! get a line each, the rest one summary line per source per interval, so a flood of garbage
//! cannot flood the log (or the disk under it).

use super::logsample::LogSampler;
use crate::sip::screen::{MAX_DATAGRAM, Screened, screen_datagram, screen_too_large};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Default, Debug)]
pub struct ScreenStats {
    pub rejected: AtomicU64,
    pub dropped: AtomicU64,
}

pub struct ScreeningSocket {
    pub inner: tokio::net::UdpSocket,
    pub stats: Arc<ScreenStats>,
    /// Only the transport's receive loop takes it, never across an await.
    log: Mutex<LogSampler>,
    /// Where datagrams land first (the largest UDP payload); taken only around the
    /// non-blocking read, never across an await.
    scratch: Mutex<Vec<u8>>,
}

impl ScreeningSocket {
    /// Bad-input lines sampled with the defaults: 5 per source per 10 s, then a summary.
    pub fn new(inner: tokio::net::UdpSocket, stats: Arc<ScreenStats>) -> ScreeningSocket {
        ScreeningSocket::with_sampler(inner, stats, LogSampler::default())
    }

    pub fn with_sampler(
        inner: tokio::net::UdpSocket,
        stats: Arc<ScreenStats>,
        sampler: LogSampler,
    ) -> ScreeningSocket {
        ScreeningSocket {
            inner,
            stats,
            log: Mutex::new(sampler),
            scratch: Mutex::new(vec![0u8; MAX_DATAGRAM]),
        }
    }

    /// Reads the next datagram whole into `scratch`; when it fits `buf` (the stack's
    /// buffer) it is copied there. `Ok((len, from, fits))`: `len` is the datagram's size.
    async fn read_whole(&self, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr, bool)> {
        loop {
            self.inner.readable().await?;
            let mut scratch = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
            match self.inner.try_recv_from(&mut scratch) {
                Ok((len, from)) => {
                    let fits = len <= buf.len();
                    if fits {
                        buf[..len].copy_from_slice(&scratch[..len]);
                    }
                    return Ok((len, from, fits));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The answer to a datagram larger than the stack's buffer (a copy of its head).
    fn screen_too_large(&self, len: usize) -> Screened {
        let scratch = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        screen_too_large(&scratch[..len])
    }

    fn sampler(&self) -> std::sync::MutexGuard<'_, LogSampler> {
        // A panic elsewhere while holding it cannot leave the counts unusable.
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a bad datagram; true when it gets a log line of its own.
    fn sample(&self, now: Instant, from: SocketAddr, reason: &'static str) -> bool {
        self.sampler().record(now, from.ip(), reason)
    }

    /// Logs the summaries of windows that ended by `now`.
    fn flush_summaries(&self, now: Instant) {
        let mut sampler = self.sampler();
        if sampler.next_due().is_none_or(|due| due > now) {
            return;
        }
        while let Some(summary) = sampler.poll_summary(now) {
            tracing::warn!(source = ?summary.source, total = summary.total, "{summary}");
        }
    }
}

/// Why a refused request was refused, for the summary line (`Screened::Reply` has a status).
fn refusal(status: u16) -> &'static str {
    match status {
        400 => "malformed request (answered 400)",
        513 => "request too large (answered 513)",
        501 => "unknown method (answered 501)",
        505 => "unsupported SIP version (answered 505)",
        _ => "refused request",
    }
}

#[async_trait::async_trait]
impl rsipstack::platform::net::UdpSocket for ScreeningSocket {
    async fn recv_from(&self, buf: &mut [u8]) -> rsipstack::Result<(usize, SocketAddr)> {
        loop {
            // Summaries are due when a window ends, whether or not more datagrams come.
            let due = self.sampler().next_due();
            let received = match due {
                None => self.read_whole(buf).await,
                Some(due) => tokio::select! {
                    r = self.read_whole(buf) => r,
                    _ = tokio::time::sleep_until(due.into()) => {
                        self.flush_summaries(Instant::now());
                        continue;
                    }
                },
            };
            let (len, from, fits) = received?;
            let now = Instant::now();
            self.flush_summaries(now);
            let verdict = if fits {
                screen_datagram(&buf[..len])
            } else {
                self.screen_too_large(len)
            };
            match verdict {
                Screened::Accept { len } => return Ok((len, from)),
                Screened::Rewrite { bytes } if bytes.len() <= buf.len() => {
                    buf[..bytes.len()].copy_from_slice(&bytes);
                    return Ok((bytes.len(), from));
                }
                Screened::Rewrite { .. } => {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    let reason = "rewritten message larger than the buffer";
                    if self.sample(now, from, reason) {
                        tracing::info!(%from, len, reason, "dropped unanswerable SIP datagram");
                    }
                }
                Screened::Reply { status, bytes } => {
                    self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                    if self.sample(now, from, refusal(status)) {
                        tracing::info!(%from, status, "refused malformed or unsupported SIP request");
                    }
                    if let Err(e) = self.inner.send_to(&bytes, from).await {
                        tracing::debug!(%from, error = %e, "could not send stateless response");
                    }
                }
                Screened::Drop { reason } => {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    if self.sample(now, from, reason) {
                        tracing::info!(%from, len, reason, "dropped unanswerable SIP datagram");
                    }
                }
            }
        }
    }

    async fn send_to(&self, buf: &[u8], addr: SocketAddr) -> rsipstack::Result<usize> {
        Ok(self.inner.send_to(buf, addr).await?)
    }

    fn local_addr(&self) -> rsipstack::Result<SocketAddr> {
        Ok(self.inner.local_addr()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsipstack::platform::net::UdpSocket as _;
    use std::io::Write;
    use std::time::Duration;

    /// Log output captured in memory, one `String` for every line written.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Capture {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
        /// Sets it as this thread's subscriber (all tasks of a current-thread runtime).
        fn install(&self, filter: &str) -> tracing::subscriber::DefaultGuard {
            let capture = self.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_ansi(false)
                .with_writer(move || capture.clone())
                .finish();
            tracing::subscriber::set_default(subscriber)
        }
    }

    async fn screening(sampler: LogSampler) -> Arc<ScreeningSocket> {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        Arc::new(ScreeningSocket::with_sampler(udp, Arc::default(), sampler))
    }

    #[tokio::test(flavor = "current_thread")]
    async fn ten_thousand_garbage_datagrams_give_a_handful_of_log_lines() {
        let capture = Capture::default();
        let _guard = capture.install("info");
        // A window longer than the flood takes, so it ends in exactly one summary.
        let interval = Duration::from_secs(3);
        let socket = screening(LogSampler::new(interval, 5, 1024)).await;
        let addr = socket.local_addr().unwrap();
        let reader = tokio::spawn({
            let socket = socket.clone();
            async move {
                let mut buf = vec![0u8; 65_535];
                let _ = socket.recv_from(&mut buf).await;
            }
        });
        let flood = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let started = Instant::now();
        for sent in 1..=10_000u64 {
            flood.send_to(b"\x16\x03\x01 not SIP at all", addr).unwrap();
            // Paced by what the screen has counted: the kernel's buffer must not drop any.
            if sent % 100 == 0 {
                while socket.stats.dropped.load(Ordering::Relaxed) < sent {
                    tokio::task::yield_now().await;
                }
            }
        }
        assert!(
            started.elapsed() < interval,
            "the flood took {:?}, longer than the window",
            started.elapsed()
        );
        let deadline = Instant::now() + interval + Duration::from_secs(5);
        while !capture.text().contains("dropped 10,000 datagrams") {
            assert!(
                Instant::now() < deadline,
                "no summary; log:\n{}",
                capture.text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        reader.abort();
        let text = capture.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6, "5 lines and a summary, got:\n{text}");
        assert!(
            lines[5].contains(
                "dropped 10,000 datagrams from 127.0.0.1 in the last 3 s: \
                 no blank line after headers (first 5 logged)"
            ),
            "{}",
            lines[5]
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn request_larger_than_the_stack_buffer_gets_513_and_the_next_one_goes_through() {
        let socket = screening(LogSampler::default()).await;
        let addr = socket.local_addr().unwrap();
        let reader = tokio::spawn({
            let socket = socket.clone();
            async move {
                // The stack's buffer size.
                let mut buf = vec![0u8; 8192];
                let (len, _) = socket.recv_from(&mut buf).await.unwrap();
                String::from_utf8_lossy(&buf[..len]).into_owned()
            }
        });
        let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let options = |pad: usize| {
            format!(
                "OPTIONS sip:ivr@{addr} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK-big\r\n\
                 From: <sip:a@b>;tag=1\r\nTo: <sip:ivr@{addr}>\r\nCall-ID: big-1\r\n\
                 CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nX-Pad: {}\r\nContent-Length: 0\r\n\r\n",
                peer.local_addr().unwrap(),
                "p".repeat(pad)
            )
        };
        peer.send_to(options(12_000).as_bytes(), addr)
            .await
            .unwrap();
        let mut answer = vec![0u8; 65_535];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), peer.recv_from(&mut answer))
            .await
            .expect("no answer to the oversized request")
            .unwrap();
        let text = String::from_utf8_lossy(&answer[..n]);
        assert!(
            text.starts_with("SIP/2.0 513 Message Too Large\r\n"),
            "{text}"
        );
        assert!(text.contains("branch=z9hG4bK-big"), "{text}");
        assert_eq!(socket.stats.rejected.load(Ordering::Relaxed), 1);
        // A request that fits is handed on whole.
        let small = options(10);
        peer.send_to(small.as_bytes(), addr).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, small);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn sip_bodies_never_reach_the_log_even_at_trace() {
        use rsipstack::transport::TransportLayer;
        use rsipstack::transport::udp::UdpConnection;
        let capture = Capture::default();
        let _guard = capture.install("trace");
        let socket = screening(LogSampler::default()).await;
        let addr = socket.local_addr().unwrap();
        let cancel = tokio_util::sync::CancellationToken::new();
        let udp = UdpConnection::from_socket(socket, None, Some(cancel.child_token()))
            .await
            .unwrap();
        let transports = TransportLayer::new(cancel.child_token());
        transports.add_transport(udp.into());
        let endpoint = rsipstack::EndpointBuilder::new()
            .with_transport_layer(transports)
            .with_cancel_token(cancel.child_token())
            .build();
        let mut incoming = endpoint.incoming_transactions().unwrap();
        let serve = tokio::spawn(async move { endpoint.serve().await });

        // An in-dialog INFO carrying a key press (application/dtmf-relay, as PINs arrive).
        let caller = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let body = "Signal=7\r\nDuration=160\r\n";
        let info = format!(
            "INFO sip:ivr@{addr} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {};branch=z9hG4bK-info-1\r\n\
             From: <sip:caller@127.0.0.1>;tag=c1\r\n\
             To: <sip:ivr@127.0.0.1>;tag=i1\r\n\
             Call-ID: pin-call@127.0.0.1\r\n\
             CSeq: 2 INFO\r\n\
             Max-Forwards: 70\r\n\
             Content-Type: application/dtmf-relay\r\n\
             Content-Length: {}\r\n\r\n{body}",
            caller.local_addr().unwrap(),
            body.len()
        );
        caller.send_to(info.as_bytes(), addr).unwrap();
        let mut tx = tokio::time::timeout(Duration::from_secs(5), incoming.recv())
            .await
            .unwrap()
            .unwrap();
        tx.reply(rsipstack::sip::StatusCode::OK).await.unwrap();
        serve.abort();
        cancel.cancel();

        let text = capture.text();
        assert!(
            text.contains("udp received") && text.contains("pin-call@127.0.0.1"),
            "the stack's message lines were captured (method and Call-ID only):\n{text}"
        );
        assert!(
            !text.contains("Signal=7"),
            "a key press reached the log:\n{text}"
        );
        assert!(
            !text.contains("dtmf-relay"),
            "headers reached the log:\n{text}"
        );
    }
}
