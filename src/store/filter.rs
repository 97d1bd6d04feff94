//! Which jobs a listing or a bulk action is about: [`JobFilter`], its one validation
//! ([`JobFilter::check`], used by the HTTP API and the CLI alike, naming the field it
//! refuses), the payload match ([`PayloadMatch`], a small JSON-path subset parsed and
//! bounded here so that each backend only translates a checked value into bound
//! parameters), and the opaque keyset [`Cursor`] of a listing.
//!
//! Listings are keyset-paginated, never by offset: a page is the first `limit` matching
//! jobs past the cursor's position in the listing's order, so a page costs the same at
//! the millionth job as at the first, and a job is never repeated or skipped by pages
//! taken while others are added. The order is by id, except for a filter with a
//! finished range, which lists by `(finished_at, id)` ([`SortKey`]): a one-hour window
//! of a long history is then read from an index on that pair, a page at a time, instead
//! of walking every id in search of the window's rows.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::job::{JobId, JobState, MAX_PRIORITY, MIN_PRIORITY, Priority};

/// Most jobs one listing returns.
pub const MAX_LIMIT: u32 = 1000;
/// Most queues one filter names.
pub const MAX_FILTER_QUEUES: usize = 50;
/// Longest queue or kind a filter names (the longest queue name a job can carry).
pub const MAX_FILTER_NAME: usize = super::queues::MAX_QUEUE_NAME;
/// Longest payload match expression, in bytes.
pub const MAX_MATCH_LEN: usize = 512;
/// Most keys in a payload match's path.
pub const MAX_MATCH_DEPTH: usize = 8;
/// Longest key of a payload match's path, in bytes.
pub const MAX_MATCH_KEY: usize = 64;

/// Why a filter was refused: the field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FilterError {
    /// The field as clients name it (`priority_min`, `payload`, `cursor`).
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

impl FilterError {
    fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

impl From<FilterError> for super::StoreError {
    fn from(e: FilterError) -> Self {
        super::StoreError::Invalid(e.to_string())
    }
}

/// The direction of a listing along its [`SortKey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// Oldest first.
    #[default]
    Asc,
    /// Newest first.
    Desc,
}

/// A time range, `from` inclusive and `to` exclusive; either end may be open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TimeRange {
    /// At or after this time.
    #[serde(default)]
    pub from: Option<Millis>,
    /// Before this time.
    #[serde(default)]
    pub to: Option<Millis>,
}

impl TimeRange {
    /// Whether neither end is set.
    pub fn is_open(&self) -> bool {
        self.from.is_none() && self.to.is_none()
    }

    fn check(&self, from: &'static str, to: &'static str) -> Result<(), FilterError> {
        for (field, t) in [(from, self.from), (to, self.to)] {
            if t.is_some_and(|t| t.0 < 0) {
                return Err(FilterError::new(
                    field,
                    "must be a time in ms since the Unix epoch, not negative",
                ));
            }
        }
        if let (Some(a), Some(b)) = (self.from, self.to)
            && a > b
        {
            return Err(FilterError::new(
                from,
                format!("{} is after {to} ({})", a.0, b.0),
            ));
        }
        Ok(())
    }
}

/// Which jobs to list (or act on in bulk). Every condition set must hold; an empty
/// list or `None` does not restrict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobFilter {
    /// Only these queues.
    #[serde(default)]
    pub queues: Vec<String>,
    /// Only these states.
    #[serde(default)]
    pub states: Vec<JobState>,
    /// Only this kind.
    #[serde(default)]
    pub kind: Option<String>,
    /// Only priorities at or above this.
    #[serde(default)]
    pub priority_min: Option<Priority>,
    /// Only priorities at or below this.
    #[serde(default)]
    pub priority_max: Option<Priority>,
    /// Only jobs enqueued within this range.
    #[serde(default)]
    pub created: TimeRange,
    /// Only jobs finished within this range (unfinished jobs never match a set range).
    #[serde(default)]
    pub finished: TimeRange,
    /// Only jobs whose payload holds this value at this path.
    #[serde(default)]
    pub payload: Option<PayloadMatch>,
    /// Only jobs past this position in `order` (the last job of the previous page); its
    /// kind must be the filter's [`SortKey`] ([`JobFilter::check`]).
    #[serde(default)]
    pub after: Option<After>,
    /// Along the [`SortKey`], ascending or descending.
    #[serde(default)]
    pub order: Order,
    /// At most this many.
    #[serde(default = "default_limit")]
    pub limit: u32,
}

