//! Store errors.

use crate::job::JobId;

/// Why a store operation failed. No variant leaves a half-applied transition behind:
/// every multi-row write is one transaction.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The request was refused before anything was written.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A job named in the request does not exist.
    #[error("job {0} not found")]
    NotFound(JobId),
    /// A row could not be decoded: the database holds something this version does not understand.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The SQL database failed or could not be reached.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying migrations failed.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Redis failed or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

impl StoreError {
    /// Whether retrying the same call later may succeed (an outage rather than a bad request).
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Database(e) => {
                matches!(
                    e,
                    sqlx::Error::Io(_)
                        | sqlx::Error::PoolTimedOut
                        | sqlx::Error::PoolClosed
                        | sqlx::Error::Protocol(_)
                ) || e.as_database_error().is_some_and(|d| {
                    // SQLite busy/locked; Postgres serialization failure and deadlock
                    // (the transaction was rolled back whole), shutdown and connection classes.
                    matches!(
                        d.code().as_deref(),
                        Some("5")
                            | Some("6")
                            | Some("40001")
                            | Some("40P01")
                            | Some("57P01")
                            | Some("57P02")
                            | Some("57P03")
                    ) || d.code().is_some_and(|c| c.starts_with("08"))
                })
            }
            StoreError::Redis(e) => e.is_io_error() || e.is_connection_dropped() || e.is_timeout(),
            _ => false,
        }
    }
}
