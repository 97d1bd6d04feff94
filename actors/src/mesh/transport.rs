//! The TCP transport stack, with a byte counter under the encryption so the mesh can report
//! what it really costs on the wire (the target is <= 1 KB/s per node at steady state), and
//! a budget on inbound streams per connection above the muxer, where each stream's bytes
//! are also counted for its peer (`TrafficByPeer`).
//!
//! Why a stream budget here: every protocol handler (identify, ping, gossipsub, probes,
//! peer exchange, direct links) accepts inbound streams on its own, and some answer them
//! without the application seeing anything (identify answers every request). Counting
//! streams where the muxer hands them out bounds all of them at once: an inbound stream
//! over budget is reset before protocol negotiation, so it costs a yamux frame and nothing
//! more, and an outsider over budget loses the connection and is banned for a while.

use std::{
    io,
    pin::Pin,
    sync::{Arc, atomic::Ordering},
    task::{Context, Poll},
    time::Duration,
};

use futures::{AsyncRead, AsyncWrite};
use libp2p::{
    PeerId, Transport,
    core::{
        muxing::{StreamMuxer, StreamMuxerBox, StreamMuxerEvent, SubstreamBox},
        transport::Boxed,
        upgrade,
    },
    identity::Keypair,
    noise, tcp, yamux,
};

use super::{
    budget::{Rate, TokenBucket},
    ledger::{Input, MeshLedger, TrafficCounters},
};

/// Inbound streams per connection of a member: far above what membership needs (one
/// gossipsub stream, one direct link, a probe every few seconds) so only abuse is cut.
const MEMBER_STREAMS: Rate = Rate::new(32.0, 64.0);
/// Inbound streams per connection of an outsider: enough for identify, ping, gossipsub
/// and a few probes or a peer exchange on the way in.
const OUTSIDER_STREAMS: Rate = Rate::new(2.0, 16.0);

/// A muxer whose inbound streams are charged to the connection's budget (see the module
/// docs).
struct Budgeted {
    inner: StreamMuxerBox,
    peer: PeerId,
    ledger: Arc<MeshLedger>,
    member: TokenBucket,
    outsider: TokenBucket,
}

impl Budgeted {
    /// `stream` with its bytes added to the peer's counters (see [`TrafficByPeer`]).
    ///
    /// [`TrafficByPeer`]: super::TrafficByPeer
    fn counted(&self, stream: SubstreamBox) -> SubstreamBox {
        SubstreamBox::new(Counting {
            inner: stream,
            counters: self.ledger.traffic_of(&self.peer),
        })
    }
}

impl StreamMuxer for Budgeted {
    type Substream = SubstreamBox;
    type Error = io::Error;

    fn poll_inbound(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let this = &mut *self;
        loop {
            let stream = match Pin::new(&mut this.inner).poll_inbound(cx) {
                Poll::Ready(Ok(s)) => s,
                other => return other,
            };
            let now = std::time::Instant::now();
            if this.ledger.is_member(&this.peer) {
                if this.member.try_take(now) {
                    return Poll::Ready(Ok(this.counted(stream)));
                }
                // A member over budget loses the stream, not the connection: closing it
                // could make others suspect the member.
                this.ledger.refused(Input::Stream);
                drop(stream);
                continue;
            }
            if this.outsider.try_take(now) {
                return Poll::Ready(Ok(this.counted(stream)));
            }
            this.ledger.refused(Input::Stream);
            this.ledger.ban(this.peer, now);
            return Poll::Ready(Err(io::Error::other(
                "outsider opened streams over its budget",
            )));
        }
    }

    fn poll_outbound(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let this = &mut *self;
        Pin::new(&mut this.inner)
            .poll_outbound(cx)
            .map_ok(|stream| this.counted(stream))
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<StreamMuxerEvent, Self::Error>> {
        Pin::new(&mut self.inner).poll(cx)
    }
}

/// Wraps an authenticated connection's muxer in its stream budget.
fn budgeted(peer: PeerId, muxer: StreamMuxerBox, ledger: Arc<MeshLedger>) -> StreamMuxerBox {
    let now = std::time::Instant::now();
    StreamMuxerBox::new(Budgeted {
        inner: muxer,
        peer,
        ledger,
        member: TokenBucket::new(MEMBER_STREAMS, now),
        outsider: TokenBucket::new(OUTSIDER_STREAMS, now),
    })
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
    ledger: Arc<MeshLedger>,
    handshake_timeout: Duration,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, noise::Error> {
    let counters = ledger.traffic.clone();
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
            .map(move |either, _| {
                let (peer, conn) = match either {
                    Either::Left((peer, conn)) => (peer, StreamMuxerBox::new(conn)),
                    Either::Right((peer, conn)) => (peer, StreamMuxerBox::new(conn)),
                };
                (peer, budgeted(peer, conn, ledger.clone()))
            })
            .boxed())
    }
    #[cfg(not(feature = "quic"))]
    {
        Ok(tcp
            .map(move |(peer, conn), _| {
                let conn = StreamMuxerBox::new(conn);
                (peer, budgeted(peer, conn, ledger.clone()))
            })
            .boxed())
    }
}
