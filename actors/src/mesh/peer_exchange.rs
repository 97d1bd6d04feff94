//! Peer exchange: ask a connected peer which peers it knows, so that joining one member by
//! multiaddr is enough to reach all of them (all-to-all probing needs a full mesh of
//! connections, and gossipsub alone never introduces peers to each other).
//!
//! Wire format (protocol `/jobmesh/peers/1`), big-endian, bounded in every dimension:
//!
//! ```text
//! request:  version = 1 (u8)
//! response: version = 1 (u8) | count (u8, <= MAX_PEERS)
//!           then per peer: id_len (u8) | peer id bytes | addr_count (u8, <= MAX_ADDRS_PER_PEER)
//!                          then per address: addr_len (u8) | multiaddr bytes
//! ```

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{Multiaddr, PeerId, StreamProtocol, request_response};

/// The protocol name negotiated by multistream-select.
pub const PROTOCOL_NAME: &str = "/jobmesh/peers/1";

/// [`PROTOCOL_NAME`] as a stream protocol.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new(PROTOCOL_NAME);

/// The only wire version this build writes.
pub const VERSION: u8 = 1;

/// Most peers in one answer.
pub const MAX_PEERS: usize = 64;

/// Most addresses listed per peer.
pub const MAX_ADDRS_PER_PEER: usize = 4;

/// Upper bound of an encoded answer: every length field is one byte, so this is exact.
pub const MAX_RESPONSE_LEN: usize = 2 + MAX_PEERS * (1 + 255 + 1 + MAX_ADDRS_PER_PEER * (1 + 255));

/// One known peer and the addresses it listens on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRecord {
    /// The peer.
    pub peer: PeerId,
    /// Its listen addresses (as reported by identify), without `/p2p` suffix.
    pub addrs: Vec<Multiaddr>,
}

/// Encodes an answer, silently truncating to the protocol bounds.
pub fn encode_response(records: &[PeerRecord]) -> Vec<u8> {
    let records: Vec<_> = records.iter().take(MAX_PEERS).collect();
    let mut out = vec![VERSION, records.len() as u8];
    for r in records {
        let id = r.peer.to_bytes();
        out.push(id.len() as u8);
        out.extend_from_slice(&id);
        let addrs: Vec<_> = r
            .addrs
            .iter()
            .map(|a| a.to_vec())
            .filter(|a| a.len() <= usize::from(u8::MAX))
            .take(MAX_ADDRS_PER_PEER)
            .collect();
        out.push(addrs.len() as u8);
        for a in addrs {
            out.push(a.len() as u8);
            out.extend_from_slice(&a);
        }
    }
    out
}

/// Decodes an answer. Never panics; any structural error rejects the whole frame.
pub fn decode_response(bytes: &[u8]) -> Result<Vec<PeerRecord>, String> {
    let mut cur = Cursor(bytes);
    let version = cur.u8()?;
    if version != VERSION {
        return Err(format!("unsupported peer exchange version {version}"));
    }
    let count = usize::from(cur.u8()?);
    if count > MAX_PEERS {
        return Err(format!("{count} peers exceeds {MAX_PEERS}"));
    }
    let mut records = Vec::with_capacity(count);
    for _ in 0..count {
        let id_len = usize::from(cur.u8()?);
        let peer = PeerId::from_bytes(cur.take(id_len)?).map_err(|e| e.to_string())?;
        let n = usize::from(cur.u8()?);
        if n > MAX_ADDRS_PER_PEER {
            return Err(format!("{n} addresses exceeds {MAX_ADDRS_PER_PEER}"));
        }
        let mut addrs = Vec::with_capacity(n);
        for _ in 0..n {
            let len = usize::from(cur.u8()?);
            let addr = Multiaddr::try_from(cur.take(len)?.to_vec()).map_err(|e| e.to_string())?;
            addrs.push(addr);
        }
        records.push(PeerRecord { peer, addrs });
    }
    if !cur.0.is_empty() {
        return Err("trailing bytes".into());
    }
    Ok(records)
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("truncated peer exchange frame".into());
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
}

/// The request-response codec for [`PROTOCOL`]. A request carries no data.
#[derive(Debug, Clone, Copy, Default)]
pub struct PeerExchangeCodec;

async fn read_capped<T: AsyncRead + Unpin + Send>(io: &mut T, cap: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    io.take(cap as u64 + 1).read_to_end(&mut buf).await?;
    if buf.len() > cap {
        return Err(invalid(format!("frame exceeds {cap} bytes")));
    }
    Ok(buf)
}

fn invalid(e: impl ToString) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

impl request_response::Codec for PeerExchangeCodec {
    type Protocol = StreamProtocol;
    type Request = ();
    type Response = Vec<PeerRecord>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<()>
    where
        T: AsyncRead + Unpin + Send,
    {
        match read_capped(io, 1).await?.as_slice() {
            [VERSION] => Ok(()),
            other => Err(invalid(format!("bad peer exchange request {other:?}"))),
        }
    }

    async fn read_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<PeerRecord>>
    where
        T: AsyncRead + Unpin + Send,
    {
        decode_response(&read_capped(io, MAX_RESPONSE_LEN).await?).map_err(invalid)
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, _: ()) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&[VERSION]).await?;
        io.close().await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<PeerRecord>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&encode_response(&res)).await?;
        io.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bounds() {
        let records: Vec<_> = (0..MAX_PEERS + 5)
            .map(|i| PeerRecord {
                peer: PeerId::random(),
                addrs: (0..6)
                    .map(|p| {
                        format!("/ip4/127.0.0.1/tcp/{}", 1000 + i * 10 + p)
                            .parse()
                            .unwrap()
                    })
                    .collect(),
            })
            .collect();
        let bytes = encode_response(&records);
        assert!(bytes.len() <= MAX_RESPONSE_LEN);
        let decoded = decode_response(&bytes).unwrap();
        assert_eq!(decoded.len(), MAX_PEERS);
        assert_eq!(decoded[0].peer, records[0].peer);
        assert_eq!(decoded[0].addrs, records[0].addrs[..MAX_ADDRS_PER_PEER]);
    }

    #[test]
    fn junk_is_rejected_without_panic() {
        let good = encode_response(&[PeerRecord {
            peer: PeerId::random(),
            addrs: vec!["/ip4/1.2.3.4/tcp/5".parse().unwrap()],
        }]);
        for cut in 0..good.len() {
            assert!(decode_response(&good[..cut]).is_err());
        }
        let mut flipped = good.clone();
        for i in 0..flipped.len() {
            flipped[i] ^= 0xff;
            let _ = decode_response(&flipped);
            flipped[i] ^= 0xff;
        }
        assert!(decode_response(&[VERSION, 200]).is_err());
    }
}
