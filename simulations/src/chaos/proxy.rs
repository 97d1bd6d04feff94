//! A slow link for the `store-slowness` scenario: a TCP proxy between the nodes and a
//! store server that, while its delay is set, holds every chunk it forwards (either
//! way) for that long. Real sockets, real protocol traffic: the nodes see a store that
//! answers late, as over a congested network or from an overloaded server, without
//! freezing the server itself.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::ChaosError;

/// Most connections forwarded at once ("bound everything"): the nodes' pools need far
/// fewer.
const MAX_CONNECTIONS: usize = 512;
/// Forwarding buffer per direction.
const CHUNK: usize = 16 * 1024;

/// A running proxy; dropping it closes the listener and every forwarded connection.
#[derive(Debug)]
pub struct Proxy {
    port: u16,
    delay_ms: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Result<Self, ChaosError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| ChaosError::io("binding a store proxy", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| ChaosError::io("binding a store proxy", e))?
            .port();
        let delay_ms = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(accept(listener, upstream, delay_ms.clone()));
        Ok(Self {
            port,
            delay_ms,
            task,
        })
    }

    /// The port the nodes connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Sets the delay added to every forwarded chunk (0: none).
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // The accept task owns the connection tasks (a JoinSet): aborting it ends all.
        self.task.abort();
    }
}

async fn accept(listener: TcpListener, upstream: SocketAddr, delay_ms: Arc<AtomicU64>) {
    let mut conns = JoinSet::new();
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                let Ok(permit) = permits.clone().acquire_owned().await else { return };
                let delay_ms = delay_ms.clone();
                conns.spawn(async move {
                    // A refused upstream (the server is down) closes the client's
                    // connection, as the server itself would have refused it.
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        forward(client, server, delay_ms).await;
                    }
                    drop(permit);
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn forward(client: TcpStream, server: TcpStream, delay_ms: Arc<AtomicU64>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    // Either direction ending (EOF or error) ends the connection.
    tokio::select! {
        _ = pipe(cr, sw, delay_ms.clone()) => {}
        _ = pipe(sr, cw, delay_ms) => {}
    }
}

async fn pipe(
    mut from: impl AsyncReadExt + Unpin,
    mut to: impl AsyncWriteExt + Unpin,
    delay_ms: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let delay = delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            // The fault itself: the link is slow for this chunk.
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server behind the proxy: bytes pass unchanged, and a set delay holds
    /// them at least that long.
    #[tokio::test]
    async fn forwards_and_delays() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = echo.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let proxy = Proxy::start(addr).await.unwrap();
        let mut c = TcpStream::connect(("127.0.0.1", proxy.port()))
            .await
            .unwrap();
        let mut buf = [0u8; 5];
        c.write_all(b"hello").await.unwrap();
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");
        proxy.set_delay(Duration::from_millis(100));
        let t = tokio::time::Instant::now();
        c.write_all(b"again").await.unwrap();
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"again");
        // One hold on the way in, one on the way back.
        assert!(
            t.elapsed() >= Duration::from_millis(200),
            "{:?}",
            t.elapsed()
        );
    }
}
