//! Store errors, by what the caller can do about them.
//!
//! A [`StoreError`] says what kind of failure it is (an outage to wait out, a conflict
//! to retry, a request refused, a row that cannot be read, a backend refusing for
//! another reason); the backend's own error is kept as its source, as a
//! [`BackendError`], so that no crate above the stores needs to name sqlx or redis to
//! decide. The backends' errors convert with `?`, classified once here.
//!
//! Store errors go to logs, events and the CLI's output: every text here passes through
//! [`crate::redact`], and the chain of sources ends at the [`BackendError`], whose text
//! is the masked one (the backend's error itself is reachable only through
//! [`BackendError::get_ref`]).

use std::fmt;

use crate::job::JobId;

/// Why a store operation failed. No variant leaves a half-applied transition behind:
/// every multi-row write is one transaction.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or did not answer in time (connection refused or
    /// dropped, pool timed out, server shutting down): retry later.
    #[error("{what} unavailable: {0}", what = .0.what())]
    Unavailable(#[source] BackendError),
    /// The store rolled the operation back because of a concurrent one (serialization
    /// failure, deadlock, SQLite busy or locked, a unique violation the code did not
    /// expect): retrying it may succeed.
    #[error("{what} conflict, retrying may succeed: {0}", what = .0.what())]
    Conflict(#[source] BackendError),
    /// The request was refused before anything was written.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A job named in the request does not exist.
    #[error("job {0} not found")]
    NotFound(JobId),
    /// A row could not be decoded: the store holds something this version does not understand.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The backend refused for another reason (a migration that cannot be applied, a
    /// schema that does not match, a constraint the code should have kept): retrying the
    /// same call will not help.
    #[error("{what} error: {0}", what = .0.what())]
    Backend(#[source] BackendError),
}

impl StoreError {
    /// Whether retrying the same call later may succeed (an outage or a conflict rather
    /// than a bad request).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Conflict(_))
    }
}

/// A backend's own error, kept as the source of a [`StoreError`]: what failed
/// (`database`, `Redis`, `schema migration`), its text with credentials masked, and the
/// error itself.
///
/// Its [`std::error::Error::source`] is `None` on purpose: printers of error chains (the
/// CLI, `{:#}`) would otherwise print the backend's unmasked text after the masked one.
pub struct BackendError {
    what: &'static str,
    text: String,
    inner: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl BackendError {
    /// Wraps `error`, a failure of `what` (a short noun: `database`, `Redis`).
    pub fn new(what: &'static str, error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self {
            what,
            text: crate::redact::redact(&error.to_string()).into_owned(),
            inner: Box::new(error),
        }
    }

    /// What failed: `database`, `Redis` or `schema migration`.
    pub fn what(&self) -> &'static str {
        self.what
    }

    /// The backend's error itself, for a caller that must look closer (its text is not
    /// masked: keep it out of logs).
    pub fn get_ref(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.inner
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

// By hand: the derived form would print the backend error's own `Debug`, unmasked.
impl fmt::Debug for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendError")
            .field("what", &self.what)
            .field("text", &self.text)
            .finish()
    }
}

impl std::error::Error for BackendError {}

/// SQLite's primary result codes for a database busy or locked by another connection
/// (the extended codes sqlx reports carry them in their low byte).
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match &e {
            E::Io(_) | E::PoolTimedOut | E::PoolClosed | E::Protocol(_) => {
                StoreError::Unavailable(BackendError::new("database", e))
            }
            E::Decode(_) | E::ColumnDecode { .. } => {
                StoreError::Corrupt(crate::redact::redact(&e.to_string()).into_owned())
            }
            E::Database(d) => match classify(d.as_ref()) {
                Class::Unavailable => StoreError::Unavailable(BackendError::new("database", e)),
                Class::Conflict => StoreError::Conflict(BackendError::new("database", e)),
                Class::Other => StoreError::Backend(BackendError::new("database", e)),
            },
            _ => StoreError::Backend(BackendError::new("database", e)),
        }
    }
}

enum Class {
    Unavailable,
    Conflict,
    Other,
}

