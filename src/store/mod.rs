//! Storage of ticks, candles and health snapshots with sqlx: SQLite (the
//! embedded default, a file under `store.data_dir`) or PostgreSQL
//! (`DATABASE_URL=postgres://...`). Both run the same code: the queries are
//! built once per call with a `QueryBuilder` of the pool's database, and the
//! few things the two spell differently (times, dates, JSON) live in
//! `Dialect`.
//!
//! The tables are seed 001's (`migrations/`, applied by sqlx's migrator).
//! Nothing here is on the fan-out path: sources hand rows to the `Writer`,
//! which batches them in the background (`writer.rs`).

mod writer;

use std::{str::FromStr, time::Duration};

use sqlx::{
    PgPool, QueryBuilder, Row, SqlitePool,
    migrate::Migrator,
    postgres::PgPoolOptions,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

pub use self::writer::{TABLES, Writer, WriterLimits, WriterStats};
use crate::{bars::Resolution, config::StoreConfig, event::Symbol};

/// One row of `realtime_market_data`.
#[derive(Clone, Debug, PartialEq)]
pub struct TickRow {
    pub symbol: Symbol,
    pub time: jiff::Timestamp,
    pub bid: f64,
    pub ask: f64,
    pub last: f64,
    /// Volume since the session opened.
    pub volume: i64,
    pub source: std::sync::Arc<str>,
}

/// One row of `market_data`: a bar of one timeframe.
#[derive(Clone, Debug, PartialEq)]
pub struct BarRow {
    pub symbol: Symbol,
    pub resolution: Resolution,
    /// Start of the bar.
    pub time: jiff::Timestamp,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: i64,
}

/// One row of `system_health`.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthRow {
    pub service_name: String,
    pub status: String,
    pub details: serde_json::Value,
    pub response_time_ms: Option<i32>,
    pub error_message: Option<String>,
}

/// The SQLite schema: `migrations/sqlite/`, one file per version, applied
/// in order and recorded in `_sqlx_migrations`.
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");

/// The PostgreSQL schema: `migrations/postgres/`, versioned like SQLite's.
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// The `source` of every bar tickgate builds.
pub const BAR_SOURCE: &str = "tickgate";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("unreadable value in column {column}: {value:?}")]
    Decode { column: &'static str, value: String },
}

#[derive(Clone, Debug)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A connection pool to the configured database.
#[derive(Clone, Debug)]
pub struct Store {
    pool: Pool,
}

/// Runs `$body` with `$pool` bound to the concrete pool and `$db` to its
/// database type: one body, compiled once per database.
macro_rules! with_pool {
    ($store:expr, |$pool:ident, $db:ident| $body:expr) => {
        match &$store.pool {
            Pool::Sqlite($pool) => {
                #[allow(dead_code)]
                type $db = sqlx::Sqlite;
                $body
            }
            Pool::Postgres($pool) => {
                #[allow(dead_code)]
                type $db = sqlx::Postgres;
                $body
            }
        }
    };
}

