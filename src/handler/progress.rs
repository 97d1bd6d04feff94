//! How a handler's progress reports reach the store without a round trip each.
//!
//! A handler calls [`JobContext::progress`](super::JobContext::progress) as often as it
//! likes (from a hot loop too): the report is checked and put in its attempt's
//! [`ProgressCell`], replacing any report not yet written (last one wins). The node's
//! progress writer takes what is pending in every cell once per
//! `workers.progress_interval` and records it in one store call for all of them, which
//! also extends their leases; when the attempt ends, its worker closes the cell and
//! sends the report still pending with the completion, so the last report is always
//! recorded.
//!
//! The cell is a small state machine that keeps the writes of one attempt in order: a
//! report taken by the writer is "being written" until the writer says it is done, and
//! closing waits for that, so a late write of an older report can never land after the
//! final one.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::job::{Progress, ProgressError};

/// The pending progress of one running attempt (see the module documentation).
#[derive(Debug, Default)]
pub struct ProgressCell {
    state: Mutex<CellState>,
    written: Notify,
}

#[derive(Debug, Default)]
struct CellState {
    /// The newest report not yet taken by the writer.
    pending: Option<Progress>,
    /// The writer holds a report of this cell in a store call.
    writing: bool,
    /// The attempt ended: nothing more is taken or accepted.
    closed: bool,
}

impl ProgressCell {
    /// A cell with nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, CellState> {
        // Only field moves happen under the lock, so a poisoned one holds whole data.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `p` as the pending report, replacing an older one not yet taken;
    /// [`ProgressError::LeaseLost`] once the attempt has ended.
    pub fn report(&self, p: Progress) -> Result<(), ProgressError> {
        let mut s = self.state();
        if s.closed {
            return Err(ProgressError::LeaseLost);
        }
        s.pending = Some(p);
        Ok(())
    }

    /// For the writer: takes the pending report, if any and the attempt is still
    /// running, and marks the cell as being written until [`ProgressCell::written`].
    pub fn take_for_write(&self) -> Option<Progress> {
        let mut s = self.state();
        if s.closed || s.writing {
            return None;
        }
        let p = s.pending.take()?;
        s.writing = true;
        Some(p)
    }

    /// For the writer: the store call carrying this cell's report has ended. A report
    /// it could not record (the store was unreachable) is handed back in `unrecorded`
    /// and becomes pending again unless a newer one came meanwhile, so it is not lost.
    pub fn written(&self, unrecorded: Option<Progress>) {
        {
            let mut s = self.state();
            s.writing = false;
            if !s.closed && s.pending.is_none() {
                s.pending = unrecorded;
            }
        }
        self.written.notify_waiters();
    }

    /// For the worker, when the attempt ends: waits for a write in progress to end,
    /// then closes the cell and returns the report still pending (to be recorded with
    /// the completion, after everything the writer recorded).
    pub async fn close(&self) -> Option<Progress> {
        loop {
            let done = self.written.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            {
                let mut s = self.state();
                if !s.writing {
                    s.closed = true;
                    return s.pending.take();
                }
            }
            done.await;
        }
    }

    /// Closes the cell at once, dropping what is pending (the attempt was interrupted:
    /// its lease is gone, so nothing it reports can be recorded).
    pub fn abandon(&self) {
        let mut s = self.state();
        s.closed = true;
        s.pending = None;
    }
}

/// A handler's way to report progress (see [`ProgressCell`]). A reporter not attached
/// to a node (a handler run by hand, in a test) checks reports and drops them.
#[derive(Clone)]
pub struct ProgressReporter {
    cell: Option<Arc<ProgressCell>>,
    clock: Arc<dyn Clock>,
    cancel: CancellationToken,
}

impl ProgressReporter {
    /// A reporter into `cell`, stamping reports with `clock`; refused once `cancel`
    /// fires (the attempt lost its lease).
    pub fn new(cell: Arc<ProgressCell>, clock: Arc<dyn Clock>, cancel: CancellationToken) -> Self {
        Self {
            cell: Some(cell),
            clock,
            cancel,
        }
    }

    /// A reporter that checks reports and records nothing.
    pub fn detached() -> Self {
        Self {
            cell: None,
            clock: Arc::new(crate::clock::SystemClock),
            cancel: CancellationToken::new(),
        }
    }

    /// Reports progress: `fraction` of the work is done (`0..=1`), `message` says what
    /// is going on (cleaned and cut, see [`crate::job::Progress`]). Cheap: nothing is
    /// written here.
    pub fn report(&self, fraction: f64, message: &str) -> Result<(), ProgressError> {
        let p = Progress::new(fraction, message, self.clock.now())?;
        if self.cancel.is_cancelled() {
            return Err(ProgressError::LeaseLost);
        }
        match &self.cell {
            Some(cell) => cell.report(p),
            None => Ok(()),
        }
    }
}

impl std::fmt::Debug for ProgressReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProgressReporter")
            .field("attached", &self.cell.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Millis;
    use std::time::Duration;

    fn p(f: f64) -> Progress {
        Progress::new(f, "m", Millis(0)).unwrap()
    }

    #[test]
    fn the_last_report_wins_until_taken() {
        let c = ProgressCell::new();
        c.report(p(0.1)).unwrap();
        c.report(p(0.2)).unwrap();
        assert_eq!(c.take_for_write().unwrap().fraction, 0.2);
        // Being written: nothing more is taken until the write ends.
        c.report(p(0.3)).unwrap();
        assert!(c.take_for_write().is_none());
        // A failed write hands its report back, but a newer one wins.
        c.written(Some(p(0.2)));
        assert_eq!(c.take_for_write().unwrap().fraction, 0.3);
        c.written(Some(p(0.3)));
        assert_eq!(c.take_for_write().unwrap().fraction, 0.3);
        c.written(None);
        assert!(c.take_for_write().is_none());
    }

    #[tokio::test]
    async fn close_waits_for_the_write_in_progress_then_returns_the_final_report() {
        let c = Arc::new(ProgressCell::new());
        c.report(p(0.5)).unwrap();
        assert!(c.take_for_write().is_some());
        c.report(p(1.0)).unwrap();
        let closing = tokio::spawn({
            let c = c.clone();
            async move { c.close().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!closing.is_finished(), "close must wait for the write");
        c.written(None);
        assert_eq!(closing.await.unwrap().unwrap().fraction, 1.0);
        assert_eq!(c.report(p(0.1)), Err(ProgressError::LeaseLost));
        assert!(c.take_for_write().is_none());
    }

    #[test]
    fn a_cancelled_attempt_refuses_reports_and_bad_fractions_are_refused() {
        let cancel = CancellationToken::new();
        let cell = Arc::new(ProgressCell::new());
        let r = ProgressReporter::new(
            cell.clone(),
            Arc::new(crate::clock::SystemClock),
            cancel.clone(),
        );
        assert!(matches!(
            r.report(1.5, "x"),
            Err(ProgressError::Fraction(_))
        ));
        r.report(0.5, "half").unwrap();
        cancel.cancel();
        assert_eq!(r.report(0.6, "x"), Err(ProgressError::LeaseLost));
        assert_eq!(cell.take_for_write().unwrap().message, "half");
        assert!(ProgressReporter::detached().report(0.2, "x").is_ok());
    }
}