fn default_limit() -> u32 {
    100
}

impl Default for JobFilter {
    fn default() -> Self {
        Self {
            queues: Vec::new(),
            states: Vec::new(),
            kind: None,
            priority_min: None,
            priority_max: None,
            created: TimeRange::default(),
            finished: TimeRange::default(),
            payload: None,
            after: None,
            order: Order::Asc,
            limit: default_limit(),
        }
    }
}

impl JobFilter {
    /// Checks every field against its bounds, naming the first field refused. The API
    /// and the CLI call this before a filter reaches a store; stores bind every value
    /// as a parameter whatever it holds, so this is about clear errors and bounded
    /// work, not about safety of the SQL.
    pub fn check(&self) -> Result<(), FilterError> {
        if !(1..=MAX_LIMIT).contains(&self.limit) {
            return Err(FilterError::new(
                "limit",
                format!("must be within 1..={MAX_LIMIT}, got {}", self.limit),
            ));
        }
        if self.queues.len() > MAX_FILTER_QUEUES {
            return Err(FilterError::new(
                "queue",
                format!(
                    "{} queues named; at most {MAX_FILTER_QUEUES}",
                    self.queues.len()
                ),
            ));
        }
        for q in &self.queues {
            check_name("queue", q)?;
        }
        if let Some(k) = &self.kind {
            check_name("kind", k)?;
        }
        for (field, p) in [
            ("priority_min", self.priority_min),
            ("priority_max", self.priority_max),
        ] {
            if let Some(p) = p
                && !(MIN_PRIORITY..=MAX_PRIORITY).contains(&p)
            {
                return Err(FilterError::new(
                    field,
                    format!("must be within {MIN_PRIORITY}..={MAX_PRIORITY}, got {p}"),
                ));
            }
        }
        if let (Some(a), Some(b)) = (self.priority_min, self.priority_max)
            && a > b
        {
            return Err(FilterError::new(
                "priority_min",
                format!("{a} is above priority_max ({b})"),
            ));
        }
        self.created.check("created_from", "created_to")?;
        self.finished.check("finished_from", "finished_to")?;
        match (self.after, self.sort_key()) {
            (None, _) => {}
            (Some(a), _) if a.id().0 < 0 || a.finished_at().is_some_and(|t| t.0 < 0) => {
                return Err(FilterError::new("cursor", "not a cursor of this API"));
            }
            (Some(After::Id(_)), SortKey::Id)
            | (Some(After::Finished { .. }), SortKey::Finished) => {}
            (Some(After::Id(_)), SortKey::Finished) => {
                return Err(FilterError::new(
                    "cursor",
                    "continues a listing by id, but a finished range lists by finish time: \
                     start again without a cursor (keep the parameters of the first page)",
                ));
            }
            (Some(After::Finished { .. }), SortKey::Id) => {
                return Err(FilterError::new(
                    "cursor",
                    "continues a listing by finish time (one with a finished range): keep \
                     the parameters of the first page",
                ));
            }
        }
        Ok(())
    }

    /// What the listing is ordered by: `(finished_at, id)` when a finished range is set,
    /// else id. Decided here once, so that every backend, the cursor and the API agree.
    pub fn sort_key(&self) -> SortKey {
        if self.finished.is_open() {
            SortKey::Id
        } else {
            SortKey::Finished
        }
    }

    /// The states a listing reads, sorted and without repeats (empty: every state).
    pub fn state_names(&self) -> Vec<&'static str> {
        let mut states = self.states.clone();
        states.sort_unstable();
        states.dedup();
        states.into_iter().map(JobState::as_str).collect()
    }
}

