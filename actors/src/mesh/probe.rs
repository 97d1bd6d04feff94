//! The direct-probe protocol: a request-response exchange of nonce and incarnation.
//!
//! Wire format (protocol `/jobmesh/probe/1`), one frame per stream direction, big-endian:
//!
//! ```text
//! request:  version = 1 (u8) | kind = 0 (u8) | nonce (u64) | sender incarnation (u64)
//! response: version = 1 (u8) | kind = 1 (u8) | nonce (u64) | responder incarnation (u64)
//! ```
//!
//! The version byte lets a later format be decoded beside this one (garage-style chain of
//! formats); the kind byte stops a response being replayed as a request. Frames are read
//! with a hard cap of [`MAX_FRAME_LEN`] bytes, so a peer cannot make us buffer more.
//! Decoding is a pure function ([`ProbeFrame::decode`]) so it can be fuzzed without IO.
//!
//! An undecodable *request* is not an IO error but a value
//! ([`InboundProbe`] = `Err(ProbeDecodeError)`): request-response drops read errors without
//! saying which peer sent them, and the membership layer wants that fact for scoring.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{StreamProtocol, request_response};

/// The protocol name negotiated by multistream-select.
pub const PROTOCOL_NAME: &str = "/jobmesh/probe/1";

/// [`PROTOCOL_NAME`] as a stream protocol.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new(PROTOCOL_NAME);

/// The only wire version this build writes.
pub const VERSION: u8 = 1;

/// Length of a version-1 frame.
pub const FRAME_LEN: usize = 18;

/// The most bytes read from a probe stream; larger inputs are rejected unread.
pub const MAX_FRAME_LEN: usize = 64;

const KIND_REQUEST: u8 = 0;
const KIND_RESPONSE: u8 = 1;

/// A probe sent to a peer: "are you alive, and which incarnation are you?"
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeRequest {
    /// Random value the responder must echo, tying the answer to this request.
    pub nonce: u64,
    /// The sender's current incarnation.
    pub incarnation: u64,
}

/// The answer to a [`ProbeRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeResponse {
    /// The nonce of the request.
    pub nonce: u64,
    /// The responder's current incarnation.
    pub incarnation: u64,
}

/// A decoded probe frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeFrame {
    /// A request.
    Request(ProbeRequest),
    /// A response.
    Response(ProbeResponse),
}

/// Why bytes are not a valid probe frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeDecodeError {
    /// The frame is empty.
    #[error("empty probe frame")]
    Empty,
    /// The version byte names a format this build does not know.
    #[error("unsupported probe frame version {0}")]
    UnsupportedVersion(u8),
    /// The frame has the wrong length for its version.
    #[error("probe frame of {0} bytes, expected {FRAME_LEN}")]
    BadLength(usize),
    /// The kind byte is neither request nor response.
    #[error("unknown probe frame kind {0}")]
    UnknownKind(u8),
    /// A response arrived where a request was expected, or the reverse.
    #[error("unexpected probe frame kind")]
    UnexpectedKind,
    /// More than [`MAX_FRAME_LEN`] bytes were sent.
    #[error("probe frame exceeds {MAX_FRAME_LEN} bytes")]
    TooLong,
}

/// A probe request as read from the wire: decoded, or the reason it is junk.
pub type InboundProbe = Result<ProbeRequest, ProbeDecodeError>;

impl ProbeFrame {
    /// Encodes the frame in the current wire version.
    pub fn encode(&self) -> [u8; FRAME_LEN] {
        let (kind, nonce, incarnation) = match *self {
            ProbeFrame::Request(r) => (KIND_REQUEST, r.nonce, r.incarnation),
            ProbeFrame::Response(r) => (KIND_RESPONSE, r.nonce, r.incarnation),
        };
        let mut out = [0u8; FRAME_LEN];
        out[0] = VERSION;
        out[1] = kind;
        out[2..10].copy_from_slice(&nonce.to_be_bytes());
        out[10..18].copy_from_slice(&incarnation.to_be_bytes());
        out
    }

