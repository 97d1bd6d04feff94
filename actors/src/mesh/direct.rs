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

async fn read_loop<S, D, M>(peer: PeerId, mut stream: S, deliver: D, malformed: M)
where
    S: futures::AsyncRead + Unpin,
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

#[cfg(test)]
mod hostile {
    //! The reader against arbitrary byte streams (any stream type reads the same way).
    use std::sync::{Arc, Mutex};

    use futures::{executor::block_on, io::Cursor};
    use proptest::prelude::*;

    use super::*;

    /// What [`read_loop`] made of `stream`: delivered frames, the malformed-frame
    /// report if any, and how many bytes it consumed.
    fn read_all(stream: Vec<u8>) -> (Vec<Vec<u8>>, Option<String>, u64) {
        let frames = Arc::new(Mutex::new(Vec::new()));
        let report = Arc::new(Mutex::new(None));
        let mut io = Cursor::new(stream);
        let peer = PeerId::random();
        let sink = frames.clone();
        let bad = report.clone();
        block_on(read_loop(
            peer,
            &mut io,
            move |_, f| {
                sink.lock().unwrap().push(f);
                true
            },
            move |_, why| *bad.lock().unwrap() = Some(why),
        ));
        let frames = frames.lock().unwrap().clone();
        let report = report.lock().unwrap().clone();
        (frames, report, io.position())
    }

    /// The format spelled out independently: length-prefixed frames until the stream
    /// ends, a frame is cut short, or a length is zero or over [`MAX_FRAME`].
    fn expected(stream: &[u8]) -> (Vec<Vec<u8>>, Option<usize>) {
        let mut frames = Vec::new();
        let mut rest = stream;
        while rest.len() >= 2 {
            let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
            if len == 0 || len > MAX_FRAME {
                return (frames, Some(len));
            }
            if rest.len() < 2 + len {
                break;
            }
            frames.push(rest[2..2 + len].to_vec());
            rest = &rest[2 + len..];
        }
        (frames, None)
    }

    fn check(stream: Vec<u8>) {
        let (want, bad_len) = expected(&stream);
        let (got, report, _) = read_all(stream);
        assert_eq!(got, want);
        match (bad_len, report) {
            (None, None) => {}
            (Some(len), Some(why)) => {
                assert_eq!(
                    why,
                    format!("direct frame of {len} bytes (1 to {MAX_FRAME})")
                );
            }
            (want, got) => panic!("malformed report {got:?}, expected one for {want:?}"),
        }
    }

    /// Frames of the given lengths (each filled with its index), length-prefixed.
    fn framed(lens: &[u16]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, &len) in lens.iter().enumerate() {
            out.extend_from_slice(&len.to_be_bytes());
            out.extend(std::iter::repeat_n(i as u8, usize::from(len)));
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_streams_are_framed_or_refused(
            stream in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            check(stream);
        }

        #[test]
        fn valid_streams_with_damage_are_framed_or_refused(
            lens in proptest::collection::vec(prop_oneof![1u16..40, Just(0), Just(u16::MAX)], 0..6),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut stream = framed(&lens);
            if !stream.is_empty() {
                for (at, v) in edits {
                    let i = at.index(stream.len());
                    stream[i] = v;
                }
                stream.truncate(cut.index(stream.len() + 1));
            }
            check(stream);
        }
    }

    #[test]
    fn oversized_claims_stop_before_reading_the_body() {
        // 65 535 claimed, 10 bytes present: refused on the prefix alone.
        let mut stream = u16::MAX.to_be_bytes().to_vec();
        stream.extend_from_slice(&[7; 10]);
        let (frames, report, consumed) = read_all(stream);
        assert!(frames.is_empty());
        assert_eq!(consumed, 2);
        assert_eq!(
            report.as_deref(),
            Some("direct frame of 65535 bytes (1 to 60000)")
        );
    }

    #[test]
    fn a_frame_cut_short_ends_the_stream_quietly() {
        let mut stream = framed(&[3, 5]);
        stream.truncate(stream.len() - 1);
        let (frames, report, _) = read_all(stream);
        assert_eq!(frames, vec![vec![0u8; 3]]);
        assert_eq!(report, None);
    }
}