/// What a database's own error means for the caller.
fn classify(d: &dyn sqlx::error::DatabaseError) -> Class {
    if d.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        let primary = d
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .map(|c| c & 0xff);
        if matches!(primary, Some(SQLITE_BUSY | SQLITE_LOCKED)) {
            return Class::Conflict;
        }
    } else {
        match d.code().as_deref() {
            // Serialization failure and deadlock: the transaction was rolled back whole.
            Some("40001" | "40P01") => return Class::Conflict,
            // Shutting down, crashed, not accepting connections yet; connection exceptions.
            Some("57P01" | "57P02" | "57P03") => return Class::Unavailable,
            Some(c) if c.starts_with("08") => return Class::Unavailable,
            _ => {}
        }
    }
    if d.is_unique_violation() {
        // The code checks unique keys before it inserts (or inserts `ON CONFLICT`), so a
        // violation is a race it did not foresee: the same call again sees the winner.
        return Class::Conflict;
    }
    Class::Other
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Backend(BackendError::new("schema migration", e))
    }
}

impl From<redis::RedisError> for StoreError {
    fn from(e: redis::RedisError) -> Self {
        if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
            StoreError::Unavailable(BackendError::new("Redis", e))
        } else if e.kind() == redis::ErrorKind::UnexpectedReturnType {
            // Redis holds a value of a shape this version does not read.
            StoreError::Corrupt(crate::redact::redact(&e.to_string()).into_owned())
        } else {
            StoreError::Backend(BackendError::new("Redis", e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_and_conflicts_are_transient_refusals_are_not() {
        assert!(StoreError::from(sqlx::Error::PoolTimedOut).is_transient());
        assert!(matches!(
            StoreError::from(sqlx::Error::Io(
                std::io::ErrorKind::ConnectionRefused.into()
            )),
            StoreError::Unavailable(_)
        ));
        assert!(!StoreError::from(sqlx::Error::RowNotFound).is_transient());
        assert!(!StoreError::Invalid("bad".into()).is_transient());
        assert!(matches!(
            StoreError::from(sqlx::Error::Decode("not a number".into())),
            StoreError::Corrupt(_)
        ));
        let redis_down =
            redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(StoreError::from(redis_down).is_transient());
    }

    /// SQLite's own answers, from a real file: a writer locked out is a conflict, a
    /// unique violation is a conflict, a broken constraint is the backend refusing.
    #[tokio::test]
    async fn sqlite_busy_and_unique_violations_are_conflicts() {
        use sqlx::{ConnectOptions, Connection};

        let dir = tempfile::tempdir().unwrap();
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.path().join("db"))
            .create_if_missing(true)
            .busy_timeout(std::time::Duration::ZERO);
        let mut a = options.connect().await.unwrap();
        let mut b = options.connect().await.unwrap();
        sqlx::raw_sql("CREATE TABLE t (k TEXT UNIQUE, n INTEGER CHECK (n > 0))")
            .execute(&mut a)
            .await
            .unwrap();
        let held = a.begin_with("BEGIN IMMEDIATE").await.unwrap();
        let busy = StoreError::from(b.begin_with("BEGIN IMMEDIATE").await.unwrap_err());
        assert!(matches!(busy, StoreError::Conflict(_)), "{busy}");
        held.rollback().await.unwrap();
        let insert = "INSERT INTO t (k, n) VALUES ('x', 1)";
        sqlx::raw_sql(insert).execute(&mut b).await.unwrap();
        let dup = StoreError::from(sqlx::raw_sql(insert).execute(&mut b).await.unwrap_err());
        assert!(matches!(dup, StoreError::Conflict(_)), "{dup}");
        assert!(dup.is_transient());
        let check = sqlx::raw_sql("INSERT INTO t (k, n) VALUES ('y', 0)")
            .execute(&mut b)
            .await
            .unwrap_err();
        let refused = StoreError::from(check);
        assert!(matches!(refused, StoreError::Backend(_)), "{refused}");
        assert!(!refused.is_transient());
        assert!(
            refused.to_string().starts_with("database error: "),
            "{refused}"
        );
    }

    #[test]
    fn messages_say_what_failed_without_credentials() {
        let e = StoreError::from(sqlx::Error::Io(std::io::Error::other(
            "cannot reach postgres://jobs:hunter22@db.example/jobs",
        )));
        assert!(e.to_string().starts_with("database unavailable: "), "{e}");
        for text in [e.to_string(), format!("{e:?}")] {
            assert!(!text.contains("hunter22"), "{text}");
        }
        let source = std::error::Error::source(&e).expect("the backend error is the source");
        assert!(!source.to_string().contains("hunter22"));
        assert!(
            source.source().is_none(),
            "the chain ends at the masked text"
        );
    }
}