impl Store {
    /// Opens the configured database (creating the SQLite file and its
    /// directory when needed) without touching it yet: the first query
    /// connects. Call `migrate` before use.
    ///
    /// # Errors
    /// An unusable URL, or a data directory that cannot be created.
    pub fn open(config: &StoreConfig) -> Result<Self, StoreError> {
        let pool = match config.url.as_deref() {
            Some(url) if url.starts_with("postgres") => Pool::Postgres(
                PgPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(3))
                    .connect_lazy(url)?,
            ),
            url => {
                let options = match url {
                    Some(url) => SqliteConnectOptions::from_str(url)?,
                    None => {
                        std::fs::create_dir_all(&config.data_dir).map_err(|source| {
                            StoreError::DataDir {
                                path: config.data_dir.clone(),
                                source,
                            }
                        })?;
                        SqliteConnectOptions::new().filename(config.data_dir.join("tickgate.db"))
                    }
                };
                let options = options
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(1));
                // One writer at a time is all SQLite allows; a second
                // connection serves history reads while a write runs.
                Pool::Sqlite(
                    SqlitePoolOptions::new()
                        .max_connections(2)
                        .acquire_timeout(Duration::from_secs(3))
                        .connect_lazy_with(options),
                )
            }
        };
        Ok(Self { pool })
    }

    /// `sqlite` or `postgres`.
    pub fn kind(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    /// Applies the migrations of the pool's backend that the database has
    /// not seen yet (`migrations/sqlite/` or `migrations/postgres/`,
    /// embedded at build time). A database already at the newest version is
    /// left as it is; one made by an earlier tickgate is taken over where it
    /// stands (see docs/storage.md, Migrations).
    ///
    /// # Errors
    /// The database is unreachable or refuses the DDL; an applied migration
    /// whose file has changed since, or that this build does not know.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.pool {
            Pool::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await?,
            Pool::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await?,
        }
        Ok(())
    }

    /// Round trip time of a trivial query.
    ///
    /// # Errors
    /// The database is unreachable.
    pub async fn ping(&self) -> Result<Duration, StoreError> {
        let started = std::time::Instant::now();
        with_pool!(self, |pool, Db| {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(started.elapsed())
    }

    /// Writes one batch in one transaction: bars are upserted (the newest
    /// values win), ticks inserted (a tick already stored is skipped), health
    /// rows appended.
    ///
    /// # Errors
    /// Any database error; nothing of the batch is then stored.
    pub async fn write(
        &self,
        ticks: &[TickRow],
        bars: &[BarRow],
        health: &[HealthRow],
    ) -> Result<(), StoreError> {
        with_pool!(self, |pool, Db| {
            let mut tx = pool.begin().await?;
            // Bind limits: SQLite allows 32,766 parameters per statement.
            for chunk in bars.chunks(2000) {
                let mut query = QueryBuilder::<Db>::new(
                    "INSERT INTO market_data \
                     (symbol, datetime, timeframe, source, open, high, low, close, volume) ",
                );
                query.push("VALUES ");
                for (i, bar) in chunk.iter().enumerate() {
                    query.push(if i == 0 { "(" } else { ", (" });
                    query.push_bind(bar.symbol.to_string()).push(", ");
                    Db::push_time(&mut query, bar.time);
                    query.push(", ").push_bind(bar.resolution.name());
                    query.push(", ").push_bind(BAR_SOURCE);
                    query.push(", ").push_bind(bar.open);
                    query.push(", ").push_bind(bar.high);
                    query.push(", ").push_bind(bar.low);
                    query.push(", ").push_bind(bar.close);
                    query.push(", ").push_bind(bar.volume);
                    query.push(")");
                }
                query.push(
                    " ON CONFLICT (symbol, datetime, source, timeframe) DO UPDATE SET \
                     open = excluded.open, high = excluded.high, low = excluded.low, \
                     close = excluded.close, volume = excluded.volume, ",
                );
                query.push(Db::NOW_SET);
                query.build().execute(&mut *tx).await?;
            }
            for chunk in ticks.chunks(2000) {
                let mut query = QueryBuilder::<Db>::new(
                    "INSERT INTO realtime_market_data \
                     (symbol, time, bid, ask, last, volume, spread, session_date, trading_session, source) ",
                );
                query.push("VALUES ");
                for (i, tick) in chunk.iter().enumerate() {
                    query.push(if i == 0 { "(" } else { ", (" });
                    query.push_bind(tick.symbol.to_string()).push(", ");
                    Db::push_time(&mut query, tick.time);
                    query.push(", ").push_bind(tick.bid);
                    query.push(", ").push_bind(tick.ask);
                    query.push(", ").push_bind(tick.last);
                    query.push(", ").push_bind(tick.volume);
                    query.push(", ").push_bind(tick.ask - tick.bid);
                    query.push(", ");
                    Db::push_date(&mut query, tick.time);
                    query.push(", ").push_bind(true);
                    query.push(", ").push_bind(tick.source.to_string());
                    query.push(")");
                }
                query.push(" ON CONFLICT (symbol, time, source) DO NOTHING");
                query.build().execute(&mut *tx).await?;
            }
            for chunk in health.chunks(1000) {
                let mut query = QueryBuilder::<Db>::new(
                    "INSERT INTO system_health \
                     (service_name, status, details, response_time_ms, error_message) ",
                );
                query.push("VALUES ");
                for (i, health) in chunk.iter().enumerate() {
                    query.push(if i == 0 { "(" } else { ", (" });
                    query.push_bind(health.service_name.clone());
                    query.push(", ").push_bind(health.status.clone());
                    query.push(", ");
                    Db::push_json(&mut query, &health.details);
                    query.push(", ").push_bind(health.response_time_ms);
                    query.push(", ").push_bind(health.error_message.clone());
                    query.push(")");
                }
                query.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Bars of one symbol and resolution whose start lies in `[from, to)`,
    /// oldest first: the newest `limit` of them.
    ///
    /// # Errors
    /// Any database error.
    pub async fn bars(
        &self,
        symbol: &Symbol,
        resolution: Resolution,
        from: jiff::Timestamp,
        to: jiff::Timestamp,
        limit: usize,
    ) -> Result<Vec<BarRow>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut bars = with_pool!(self, |pool, Db| {
            let mut query = QueryBuilder::<Db>::new("SELECT ");
            query.push(Db::time_out("datetime"));
            query.push(
                ", CAST(open AS DOUBLE PRECISION), CAST(high AS DOUBLE PRECISION), \
                 CAST(low AS DOUBLE PRECISION), CAST(close AS DOUBLE PRECISION), \
                 CAST(volume AS BIGINT) FROM market_data WHERE symbol = ",
            );
            query.push_bind(symbol.to_string());
            query.push(" AND timeframe = ");
            query.push_bind(resolution.name());
            query.push(" AND datetime >= ");
            Db::push_time(&mut query, from);
            query.push(" AND datetime < ");
            Db::push_time(&mut query, to);
            // Rows of other sources (a seed system's own writes) share the
            // table; for one start time the most recently updated wins.
            query.push(" ORDER BY datetime DESC, updated_at DESC LIMIT ");
            query.push_bind(limit.saturating_mul(2));
            let rows = query.build().fetch_all(pool).await?;
            rows.iter()
                .map(|row| {
                    Ok(BarRow {
                        symbol: symbol.clone(),
                        resolution,
                        time: Db::read_time(row, 0)?,
                        open: row.try_get(1)?,
                        high: row.try_get(2)?,
                        low: row.try_get(3)?,
                        close: row.try_get(4)?,
                        volume: row.try_get(5)?,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?
        });
        bars.dedup_by_key(|bar| bar.time);
        bars.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        bars.reverse();
        Ok(bars)
    }

    /// Every symbol's bar of `resolution` that starts at `time` (tickgate's
    /// own bars): what a restart continues from.
    ///
    /// # Errors
    /// Any database error.
    pub async fn bars_at(
        &self,
        resolution: Resolution,
        time: jiff::Timestamp,
    ) -> Result<Vec<BarRow>, StoreError> {
        with_pool!(self, |pool, Db| {
            let mut query = QueryBuilder::<Db>::new("SELECT symbol, ");
            query.push(Db::time_out("datetime"));
            query.push(
                ", CAST(open AS DOUBLE PRECISION), CAST(high AS DOUBLE PRECISION), \
                 CAST(low AS DOUBLE PRECISION), CAST(close AS DOUBLE PRECISION), \
                 CAST(volume AS BIGINT) FROM market_data WHERE timeframe = ",
            );
            query.push_bind(resolution.name());
            query.push(" AND datetime = ");
            Db::push_time(&mut query, time);
            query.push(" AND source = ");
            query.push_bind(BAR_SOURCE);
            let rows = query.build().fetch_all(pool).await?;
            rows.iter()
                .map(|row| {
                    Ok(BarRow {
                        symbol: row.try_get::<String, _>(0)?.into(),
                        resolution,
                        time: Db::read_time(row, 1)?,
                        open: row.try_get(2)?,
                        high: row.try_get(3)?,
                        low: row.try_get(4)?,
                        close: row.try_get(5)?,
                        volume: row.try_get(6)?,
                    })
                })
                .collect()
        })
    }

    /// Whether any bar of `symbol` is stored (the simulator backfills only
    /// symbols without history).
    ///
    /// # Errors
    /// Any database error.
    pub async fn has_bars(&self, symbol: &Symbol) -> Result<bool, StoreError> {
        with_pool!(self, |pool, Db| {
            let mut query = QueryBuilder::<Db>::new(
                "SELECT COUNT(*) FROM (SELECT 1 FROM market_data WHERE symbol = ",
            );
            query.push_bind(symbol.to_string());
            query.push(" LIMIT 1) AS one");
            let row = query.build().fetch_one(pool).await?;
            Ok(row.try_get::<i64, _>(0)? > 0)
        })
    }

    /// Stored bars of one symbol and resolution.
    ///
    /// # Errors
    /// Any database error.
    pub async fn count_bars(
        &self,
        symbol: &Symbol,
        resolution: Resolution,
    ) -> Result<i64, StoreError> {
        with_pool!(self, |pool, Db| {
            let mut query =
                QueryBuilder::<Db>::new("SELECT COUNT(*) FROM market_data WHERE symbol = ");
            query.push_bind(symbol.to_string());
            query.push(" AND timeframe = ");
            query.push_bind(resolution.name());
            let row = query.build().fetch_one(pool).await?;
            Ok(row.try_get::<i64, _>(0)?)
        })
    }

    /// The newest `system_health` row of `service_name` with `status`: its
    /// details (JSON), when there is one.
    ///
    /// # Errors
    /// Any database error.
    pub async fn latest_health(
        &self,
        service_name: &str,
        status: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        with_pool!(self, |pool, Db| {
            let mut query = QueryBuilder::<Db>::new(
                "SELECT CAST(details AS TEXT) FROM system_health WHERE service_name = ",
            );
            query.push_bind(service_name.to_owned());
            query.push(" AND status = ");
            query.push_bind(status.to_owned());
            query.push(" ORDER BY id DESC LIMIT 1");
            let row = query.build().fetch_optional(pool).await?;
            Ok(row
                .map(|row| row.try_get::<Option<String>, _>(0))
                .transpose()?
                .flatten()
                .and_then(|text| serde_json::from_str(&text).ok()))
        })
    }

    /// Rows in `table` (one of the three), for tests and the ingest benchmark.
    ///
    /// # Errors
    /// Any database error; an unknown table name.
    pub async fn count(&self, table: &str) -> Result<i64, StoreError> {
        let sql = match table {
            "market_data" => "SELECT COUNT(*) FROM market_data",
            "realtime_market_data" => "SELECT COUNT(*) FROM realtime_market_data",
            "system_health" => "SELECT COUNT(*) FROM system_health",
            _ => {
                return Err(StoreError::Decode {
                    column: "table",
                    value: table.to_owned(),
                });
            }
        };
        with_pool!(self, |pool, Db| {
            let row = sqlx::query(sql).fetch_one(pool).await?;
            Ok(row.try_get::<i64, _>(0)?)
        })
    }

    /// Closes the pool, waiting for connections in use.
    pub async fn close(&self) {
        with_pool!(self, |pool, Db| pool.close().await)
    }
}

/// What SQLite and PostgreSQL spell differently.
trait Dialect: sqlx::Database + Sized {
    /// `updated_at = <now>` for an upsert.
    const NOW_SET: &'static str;
    /// Binds a time the way the column stores it.
    fn push_time(query: &mut QueryBuilder<Self>, time: jiff::Timestamp);
    /// Binds the UTC date of a time.
    fn push_date(query: &mut QueryBuilder<Self>, time: jiff::Timestamp);
    fn push_json(query: &mut QueryBuilder<Self>, value: &serde_json::Value);
    /// A select expression reading time column `column`.
    fn time_out(column: &str) -> String;
    fn read_time(row: &Self::Row, index: usize) -> Result<jiff::Timestamp, StoreError>;
}

/// SQLite times: fixed-width UTC text with microseconds, so that text order
/// is time order.
fn sqlite_time(time: jiff::Timestamp) -> String {
    crate::spec::Timestamp(time).to_string()
}

impl Dialect for sqlx::Sqlite {
    const NOW_SET: &'static str = "updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

    fn push_time(query: &mut QueryBuilder<Self>, time: jiff::Timestamp) {
        query.push_bind(sqlite_time(time));
    }

    fn push_date(query: &mut QueryBuilder<Self>, time: jiff::Timestamp) {
        query.push_bind(time.strftime("%Y-%m-%d").to_string());
    }

    fn push_json(query: &mut QueryBuilder<Self>, value: &serde_json::Value) {
        query.push_bind(value.to_string());
    }

    fn time_out(column: &str) -> String {
        column.to_owned()
    }

    fn read_time(row: &Self::Row, index: usize) -> Result<jiff::Timestamp, StoreError> {
        let text: String = row.try_get(index)?;
        text.parse().map_err(|_| StoreError::Decode {
            column: "datetime",
            value: text,
        })
    }
}

impl Dialect for sqlx::Postgres {
    const NOW_SET: &'static str = "updated_at = NOW()";

    fn push_time(query: &mut QueryBuilder<Self>, time: jiff::Timestamp) {
        // Microseconds since the epoch, exact (well below 2^53).
        query.push("(TIMESTAMPTZ 'epoch' + ");
        query.push_bind(time.as_microsecond());
        query.push(" * INTERVAL '1 microsecond')");
    }

    fn push_date(query: &mut QueryBuilder<Self>, time: jiff::Timestamp) {
        query.push("CAST(");
        query.push_bind(time.strftime("%Y-%m-%d").to_string());
        query.push(" AS DATE)");
    }

    fn push_json(query: &mut QueryBuilder<Self>, value: &serde_json::Value) {
        query.push("CAST(");
        query.push_bind(value.to_string());
        query.push(" AS JSONB)");
    }

    fn time_out(column: &str) -> String {
        format!("CAST(EXTRACT(EPOCH FROM {column}) * 1000000 AS BIGINT)")
    }

    fn read_time(row: &Self::Row, index: usize) -> Result<jiff::Timestamp, StoreError> {
        let micros: i64 = row.try_get(index)?;
        jiff::Timestamp::from_microsecond(micros).map_err(|_| StoreError::Decode {
            column: "datetime",
            value: micros.to_string(),
        })
    }
}
