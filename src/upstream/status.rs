//! The source's state as the rest of the gateway sees it: `UpstreamStatus`,
//! written by the runner and read by `/status` and health, and its
//! `UpstreamSnapshot`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use jiff::Timestamp;
use parking_lot::Mutex;
use serde::Serialize;

use super::twelvedata::UpstreamError;

/// What the source is doing, for `/status` and health: shared with the REST
/// layer, written by the source.
#[derive(Debug, Default)]
pub struct UpstreamStatus {
    active: AtomicBool,
    connected: AtomicBool,
    messages: AtomicU64,
    ticks: AtomicU64,
    errors: AtomicU64,
    reconnects: AtomicU64,
    last_message: Mutex<Option<Timestamp>>,
    last_error: Mutex<Option<String>>,
}

/// A copy of [`UpstreamStatus`] at one moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UpstreamSnapshot {
    /// Collecting: the gate is open and the source runs.
    pub active: bool,
    /// The stream is open (websocket mode), or the last request was
    /// answered (rest mode).
    pub connected: bool,
    /// When the provider last sent something usable.
    pub last_message: Option<Timestamp>,
    /// Messages received from the provider (stream events, REST answers).
    pub messages: u64,
    /// Ticks handed to the core.
    pub ticks: u64,
    /// Failed requests, refused handshakes, provider errors and invalid
    /// messages.
    pub errors: u64,
    /// Stream connections attempted after the first of each session.
    pub reconnects: u64,
    /// The latest error, keys masked.
    pub last_error: Option<String>,
}

impl UpstreamStatus {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn snapshot(&self) -> UpstreamSnapshot {
        UpstreamSnapshot {
            active: self.active.load(Ordering::Relaxed),
            connected: self.connected.load(Ordering::Relaxed),
            last_message: *self.last_message.lock(),
            messages: self.messages.load(Ordering::Relaxed),
            ticks: self.ticks.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            last_error: self.last_error.lock().clone(),
        }
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    pub(super) fn message(&self, now: Timestamp) {
        self.messages.fetch_add(1, Ordering::Relaxed);
        *self.last_message.lock() = Some(now);
    }

    pub(super) fn error(&self, error: &UpstreamError) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock() = Some(error.to_string());
    }

    pub(super) fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
    }

    pub(super) fn set_active(&self, active: bool) {
        self.active.store(active, Ordering::Relaxed);
    }

    /// One tick handed to the core.
    pub(super) fn count_tick(&self) {
        self.ticks.fetch_add(1, Ordering::Relaxed);
    }

    /// One stream connection attempted after the first of a session.
    pub(super) fn count_reconnect(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }
}
