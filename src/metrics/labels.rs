//! Label values chosen by users (queue and job kind names) with a bounded number of
//! distinct values: the first [`MAX_LABEL_VALUES`] seen keep their name, later ones are
//! counted under [`OTHER`], so a caller who invents a queue per request cannot grow the
//! scrape (or the process's memory) without bound.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};

/// How many distinct values a user-chosen label keeps before [`OTHER`].
pub const MAX_LABEL_VALUES: usize = 200;
/// The value every name past the cap is counted under.
pub const OTHER: &str = "other";
/// Longest label value kept (longer names are cut at a character boundary): queue names
/// are at most 128 bytes already, kinds are not limited by the store.
pub const MAX_LABEL_LEN: usize = 128;

/// An interned label value: cloning it is a reference-count increment, not an allocation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label(Arc<str>);

impl Label {
    /// A label with this text.
    pub fn new(text: &str) -> Self {
        Label(Arc::from(text))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl EncodeLabelValue for Label {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

/// Interns the values of one user-chosen label, up to a cap.
#[derive(Debug)]
pub struct LabelCap {
    max: usize,
    known: RwLock<HashMap<Box<str>, Label>>,
    other: Label,
}

impl LabelCap {
    /// A cap of `max` distinct values.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            known: RwLock::new(HashMap::new()),
            other: Label::new(OTHER),
        }
    }

    /// The label for `value`: its own while the cap allows, else [`OTHER`]. A known
    /// value costs a read lock and a hash; only the first sighting of a value writes.
    pub fn get(&self, value: &str) -> Label {
        let value = truncate(value);
        {
            let known = self.known.read().unwrap_or_else(|p| p.into_inner());
            if let Some(l) = known.get(value) {
                return l.clone();
            }
            // Full: no write lock for the names past the cap, however often they come.
            if known.len() >= self.max {
                return self.other.clone();
            }
        }
        let mut known = self.known.write().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = known.get(value) {
            return l.clone();
        }
        if known.len() >= self.max {
            return self.other.clone();
        }
        let label = Label::new(value);
        known.insert(value.into(), label.clone());
        label
    }

    /// How many values have their own label.
    pub fn len(&self) -> usize {
        self.known.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no value was seen yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn truncate(value: &str) -> &str {
    if value.len() <= MAX_LABEL_LEN {
        return value;
    }
    let mut end = MAX_LABEL_LEN;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

/// The labels of a job's series: its queue and kind, each capped. Computed once per job
/// where it is claimed and carried with it, so finishing it looks nothing up.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct JobTag {
    /// The queue (or `other`).
    pub queue: Label,
    /// The kind (or `other`).
    pub kind: Label,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_past_the_cap_are_counted_as_other() {
        let cap = LabelCap::new(2);
        assert_eq!(cap.get("a").as_str(), "a");
        assert_eq!(cap.get("b").as_str(), "b");
        assert_eq!(cap.get("c").as_str(), OTHER);
        assert_eq!(cap.get("a").as_str(), "a", "known values keep their label");
        assert_eq!(cap.len(), 2);
        let long = "é".repeat(100);
        let cap = LabelCap::new(5);
        assert!(cap.get(&long).as_str().len() <= MAX_LABEL_LEN);
    }
}
