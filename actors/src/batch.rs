//! Draining a bounded channel in batches: one store round trip carries everything that
//! queued up while the previous one was in flight.

use tokio::sync::mpsc;

/// Waits for one item, then takes whatever else is ready, up to `max` in all; `None`
/// once the channel is closed and empty.
pub async fn next_batch<T>(rx: &mut mpsc::Receiver<T>, max: usize) -> Option<Vec<T>> {
    let first = rx.recv().await?;
    let mut batch = Vec::with_capacity(max.min(64));
    batch.push(first);
    while batch.len() < max {
        match rx.try_recv() {
            Ok(item) => batch.push(item),
            Err(_) => break,
        }
    }
    Some(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn takes_what_is_ready_up_to_max_then_ends_when_closed() {
        let (tx, mut rx) = mpsc::channel(10);
        for i in 0..5 {
            tx.send(i).await.unwrap();
        }
        assert_eq!(next_batch(&mut rx, 3).await, Some(vec![0, 1, 2]));
        assert_eq!(next_batch(&mut rx, 3).await, Some(vec![3, 4]));
        drop(tx);
        assert_eq!(next_batch(&mut rx, 3).await, None);
    }
}
