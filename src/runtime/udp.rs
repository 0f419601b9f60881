//! The SIP UDP socket handed to rsipstack, with `sip::screen` in front of it: malformed or
//! unsupported datagrams are answered (400/501/505) or dropped here, and counted.

use crate::sip::screen::{Screened, screen_datagram};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default, Debug)]
pub struct ScreenStats {
    pub rejected: AtomicU64,
    pub dropped: AtomicU64,
}

pub struct ScreeningSocket {
    pub inner: tokio::net::UdpSocket,
    pub stats: Arc<ScreenStats>,
}

#[async_trait::async_trait]
impl rsipstack::platform::net::UdpSocket for ScreeningSocket {
    async fn recv_from(&self, buf: &mut [u8]) -> rsipstack::Result<(usize, SocketAddr)> {
        loop {
            let (len, from) = self.inner.recv_from(buf).await?;
            match screen_datagram(&buf[..len]) {
                Screened::Accept { len } => return Ok((len, from)),
                Screened::Rewrite { bytes } if bytes.len() <= buf.len() => {
                    buf[..bytes.len()].copy_from_slice(&bytes);
                    return Ok((bytes.len(), from));
                }
                Screened::Rewrite { .. } => {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
                Screened::Reply { status, bytes } => {
                    self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(%from, status, "refused malformed or unsupported SIP request");
                    if let Err(e) = self.inner.send_to(&bytes, from).await {
                        tracing::debug!(%from, error = %e, "could not send stateless response");
                    }
                }
                Screened::Drop { reason } => {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(%from, len, reason, "dropped unanswerable SIP datagram");
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
