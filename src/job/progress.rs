//! Progress of a running attempt: how far it got (a fraction) and a short message,
//! as a handler reports it and as the job's row keeps it.
//!
//! A report is checked and cleaned here, once, whoever made it (a Rust handler, an
//! `exec` program's output line): the fraction must be a number in `0..=1`, and the
//! message is cut to [`MAX_PROGRESS_MESSAGE`] characters, stripped of control
//! characters and redacted ([`crate::redact`]), since it is shown by `jobs show`, the
//! API and the event stream to people who may not read the job's payload.

use serde::{Deserialize, Serialize};

use super::Lease;
use crate::clock::Millis;

/// Longest progress message kept, in characters (longer ones are cut, with `…`).
pub const MAX_PROGRESS_MESSAGE: usize = 200;

/// How far a running attempt got, as last reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Done so far, `0.0..=1.0`.
    pub fraction: f64,
    /// What the handler is doing (at most [`MAX_PROGRESS_MESSAGE`] characters, cleaned).
    pub message: String,
    /// When it was reported.
    pub at: Millis,
}

/// Why a progress report was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProgressError {
    /// The fraction is not a number within `0..=1`.
    #[error("progress fraction must be a number within 0..=1, got {0}")]
    Fraction(f64),
    /// The attempt's lease is gone (job cancelled, lease lost, node stopping): the
    /// report would be refused by the store, so it is not even queued.
    #[error("the attempt no longer holds its lease; progress is not recorded")]
    LeaseLost,
}

impl Progress {
    /// A checked report: the fraction must be finite and within `0..=1`; the message is
    /// cleaned (see the module documentation).
    pub fn new(fraction: f64, message: &str, at: Millis) -> Result<Self, ProgressError> {
        if !fraction.is_finite() || !(0.0..=1.0).contains(&fraction) {
            return Err(ProgressError::Fraction(fraction));
        }
        Ok(Self {
            fraction,
            message: clean_message(message),
            at,
        })
    }

    /// Checks and cleans a report that did not come through [`Progress::new`] (a store
    /// takes reports from any caller): the same rules, so every store keeps the same.
    pub fn storable(&self) -> Result<Self, ProgressError> {
        Self::new(self.fraction, &self.message, self.at)
    }
}

/// `message` without control characters (a newline or tab becomes a space) and
/// without the invisible characters that reorder or hide text on a terminal or page
/// (bidirectional overrides and isolates, zero-width characters), redacted, and cut to
/// [`MAX_PROGRESS_MESSAGE`] characters. Redaction comes first, so a cut cannot leave
/// half a credential that no longer looks like one.
pub fn clean_message(message: &str) -> String {
    let flat: String = message
        .chars()
        .filter(|c| !invisible(*c))
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let redacted = crate::redact::redact(flat.trim());
    if redacted.chars().count() <= MAX_PROGRESS_MESSAGE {
        return redacted.into_owned();
    }
    let mut cut: String = redacted.chars().take(MAX_PROGRESS_MESSAGE - 1).collect();
    cut.push('…');
    cut
}

/// Bidirectional embeddings, overrides and isolates, zero-width characters and the
/// byte-order mark: shown as nothing, but able to make a message read as another.
fn invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// A progress report of one attempt, to be recorded under its lease (see
/// [`crate::store::JobQueue::record_progress`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressReport {
    /// The lease the attempt runs under; a report of a lease that is no longer current
    /// is refused and changes nothing.
    pub lease: Lease,
    /// What it reported.
    pub progress: Progress,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_outside_zero_to_one_are_refused() {
        for bad in [-0.01, 1.0001, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                Progress::new(bad, "x", Millis(0)),
                Err(ProgressError::Fraction(_))
            ));
        }
        for good in [0.0, 0.5, 1.0] {
            assert_eq!(Progress::new(good, "x", Millis(0)).unwrap().fraction, good);
        }
    }

    #[test]
    fn messages_are_flattened_redacted_and_cut() {
        let p = Progress::new(0.5, "fetch\nhttp://u:pw123@h/x\t\u{1b}[31m", Millis(1)).unwrap();
        assert_eq!(p.message, "fetch http://***@h/x  [31m");
        let long = "é".repeat(500);
        let p = Progress::new(0.5, &long, Millis(1)).unwrap();
        assert_eq!(p.message.chars().count(), MAX_PROGRESS_MESSAGE);
        assert!(p.message.ends_with('…'));
        let p = Progress::new(0.1, "token=abcdef123", Millis(1)).unwrap();
        assert!(!p.message.contains("abcdef123"), "{}", p.message);
        let p = Progress::new(0.1, "ok \u{202E}gnp.exe\u{200B}", Millis(1)).unwrap();
        assert_eq!(p.message, "ok gnp.exe");
    }
}