/// A queue or kind a filter names: not empty, bounded, no control characters.
fn check_name(field: &'static str, name: &str) -> Result<(), FilterError> {
    if name.is_empty() {
        return Err(FilterError::new(field, "is empty"));
    }
    if name.len() > MAX_FILTER_NAME {
        return Err(FilterError::new(
            field,
            format!(
                "is {} bytes long; at most {MAX_FILTER_NAME} are allowed",
                name.len()
            ),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(FilterError::new(field, "contains a control character"));
    }
    Ok(())
}

/// What a listing is ordered by (see [`JobFilter::sort_key`]); ties never happen, as the
/// id ends every key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// By job id: the order jobs were enqueued in.
    Id,
    /// By `finished_at`, then id: the order jobs finished in. Only finished jobs are
    /// listed (a set finished range never matches an unfinished job).
    Finished,
}

/// A position in a listing: the key of the last job of the previous page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum After {
    /// Past this id (a listing by [`SortKey::Id`]).
    Id(JobId),
    /// Past this finish time and id (a listing by [`SortKey::Finished`]).
    Finished {
        /// The finish time of the last job listed.
        at: Millis,
        /// Its id, which breaks ties between jobs finished in the same millisecond.
        id: JobId,
    },
}

impl After {
    /// The position of `job` in a listing by `key`, or `None` for a listing by finish
    /// time and a job that has not finished (which such a listing never returns).
    pub fn of(job: &crate::job::Job, key: SortKey) -> Option<After> {
        match key {
            SortKey::Id => Some(After::Id(job.id)),
            SortKey::Finished => job.finished_at.map(|at| After::Finished { at, id: job.id }),
        }
    }

    /// The job id of the position.
    pub fn id(&self) -> JobId {
        match *self {
            After::Id(id) | After::Finished { id, .. } => id,
        }
    }

    /// The finish time of the position, for a listing by finish time.
    pub fn finished_at(&self) -> Option<Millis> {
        match *self {
            After::Id(_) => None,
            After::Finished { at, .. } => Some(at),
        }
    }
}

/// A match on the payload: the value at a path of object keys equals a JSON scalar.
///
/// Written `$.customer.id == "42"`: `$`, then one to [`MAX_MATCH_DEPTH`] keys each
/// introduced by a dot, `==`, and a JSON string, number, `true`, `false` or `null`.
/// Keys are ASCII letters, digits, `_` and `-`, starting with a letter or `_`, so a key
/// can never be read as an array index (Postgres' `#>` would read `0` as one, SQLite's
/// `json_extract` as a key) and means the same on every backend. Numbers compare as
/// numbers (`1` matches `1.0`); a string never matches a number; `null` matches an
/// explicit null only, not a missing key.
#[derive(Debug, Clone, PartialEq)]
pub struct PayloadMatch {
    path: Vec<String>,
    value: serde_json::Value,
}

impl PayloadMatch {
    /// Parses and checks an expression (see the type's doc).
    pub fn parse(text: &str) -> Result<Self, FilterError> {
        let bad = |reason: String| FilterError::new("payload", reason);
        if text.len() > MAX_MATCH_LEN {
            return Err(bad(format!(
                "is {} bytes long; at most {MAX_MATCH_LEN} are allowed",
                text.len()
            )));
        }
        let (path, value) = text.split_once("==").ok_or_else(|| {
            bad("write a match as `$.key.key == value`, e.g. `$.customer.id == \"42\"`".into())
        })?;
        let path = path.trim();
        let keys = path.strip_prefix("$.").ok_or_else(|| {
            bad(format!(
                "the path must start with `$.`, got `{}`",
                path.escape_debug()
            ))
        })?;
        let keys: Vec<String> = keys.split('.').map(str::to_string).collect();
        if keys.len() > MAX_MATCH_DEPTH {
            return Err(bad(format!(
                "the path has {} keys; at most {MAX_MATCH_DEPTH}",
                keys.len()
            )));
        }
        for k in &keys {
            let mut chars = k.chars();
            let ok = k.len() <= MAX_MATCH_KEY
                && chars
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !ok {
                return Err(bad(format!(
                    "key `{}` must be 1 to {MAX_MATCH_KEY} of A-Z, a-z, 0-9, _ and -, \
                     starting with a letter or _",
                    k.escape_debug()
                )));
            }
        }
        let value: serde_json::Value = serde_json::from_str(value.trim()).map_err(|e| {
            bad(format!(
                "the value must be a JSON string, number, true, false or null: {e}"
            ))
        })?;
        if value.is_array() || value.is_object() {
            return Err(bad(
                "the value must be a JSON string, number, true, false or null, not an array or object"
                    .into(),
            ));
        }
        if value.as_f64().is_some_and(|f| !f.is_finite()) {
            return Err(bad("the number is out of range".into()));
        }
        Ok(Self { path: keys, value })
    }

