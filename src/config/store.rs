//! `[store]`: where ticks and candles are stored (the `store` module).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `postgres://...` for PostgreSQL or `sqlite://path` (`DATABASE_URL`).
    /// Unset: SQLite at `data_dir/tickgate.db`.
    pub url: Option<String>,
    /// Directory of the embedded SQLite database, created when missing.
    pub data_dir: PathBuf,
    /// Whether ticks are written to `realtime_market_data` (candles always are).
    pub ticks: bool,
    /// Most rows one write (one transaction) carries.
    pub batch_rows: usize,
    /// Rows buffered while the database is slow or down; beyond it new rows
    /// are dropped and counted (`tickgate_store_rows_dropped_total`).
    pub buffer_rows: usize,
    /// Longest a row waits in the buffer before a write starts.
    pub flush_ms: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: None,
            data_dir: PathBuf::from("data"),
            ticks: true,
            batch_rows: 1000,
            buffer_rows: 100_000,
            flush_ms: 200,
        }
    }
}

impl StoreConfig {
    pub(super) fn check(&self) -> Result<(), String> {
        if self.batch_rows == 0 || self.buffer_rows < self.batch_rows || self.flush_ms == 0 {
            return Err(
                "store.batch_rows and store.flush_ms must be positive, store.buffer_rows at least store.batch_rows".into(),
            );
        }
        if let Some(url) = &self.url
            && !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
        {
            return Err(
                "store.url (DATABASE_URL) must start with sqlite:, postgres:// or postgresql://"
                    .into(),
            );
        }
        Ok(())
    }
}
