//! `[orchestrator]`: the collection orchestrator (seeds 000 and 001).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// When real-time data of the calendar-bound symbols is collected.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrchestratorConfig {
    /// The symbol whose market calendar and stored history drive it.
    pub symbol: String,
    /// The L0 ready-signal file (seed 001: `/data/ready-signals/l0_ready.flag`).
    /// Unset: no L0 dependency; collection starts when the market opens.
    pub l0_signal_path: Option<PathBuf>,
    /// How long to wait for the L0 signal before falling back to the stored
    /// history.
    pub l0_timeout_s: u64,
    /// Stored history is fresh when its newest 5-minute bar is younger.
    pub freshness_hours: f64,
    /// Stored history is complete when at least this share of the last 24
    /// hours' in-session 5-minute bars is present.
    pub completeness_percent: f64,
    /// How often the state is re-evaluated.
    pub check_ms: u64,
    /// First and longest pause before leaving ERROR (doubling in between).
    pub error_backoff_ms: [u64; 2],
    /// While collecting, how long the upstream provider (when it runs) may
    /// stay disconnected before the orchestrator enters ERROR.
    pub upstream_grace_ms: u64,
}

impl Default for OrchestratorConfig {
    fn default() -> Self {
        Self {
            symbol: "USDCOP".into(),
            l0_signal_path: None,
            l0_timeout_s: 30 * 60,
            freshness_hours: 24.0,
            completeness_percent: 95.0,
            check_ms: 1000,
            error_backoff_ms: [1000, 60_000],
            upstream_grace_ms: 60_000,
        }
    }
}