    /// The keys of the path, outermost first.
    pub fn path(&self) -> &[String] {
        &self.path
    }

    /// The value to compare with.
    pub fn value(&self) -> &serde_json::Value {
        &self.value
    }

    /// The path as SQLite's `json_extract` reads it, each key quoted (`$."a"."b"`; keys
    /// hold no quote, see [`PayloadMatch::parse`]).
    pub fn sqlite_path(&self) -> String {
        let mut p = String::from("$");
        for k in &self.path {
            p.push_str(".\"");
            p.push_str(k);
            p.push('"');
        }
        p
    }

    /// What SQLite's `json_type` says of a matching value: its one or two type names.
    pub fn sqlite_types(&self) -> (&'static str, &'static str) {
        match &self.value {
            serde_json::Value::Null => ("null", "null"),
            serde_json::Value::Bool(true) => ("true", "true"),
            serde_json::Value::Bool(false) => ("false", "false"),
            serde_json::Value::Number(_) => ("integer", "real"),
            _ => ("text", "text"),
        }
    }

    /// The payload a matching job's payload contains (Postgres `@>`): the value nested
    /// under the path's keys, `{"customer": {"id": "42"}}`.
    pub fn containment(&self) -> serde_json::Value {
        let mut v = self.value.clone();
        for k in self.path.iter().rev() {
            let mut m = serde_json::Map::new();
            m.insert(k.clone(), v);
            v = serde_json::Value::Object(m);
        }
        v
    }
}

impl fmt::Display for PayloadMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "$.{} == {}", self.path.join("."), self.value)
    }
}

impl std::str::FromStr for PayloadMatch {
    type Err = FilterError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for PayloadMatch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PayloadMatch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(|e| serde::de::Error::custom(e.reason))
    }
}

/// Where the next page of a listing starts: past `after` in `order`. Clients get it
/// as an opaque string ([`Cursor::encode`]) and pass it back unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The last job of the previous page, as a position in the listing's order.
    pub after: After,
    /// The listing's order.
    pub order: Order,
}

/// Marks a cursor past an id (`j1:<a|d>:<id>`, the first format, still read as before).
const CURSOR_BY_ID: &str = "j1";
/// Marks a cursor past a finish time and id (`f1:<a|d>:<ms>:<id>`).
const CURSOR_BY_FINISH: &str = "f1";
/// Longest cursor text read (the longest made is 59 characters).
const MAX_CURSOR_LEN: usize = 80;

impl Cursor {
    /// The cursor following `page` (the jobs a listing returned with `filter`), or
    /// `None` when the page was the last: it held fewer than `filter.limit` jobs.
    pub fn after_page(filter: &JobFilter, page: &[crate::job::Job]) -> Option<Cursor> {
        if page.len() < filter.limit as usize {
            return None;
        }
        let last = page.last()?;
        After::of(last, filter.sort_key()).map(|after| Cursor {
            after,
            order: filter.order,
        })
    }

