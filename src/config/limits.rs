//! `[[limit]]`: cluster-wide concurrency and rate limits (see [`crate::limits`]), checked
//! at load, every problem named by its key (`limit[1].rate: ...`).
//!
//! ```toml
//! [[limit]]
//! queue = "emails"                # or kind = "http" (one of the two)
//! max_running = 5                 # at most 5 running at once (per key with limit_by)
//! rate = "100/s"                  # at most 100 claims a second: N/s, N/min, N/h, N/250ms
//! burst = 20                      # bucket size (default: the rate's N)
//! limit_by = "$.customer_id"      # per key: the payload's value at this path
//! ```

use serde::{Deserialize, Serialize};

use crate::limits::{Limit, LimitScope, MAX_LIMITS, Rate};

/// One `[[limit]]` entry as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LimitEntry {
    /// The queue limited (exactly one of `queue` and `kind`).
    #[serde(default)]
    pub queue: Option<String>,
    /// The kind limited, in every queue.
    #[serde(default)]
    pub kind: Option<String>,
    /// At most this many running at once.
    #[serde(default)]
    pub max_running: Option<u32>,
    /// At most this many claims per interval: `100/s`, `5/min`, `1000/h`, `10/250ms`.
    #[serde(default)]
    pub rate: Option<String>,
    /// Tokens the rate's bucket holds (default: the rate's count).
    #[serde(default)]
    pub burst: Option<u32>,
    /// The partition key: a JSON path into the payload (`$.customer_id`).
    #[serde(default)]
    pub limit_by: Option<String>,
}

impl LimitEntry {
    /// The limit this entry describes, or the key at fault and why.
    pub fn to_limit(&self) -> Result<Limit, (&'static str, String)> {
        let scope = match (&self.queue, &self.kind) {
            (Some(q), None) => LimitScope::Queue(q.clone()),
            (None, Some(k)) => LimitScope::Kind(k.clone()),
            (Some(_), Some(_)) => {
                return Err((
                    "kind",
                    "set queue or kind, not both (write two limits)".into(),
                ));
            }
            (None, None) => return Err(("queue", "set queue = \"..\" or kind = \"..\"".into())),
        };
        let rate = self
            .rate
            .as_deref()
            .map(Rate::parse)
            .transpose()
            .map_err(|e| ("rate", e))?;
        let limit = Limit {
            scope,
            max_running: self.max_running,
            rate,
            burst: self.burst,
            limit_by: self.limit_by.clone(),
        };
        limit.check().map_err(|e| {
            let key = if e.reason.starts_with("limit_by") {
                "limit_by"
            } else if e.reason.starts_with("burst") {
                "burst"
            } else if e.reason.starts_with("max_running") {
                "max_running"
            } else if e.reason.starts_with("rate") {
                "rate"
            } else if self.queue.is_some() {
                "queue"
            } else {
                "kind"
            };
            (key, e.reason)
        })?;
        Ok(limit)
    }
}

/// Every problem of the `[[limit]]` entries, as (key, message).
pub(super) fn problems(entries: &[LimitEntry]) -> Vec<(String, String)> {
    if entries.len() > MAX_LIMITS {
        return vec![(
            "limit".into(),
            format!("{} limits; at most {MAX_LIMITS} are allowed", entries.len()),
        )];
    }
    let mut out = Vec::new();
    let mut seen: Vec<(LimitScope, usize)> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        match e.to_limit() {
            Ok(l) => {
                if let Some((_, first)) = seen.iter().find(|(s, _)| *s == l.scope) {
                    out.push((
                        format!("limit[{i}]"),
                        format!("limit[{first}] already limits {}; merge the two", l.name()),
                    ));
                } else {
                    seen.push((l.scope, i));
                }
            }
            Err((key, message)) => out.push((format!("limit[{i}].{key}"), message)),
        }
    }
    out
}

/// The limits of entries that passed [`problems`].
pub(super) fn limits(entries: &[LimitEntry]) -> Vec<Limit> {
    entries.iter().filter_map(|e| e.to_limit().ok()).collect()
}
