//! The open connections of one dialect, for what reaches all of them at once
//! (a market event, a source going down, a count for a health endpoint).

use std::sync::Arc;

use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use crate::{
    hub::Outbox,
    protocol::{CloseReason, Text},
};

use super::driver::Conn;

#[derive(Default)]
pub struct Registry {
    conns: Mutex<FxHashMap<u64, Arc<Outbox>>>,
}

impl Registry {
    /// Adds a connection; it leaves when the returned entry drops.
    pub fn enter(self: &Arc<Self>, conn: &Conn<'_>) -> Entry {
        self.conns.lock().insert(conn.id(), conn.outbox().clone());
        Entry {
            registry: self.clone(),
            id: conn.id(),
        }
    }

    /// Connections open now.
    pub fn len(&self) -> usize {
        self.conns.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues `frame` to every connection (never conflated).
    pub fn broadcast(&self, frame: &Text) {
        for outbox in self.conns.lock().values() {
            outbox.push_control(frame.clone());
        }
    }

    /// Queues `frame` (if any) to every connection, then closes each with
    /// `reason`.
    pub fn close_all(&self, frame: Option<&Text>, reason: CloseReason) {
        for outbox in self.conns.lock().values() {
            if let Some(frame) = frame {
                outbox.push_control(frame.clone());
            }
            outbox.close(reason);
        }
    }
}

/// A connection's place in a `Registry`, given up on drop.
pub struct Entry {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.registry.conns.lock().remove(&self.id);
    }
}
