//! Opening the store a `[store]` config section names, in one place: the CLI, the chaos
//! runner and anything else that starts from settings get the same backend with the
//! same defaults and the same errors.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::postgres::PostgresStore;
use super::redis_postgres::{RedisPostgresConfig, RedisPostgresStore};
use super::sqlite::SqliteStore;
use super::{SharedStore, Store, StoreError};
use crate::config::{Backend, StoreSection};

/// Prefix of every Redis key when `store.redis_prefix` is not set.
pub const DEFAULT_REDIS_PREFIX: &str = "jobmesh";

/// A store opened by [`open`], keeping its concrete type for callers that need more
/// than the [`Store`] trait (closing the pool, reading the Postgres record behind the
/// production store).
#[derive(Debug, Clone)]
pub enum OpenedStore {
    /// `backend = "sqlite"`.
    Sqlite(Arc<SqliteStore>),
    /// `backend = "postgres"`.
    Postgres(Arc<PostgresStore>),
    /// `backend = "redis_postgres"`: Postgres as the record, Redis in front.
    RedisPostgres(Arc<RedisPostgresStore>),
}

impl OpenedStore {
    /// The store behind the trait, as nodes and commands use it.
    pub fn shared(&self) -> SharedStore {
        match self {
            OpenedStore::Sqlite(s) => s.clone(),
            OpenedStore::Postgres(s) => s.clone(),
            OpenedStore::RedisPostgres(s) => s.clone(),
        }
    }

    /// The durable record: the store itself, or the Postgres store behind the
    /// production one (reading it does not depend on Redis).
    pub fn record(&self) -> &dyn Store {
        match self {
            OpenedStore::Sqlite(s) => &**s,
            OpenedStore::Postgres(s) => &**s,
            OpenedStore::RedisPostgres(s) => s.postgres(),
        }
    }

    /// Closes the SQL connection pool (waits for connections in use to be returned).
    pub async fn close(&self) {
        match self {
            OpenedStore::Sqlite(s) => s.close().await,
            OpenedStore::Postgres(s) => s.close().await,
            OpenedStore::RedisPostgres(s) => s.postgres().close().await,
        }
    }
}

/// Why [`open`] failed; each names the config key involved.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// A setting the backend needs is not set.
    #[error("store.backend = \"{backend}\" needs store.{key}")]
    Missing {
        /// The key under `[store]`.
        key: &'static str,
        /// The backend that needs it.
        backend: &'static str,
    },
    /// The SQLite file could not be opened or migrated.
    #[error("opening SQLite store {}", path.display())]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: StoreError,
    },
    /// Postgres could not be reached or migrated.
    #[error("connecting to Postgres (store.postgres_url)")]
    Postgres(#[source] StoreError),
    /// Postgres or Redis could not be reached, or the Redis prefix belongs to another
    /// Postgres store.
    #[error("connecting to Postgres (store.postgres_url) and Redis (store.redis_url)")]
    RedisPostgres(#[source] StoreError),
}

/// Opens (and migrates) the store `section` names. `sqlite_path` is the file for the
/// SQLite backend when `store.sqlite_path` is unset (`Config::sqlite_path` resolves it
/// from the whole config); the other backends ignore it. For `redis_postgres`, the
/// event relay follows `store.redis_event_stream` (default on) and keys start with
/// `store.redis_prefix` (default [`DEFAULT_REDIS_PREFIX`]).
pub async fn open(section: &StoreSection, sqlite_path: &Path) -> Result<OpenedStore, OpenError> {
    match section.backend {
        Backend::Sqlite => {
            let path = section.sqlite_path.as_deref().unwrap_or(sqlite_path);
            let store = SqliteStore::open(path)
                .await
                .map_err(|source| OpenError::Sqlite {
                    path: path.to_path_buf(),
                    source,
                })?;
            Ok(OpenedStore::Sqlite(Arc::new(store)))
        }
        Backend::Postgres => {
            let url = required(&section.postgres_url, "postgres_url", "postgres")?;
            let store = PostgresStore::connect(url, None)
                .await
                .map_err(OpenError::Postgres)?
                .with_async_claims(section.async_claims());
            Ok(OpenedStore::Postgres(Arc::new(store)))
        }
        Backend::RedisPostgres => {
            let pg = required(&section.postgres_url, "postgres_url", "redis_postgres")?;
            let redis = required(&section.redis_url, "redis_url", "redis_postgres")?;
            let config = RedisPostgresConfig {
                relay: section.relays_events(),
                async_claims: section.async_claims(),
                ..RedisPostgresConfig::new(section.redis_prefix_or_default())
            };
            let store = RedisPostgresStore::connect(pg, None, redis, config)
                .await
                .map_err(OpenError::RedisPostgres)?;
            Ok(OpenedStore::RedisPostgres(Arc::new(store)))
        }
    }
}

/// A URL the backend cannot do without; empty counts as unset.
fn required<'a>(
    value: &'a Option<String>,
    key: &'static str,
    backend: &'static str,
) -> Result<&'a str, OpenError> {
    value
        .as_deref()
        .filter(|v| !v.is_empty())
        .ok_or(OpenError::Missing { key, backend })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_url_is_named_before_any_connection() {
        let section = StoreSection {
            backend: Backend::RedisPostgres,
            postgres_url: Some("postgres://127.0.0.1:1/x".into()),
            ..StoreSection::default()
        };
        let err = open(&section, Path::new("unused.db")).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "store.backend = \"redis_postgres\" needs store.redis_url"
        );
        let section = StoreSection {
            backend: Backend::Postgres,
            postgres_url: Some(String::new()),
            ..StoreSection::default()
        };
        let err = open(&section, Path::new("unused.db")).await.unwrap_err();
        assert!(matches!(
            err,
            OpenError::Missing {
                key: "postgres_url",
                ..
            }
        ));
    }

    #[tokio::test]
    async fn sqlite_opens_the_configured_file_or_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let default = dir.path().join("default.db");
        let opened = open(&StoreSection::default(), &default).await.unwrap();
        assert!(matches!(opened, OpenedStore::Sqlite(_)));
        opened.close().await;
        assert!(default.exists());

        let named = dir.path().join("named.db");
        let section = StoreSection {
            sqlite_path: Some(named.clone()),
            ..StoreSection::default()
        };
        open(&section, &default).await.unwrap().close().await;
        assert!(named.exists());
    }
}
