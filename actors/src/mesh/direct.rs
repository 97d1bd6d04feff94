//! Direct links: one persistent stream per peer for tiny, frequent frames (membership
//! liveness), so they cost a few dozen bytes on the wire instead of a signed gossip
//! message relayed several times, or a request-response stream negotiated per frame.
//!
//! Wire format of `/jobmesh/direct/1`: the dialler opens one stream and writes frames,
//! each a big-endian two-byte length (1 to [`MAX_FRAME`]) followed by that many bytes;
//! the listener only reads. A zero or oversized length, a read error or the end of the
//! stream ends it; the dialler opens a new one with its next frame. The bytes are opaque here (the membership core
//! encodes them); the sender is the connection's authenticated peer.
//!
//! Frames are best effort and never queue behind a slow link: each peer has a queue of
//! [`QUEUE`] frames and a full queue drops the new frame (a late liveness frame is
//! worth nothing; the next one follows within an interval).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{PeerId, StreamProtocol};
use tokio::{sync::mpsc, task::JoinHandle};

/// The protocol name.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/jobmesh/direct/1");
/// Largest frame (the membership core's largest direct frame fits).
pub const MAX_FRAME: usize = 60_000;
/// Frames queued per peer before new ones are dropped.
pub const QUEUE: usize = 4;
/// After failing to open a stream to a peer, frames to it are dropped for this long
/// instead of dialling it at every frame.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Outbound links, shared by every [`Client`](super::Client).
pub(crate) struct DirectLinks {
    control: Mutex<libp2p_stream::Control>,
    links: Mutex<HashMap<PeerId, mpsc::Sender<Vec<u8>>>>,
    max_links: usize,
    open_timeout: Duration,
}

impl std::fmt::Debug for DirectLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectLinks")
            .field("max_links", &self.max_links)
            .finish_non_exhaustive()
    }
}

impl DirectLinks {
    pub(crate) fn new(
        control: libp2p_stream::Control,
        max_links: usize,
        open_timeout: Duration,
    ) -> Self {
        Self {
            control: Mutex::new(control),
            links: Mutex::new(HashMap::new()),
            max_links,
            open_timeout,
        }
    }

    /// Queues `frame` for `peer`, starting its link task if needed (must be called
    /// within a tokio runtime). Returns whether the frame was queued.
    pub(crate) fn send(&self, peer: PeerId, frame: Vec<u8>) -> bool {
        if frame.is_empty() || frame.len() > MAX_FRAME {
            return false;
        }
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        links.retain(|_, tx| !tx.is_closed());
        if !links.contains_key(&peer) {
            if links.len() >= self.max_links {
                return false;
            }
            let (tx, rx) = mpsc::channel(QUEUE);
            let control = self
                .control
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            tokio::spawn(write_loop(control, peer, rx, self.open_timeout));
            links.insert(peer, tx);
        }
        links
            .get(&peer)
            .is_some_and(|tx| tx.try_send(frame).is_ok())
    }

    /// Closes the link to `peer` (its task ends after the queued frames).
    pub(crate) fn forget(&self, peer: &PeerId) {
        self.links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(peer);
    }
}

/// Writes queued frames to one peer, (re)opening the stream when needed.
async fn write_loop(
    mut control: libp2p_stream::Control,
    peer: PeerId,
    mut frames: mpsc::Receiver<Vec<u8>>,
    open_timeout: Duration,
) {
    let mut retry_at: Option<Instant> = None;
    while let Some(mut frame) = frames.recv().await {
        if retry_at.is_some_and(|t| Instant::now() < t) {
            continue;
        }
        let opened = tokio::time::timeout(open_timeout, control.open_stream(peer, PROTOCOL)).await;
        let mut stream = match opened {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "direct link not opened");
                retry_at = Some(Instant::now() + RETRY_AFTER);
                continue;
            }
            Err(_) => {
                tracing::debug!(%peer, "direct link open timed out");
                retry_at = Some(Instant::now() + RETRY_AFTER);
                continue;
            }
        };
        retry_at = None;
        loop {
            let mut buf = Vec::with_capacity(frame.len() + 2);
            buf.extend_from_slice(&(frame.len() as u16).to_be_bytes());
            buf.extend_from_slice(&frame);
            let written = async {
                stream.write_all(&buf).await?;
                stream.flush().await
            };
            if let Err(e) = written.await {
                tracing::debug!(%peer, error = %e, "direct link broke");
                break;
            }
            match frames.recv().await {
                Some(next) => frame = next,
                None => {
                    let _ = stream.close().await;
                    return;
                }
            }
        }
    }
}

/// Inbound links: one reader task per peer (a newer stream from the same peer replaces
/// the older one, so a peer cannot pile up readers).
#[derive(Default)]
pub(crate) struct Readers {
    tasks: HashMap<PeerId, JoinHandle<()>>,
}

impl Readers {
    /// Starts reading `stream` from `peer`; each frame goes to `deliver`, which returns
    /// `false` to stop reading. A malformed frame ends the stream and calls `malformed`.
    pub(crate) fn accept<D, M>(
        &mut self,
        peer: PeerId,
        stream: libp2p::Stream,
        deliver: D,
        malformed: M,
    ) where
        D: Fn(PeerId, Vec<u8>) -> bool + Send + 'static,
        M: FnOnce(PeerId, String) + Send + 'static,
    {
        self.tasks.retain(|_, t| !t.is_finished());
        if let Some(old) = self.tasks.remove(&peer) {
            old.abort();
        }
        let task = tokio::spawn(read_loop(peer, stream, deliver, malformed));
        self.tasks.insert(peer, task);
    }

    /// Stops every reader.
    pub(crate) fn stop(&mut self) {
        for (_, t) in self.tasks.drain() {
            t.abort();
        }
    }
}

async fn read_loop<D, M>(peer: PeerId, mut stream: libp2p::Stream, deliver: D, malformed: M)
where
    D: Fn(PeerId, Vec<u8>) -> bool,
    M: FnOnce(PeerId, String),
{
    let mut len = [0u8; 2];
    loop {
        if stream.read_exact(&mut len).await.is_err() {
            return;
        }
        let len = u16::from_be_bytes(len) as usize;
        if len == 0 || len > MAX_FRAME {
            malformed(
                peer,
                format!("direct frame of {len} bytes (1 to {MAX_FRAME})"),
            );
            return;
        }
        let mut frame = vec![0u8; len];
        if stream.read_exact(&mut frame).await.is_err() {
            return;
        }
        if !deliver(peer, frame) {
            return;
        }
    }
}

/// Shared handle type.
pub(crate) type SharedLinks = Arc<DirectLinks>;
