//! Real databases for the storage tests: a fresh SQLite file, or a fresh
//! PostgreSQL database on the machine's server (127.0.0.1:5432, reached
//! through database `test`; `TEST_POSTGRES_URL` overrides the address), and
//! a way to make each refuse writes and then accept them again.

use sqlx::{Connection, Executor, PgConnection, SqliteConnection};
use tickgate::config::StoreConfig;

/// The admin connection for creating per-test PostgreSQL databases.
pub fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

pub enum TestDb {
    Sqlite { dir: std::path::PathBuf },
    Postgres { name: String },
}

/// A database refusing writes until `TestDb::recover`.
pub enum Outage {
    /// A connection holding SQLite's exclusive lock.
    Sqlite(SqliteConnection),
    /// The database refuses connections and its sessions were terminated.
    Postgres,
}

impl TestDb {
    pub fn sqlite() -> Self {
        Self::Sqlite {
            dir: super::temp_dir("sqlite"),
        }
    }

    /// A new, empty database named after the process and a counter.
    pub async fn postgres() -> Self {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("tickgate_t_{}_{n}", std::process::id());
        let mut admin = PgConnection::connect(&postgres_admin_url())
            .await
            .expect("PostgreSQL answers on 127.0.0.1:5432 (scripts/services.sh starts it)");
        admin
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name}"
            )))
            .await
            .expect("drop an old test database");
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .expect("create a test database");
        Self::Postgres { name }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Sqlite { .. } => "sqlite",
            Self::Postgres { .. } => "postgres",
        }
    }

    /// A store configuration pointing at this database.
    pub fn config(&self) -> StoreConfig {
        let mut config = StoreConfig::default();
        match self {
            Self::Sqlite { dir } => config.data_dir = dir.clone(),
            Self::Postgres { name } => {
                let base = postgres_admin_url();
                let server = base
                    .rsplit_once('/')
                    .map_or(base.as_str(), |(server, _)| server);
                config.url = Some(format!("{server}/{name}"));
            }
        }
        config
    }

    /// Makes the database refuse every write (and, for PostgreSQL, every
    /// connection) until `recover`.
    pub async fn outage(&self) -> Outage {
        match self {
            Self::Sqlite { dir } => {
                let path = dir.join("tickgate.db");
                let mut conn = SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                    .await
                    .expect("open the SQLite file");
                conn.execute("BEGIN EXCLUSIVE")
                    .await
                    .expect("take SQLite's exclusive lock");
                Outage::Sqlite(conn)
            }
            Self::Postgres { name } => {
                let mut admin = PgConnection::connect(&postgres_admin_url())
                    .await
                    .expect("admin connection");
                admin
                    .execute(sqlx::AssertSqlSafe(format!(
                        "ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false"
                    )))
                    .await
                    .expect("refuse connections");
                admin
                    .execute(sqlx::AssertSqlSafe(format!(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                         WHERE datname = '{name}' AND pid <> pg_backend_pid()"
                    )))
                    .await
                    .expect("terminate sessions");
                Outage::Postgres
            }
        }
    }

    pub async fn recover(&self, outage: Outage) {
        match (self, outage) {
            (Self::Sqlite { .. }, Outage::Sqlite(mut conn)) => {
                conn.execute("ROLLBACK").await.expect("release the lock");
                conn.close().await.expect("close");
            }
            (Self::Postgres { name }, Outage::Postgres) => {
                let mut admin = PgConnection::connect(&postgres_admin_url())
                    .await
                    .expect("admin connection");
                admin
                    .execute(sqlx::AssertSqlSafe(format!(
                        "ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true"
                    )))
                    .await
                    .expect("accept connections");
            }
            _ => panic!("an outage of another database"),
        }
    }

    /// Drops a PostgreSQL test database (best effort).
    pub async fn drop_database(self) {
        if let Self::Postgres { name } = self
            && let Ok(mut admin) = PgConnection::connect(&postgres_admin_url()).await
        {
            let _ = admin
                .execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .await;
        }
    }
}