    /// Decodes a frame, checking version, length and kind. Never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProbeDecodeError> {
        let version = *bytes.first().ok_or(ProbeDecodeError::Empty)?;
        if version != VERSION {
            return Err(ProbeDecodeError::UnsupportedVersion(version));
        }
        if bytes.len() != FRAME_LEN {
            return Err(ProbeDecodeError::BadLength(bytes.len()));
        }
        let nonce = u64::from_be_bytes(bytes[2..10].try_into().expect("8 bytes"));
        let incarnation = u64::from_be_bytes(bytes[10..18].try_into().expect("8 bytes"));
        match bytes[1] {
            KIND_REQUEST => Ok(ProbeFrame::Request(ProbeRequest { nonce, incarnation })),
            KIND_RESPONSE => Ok(ProbeFrame::Response(ProbeResponse { nonce, incarnation })),
            other => Err(ProbeDecodeError::UnknownKind(other)),
        }
    }
}

/// The request-response codec for [`PROTOCOL`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ProbeCodec;

impl ProbeCodec {
    /// Reads one frame, capped at [`MAX_FRAME_LEN`]. IO errors are errors; junk is a value.
    async fn read_frame<T>(io: &mut T) -> io::Result<Result<ProbeFrame, ProbeDecodeError>>
    where
        T: AsyncRead + Unpin + Send,
    {
        // Read one byte more than allowed so an oversized frame is detected, not truncated.
        let mut buf = Vec::with_capacity(FRAME_LEN);
        io.take(MAX_FRAME_LEN as u64 + 1)
            .read_to_end(&mut buf)
            .await?;
        if buf.len() > MAX_FRAME_LEN {
            return Ok(Err(ProbeDecodeError::TooLong));
        }
        Ok(ProbeFrame::decode(&buf))
    }

    async fn write_frame<T>(io: &mut T, frame: ProbeFrame) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&frame.encode()).await?;
        io.close().await
    }
}

fn invalid(e: impl ToString) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

impl request_response::Codec for ProbeCodec {
    type Protocol = StreamProtocol;
    type Request = InboundProbe;
    type Response = ProbeResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<InboundProbe>
    where
        T: AsyncRead + Unpin + Send,
    {
        Ok(match Self::read_frame(io).await? {
            Ok(ProbeFrame::Request(r)) => Ok(r),
            Ok(ProbeFrame::Response(_)) => Err(ProbeDecodeError::UnexpectedKind),
            Err(e) => Err(e),
        })
    }

    async fn read_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<ProbeResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        match Self::read_frame(io).await? {
            Ok(ProbeFrame::Response(r)) => Ok(r),
            Ok(ProbeFrame::Request(_)) => Err(invalid(ProbeDecodeError::UnexpectedKind)),
            Err(e) => Err(invalid(e)),
        }
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: InboundProbe,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        // The `Err` side exists only for reading; sending junk is a caller bug.
        let req = req.map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Self::write_frame(io, ProbeFrame::Request(req)).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: ProbeResponse,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        Self::write_frame(io, ProbeFrame::Response(res)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let frames = [
            ProbeFrame::Request(ProbeRequest {
                nonce: 7,
                incarnation: u64::MAX,
            }),
            ProbeFrame::Response(ProbeResponse {
                nonce: u64::MAX,
                incarnation: 0,
            }),
        ];
        for f in frames {
            assert_eq!(ProbeFrame::decode(&f.encode()), Ok(f));
        }
    }

    #[test]
    fn rejects_junk() {
        assert_eq!(ProbeFrame::decode(&[]), Err(ProbeDecodeError::Empty));
        assert_eq!(
            ProbeFrame::decode(&[9; FRAME_LEN]),
            Err(ProbeDecodeError::UnsupportedVersion(9))
        );
        assert_eq!(
            ProbeFrame::decode(&[1, 0, 0]),
            Err(ProbeDecodeError::BadLength(3))
        );
        let mut f = ProbeFrame::Request(ProbeRequest {
            nonce: 1,
            incarnation: 1,
        })
        .encode();
        f[1] = 5;
        assert_eq!(
            ProbeFrame::decode(&f),
            Err(ProbeDecodeError::UnknownKind(5))
        );
    }

    #[test]
    fn decode_never_panics_on_any_short_input() {
        // Exhaustive over 1- and 2-byte inputs, plus every length up to the cap.
        for a in 0..=255u8 {
            let _ = ProbeFrame::decode(&[a]);
            for b in 0..=255u8 {
                let _ = ProbeFrame::decode(&[a, b]);
            }
        }
        for len in 0..=MAX_FRAME_LEN {
            let _ = ProbeFrame::decode(&vec![1u8; len]);
        }
    }
}