    /// The opaque text form.
    pub fn encode(&self) -> String {
        let dir = match self.order {
            Order::Asc => 'a',
            Order::Desc => 'd',
        };
        let text = match self.after {
            After::Id(id) => format!("{CURSOR_BY_ID}:{dir}:{}", id.0),
            After::Finished { at, id } => format!("{CURSOR_BY_FINISH}:{dir}:{}:{}", at.0, id.0),
        };
        URL_SAFE_NO_PAD.encode(text)
    }

    /// Reads a cursor made by [`Cursor::encode`]; anything else is refused as `cursor`.
    pub fn decode(text: &str) -> Result<Self, FilterError> {
        let bad = || {
            FilterError::new(
                "cursor",
                "not a cursor of this API (pass `next_cursor` back unchanged)",
            )
        };
        if text.len() > MAX_CURSOR_LEN {
            return Err(bad());
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let parts: Vec<&str> = text.split(':').collect();
        let number = |s: &str| match s.parse::<i64>() {
            Ok(n) if n >= 0 && !s.starts_with('+') => Ok(n),
            _ => Err(bad()),
        };
        let (dir, after) = match parts[..] {
            [CURSOR_BY_ID, dir, id] => (dir, After::Id(JobId(number(id)?))),
            [CURSOR_BY_FINISH, dir, at, id] => (
                dir,
                After::Finished {
                    at: Millis(number(at)?),
                    id: JobId(number(id)?),
                },
            ),
            _ => return Err(bad()),
        };
        let order = match dir {
            "a" => Order::Asc,
            "d" => Order::Desc,
            _ => return Err(bad()),
        };
        Ok(Cursor { after, order })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn payload_matches_parse_within_bounds() {
        let m = PayloadMatch::parse(r#"$.customer.id == "42""#).unwrap();
        assert_eq!(m.path(), ["customer", "id"]);
        assert_eq!(m.value(), &json!("42"));
        assert_eq!(m.sqlite_path(), r#"$."customer"."id""#);
        assert_eq!(m.containment(), json!({"customer": {"id": "42"}}));
        assert_eq!(m.to_string(), r#"$.customer.id == "42""#);
        for (text, value) in [
            ("$.n==1.5", json!(1.5)),
            ("$.b == true", json!(true)),
            ("$.z == null", json!(null)),
            ("$._a-b == -3", json!(-3)),
        ] {
            assert_eq!(PayloadMatch::parse(text).unwrap().value(), &value, "{text}");
        }
        let deep = format!("$.{} == 1", ["k"; MAX_MATCH_DEPTH + 1].join("."));
        for bad in [
            "customer.id == 1",
            "$.a",
            "$. == 1",
            "$.a..b == 1",
            "$.0 == 1",
            "$.a[0] == 1",
            "$.a == [1]",
            "$.a == {\"x\": 1}",
            "$.a == 'x'",
            "$.a == x",
            "$.a\" OR 1=1 -- == 1",
            "$.a'); DROP TABLE jobs; -- == 1",
            deep.as_str(),
        ] {
            let e = PayloadMatch::parse(bad).unwrap_err();
            assert_eq!(e.field, "payload", "{bad}");
        }
        let long = format!("$.a == \"{}\"", "x".repeat(MAX_MATCH_LEN));
        assert!(
            PayloadMatch::parse(&long)
                .unwrap_err()
                .reason
                .contains("bytes long")
        );
        // A string value with quotes and SQL in it is data.
        let m = PayloadMatch::parse(r#"$.a == "x' OR '1'='1""#).unwrap();
        assert_eq!(m.value(), &json!("x' OR '1'='1"));
    }

    #[test]
    fn filters_are_checked_field_by_field() {
        assert!(JobFilter::default().check().is_ok());
        let field = |f: JobFilter| f.check().unwrap_err().field;
        assert_eq!(
            field(JobFilter {
                limit: 0,
                ..Default::default()
            }),
            "limit"
        );
        assert_eq!(
            field(JobFilter {
                limit: MAX_LIMIT + 1,
                ..Default::default()
            }),
            "limit"
        );
        assert_eq!(
            field(JobFilter {
                queues: vec![String::new()],
                ..Default::default()
            }),
            "queue"
        );
        assert_eq!(
            field(JobFilter {
                queues: vec!["q".into(); MAX_FILTER_QUEUES + 1],
                ..Default::default()
            }),
            "queue"
        );
        assert_eq!(
            field(JobFilter {
                kind: Some("a\u{0}".into()),
                ..Default::default()
            }),
            "kind"
        );
        assert_eq!(
            field(JobFilter {
                priority_min: Some(101),
                ..Default::default()
            }),
            "priority_min"
        );
        assert_eq!(
            field(JobFilter {
                priority_min: Some(5),
                priority_max: Some(1),
                ..Default::default()
            }),
            "priority_min"
        );
        let range = |from, to| TimeRange {
            from: Some(Millis(from)),
            to: Some(Millis(to)),
        };
        assert_eq!(
            field(JobFilter {
                created: range(5, 1),
                ..Default::default()
            }),
            "created_from"
        );
        assert_eq!(
            field(JobFilter {
                finished: range(-1, 1),
                ..Default::default()
            }),
            "finished_from"
        );
        assert!(
            JobFilter {
                created: range(1, 1),
                ..Default::default()
            }
            .check()
            .is_ok()
        );
    }

    #[test]
    fn cursors_round_trip_and_refuse_anything_else() {
        for order in [Order::Asc, Order::Desc] {
            for after in [
                After::Id(JobId(123_456)),
                After::Id(JobId(i64::MAX)),
                After::Finished {
                    at: Millis(1_700_000_000_500),
                    id: JobId(42),
                },
                After::Finished {
                    at: Millis(i64::MAX),
                    id: JobId(i64::MAX),
                },
            ] {
                let c = Cursor { after, order };
                assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
            }
        }
        // A cursor of the first format (by id) still reads as it did.
        assert_eq!(
            Cursor::decode(&URL_SAFE_NO_PAD.encode("j1:d:77")).unwrap(),
            Cursor {
                after: After::Id(JobId(77)),
                order: Order::Desc
            }
        );
        for bad in [
            "j1:a:1:2",
            "f1:a:5",
            "f1:a:-1:5",
            "f1:a:5:-1",
            "f1:x:5:1",
            "f1:a:+5:1",
            "f2:a:5:1",
        ] {
            assert!(
                Cursor::decode(&URL_SAFE_NO_PAD.encode(bad)).is_err(),
                "{bad}"
            );
        }
        for bad in [
            "",
            "x",
            "MTIz",
            "ajE6YToteDE",
            "' OR 1=1 --",
            &"A".repeat(100),
        ] {
            assert_eq!(Cursor::decode(bad).unwrap_err().field, "cursor", "{bad}");
        }
        let negative = URL_SAFE_NO_PAD.encode("j1:a:-5");
        assert!(Cursor::decode(&negative).is_err());
    }

    #[test]
    fn a_finished_range_lists_by_finish_time_and_takes_only_its_cursors() {
        let by_id = JobFilter::default();
        assert_eq!(by_id.sort_key(), SortKey::Id);
        let by_finish = JobFilter {
            finished: TimeRange {
                from: None,
                to: Some(Millis(10)),
            },
            ..Default::default()
        };
        assert_eq!(by_finish.sort_key(), SortKey::Finished);
        let at_id = Some(After::Id(JobId(5)));
        let at_finish = Some(After::Finished {
            at: Millis(3),
            id: JobId(5),
        });
        let with = |f: &JobFilter, after| JobFilter { after, ..f.clone() };
        assert!(with(&by_id, at_id).check().is_ok());
        assert!(with(&by_finish, at_finish).check().is_ok());
        for f in [with(&by_id, at_finish), with(&by_finish, at_id)] {
            let e = f.check().unwrap_err();
            assert_eq!(e.field, "cursor");
            assert!(e.reason.contains("parameters of the first page"), "{e}");
        }
        let negative = Some(After::Finished {
            at: Millis(-1),
            id: JobId(5),
        });
        assert_eq!(
            with(&by_finish, negative).check().unwrap_err().field,
            "cursor"
        );
    }
}
