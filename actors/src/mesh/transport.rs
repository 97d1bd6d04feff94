//! The TCP transport stack, with a byte counter under the encryption so the mesh can report
//! what it really costs on the wire (the target is <= 1 KB/s per node at steady state).

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use futures::{AsyncRead, AsyncWrite};
use libp2p::{
    PeerId, Transport,
    core::{muxing::StreamMuxerBox, transport::Boxed, upgrade},
    identity::Keypair,
    noise, tcp, yamux,
};

/// Bytes moved by all TCP connections of one node, counted below noise and yamux.
/// QUIC connections (feature `quic`) are not counted.
#[derive(Debug, Default)]
pub struct TrafficCounters {
    inbound: AtomicU64,
    outbound: AtomicU64,
}

/// A snapshot of [`TrafficCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Bytes received since start.
    pub bytes_in: u64,
    /// Bytes sent since start.
    pub bytes_out: u64,
}

impl TrafficCounters {
    /// Reads both counters.
    pub fn snapshot(&self) -> Traffic {
        Traffic {
            bytes_in: self.inbound.load(Ordering::Relaxed),
            bytes_out: self.outbound.load(Ordering::Relaxed),
        }
    }
}

/// A stream wrapper adding every byte read or written to shared counters.
struct Counting<S> {
    inner: S,
    counters: Arc<TrafficCounters>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counting<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            this.counters.inbound.fetch_add(n as u64, Ordering::Relaxed);
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counting<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            this.counters
                .outbound
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// TCP + noise + yamux, with byte counting on the raw socket, and QUIC beside it when the
/// `quic` feature is on.
pub(crate) fn build(
    keypair: &Keypair,
    counters: Arc<TrafficCounters>,
    handshake_timeout: Duration,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, noise::Error> {
    // Nagle would hold small probe frames back for up to 40 ms; probes measure RTT.
    let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
        .map(move |stream, _| Counting {
            inner: stream,
            counters: counters.clone(),
        })
        .upgrade(upgrade::Version::V1)
        .authenticate(noise::Config::new(keypair)?)
        .multiplex(yamux::Config::default())
        .timeout(handshake_timeout);

    #[cfg(feature = "quic")]
    {
        use futures::future::Either;
        let quic = libp2p::quic::tokio::Transport::new(libp2p::quic::Config::new(keypair));
        Ok(quic
            .or_transport(tcp)
            .map(|either, _| match either {
                Either::Left((peer, conn)) => (peer, StreamMuxerBox::new(conn)),
                Either::Right((peer, conn)) => (peer, StreamMuxerBox::new(conn)),
            })
            .boxed())
    }
    #[cfg(not(feature = "quic"))]
    {
        Ok(tcp
            .map(|(peer, conn), _| (peer, StreamMuxerBox::new(conn)))
            .boxed())
    }
}
