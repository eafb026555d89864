//! Per-address limits of one listener's WebSocket handshakes: connections
//! open at once and handshakes per second, for the client address a request
//! comes from (its peer, or what a trusted proxy forwards for).
//!
//! Bounded state: one counter per address with open connections (removed at
//! zero), and the handshake limiter's keys, pruned of addresses whose
//! allowance is full again once there are more than `PRUNE_AT`.

use std::{net::IpAddr, num::NonZeroU32, sync::Arc, time::Duration};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock as _};
use parking_lot::Mutex;
use poem::Request;
use rustc_hash::FxHashMap;

/// Handshake limiter keys kept before idle ones are pruned.
const PRUNE_AT: usize = 10_000;

/// The limits of one listener.
pub struct IpLimits {
    open: Mutex<FxHashMap<IpAddr, usize>>,
    max_open: usize,
    handshakes: DefaultKeyedRateLimiter<IpAddr>,
    per_second: u32,
    trusted: Vec<IpAddr>,
    /// The `code` of the 429 body when the listener's seed has its own word
    /// for it (8082: `RATE_LIMIT_EXCEEDED`); otherwise the refusal's reason.
    pub code: Option<&'static str>,
}

/// Why a handshake was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpRefusal {
    /// The address holds `max` connections already.
    Open { max: usize },
    /// The address made more handshakes per second than allowed; the next
    /// may come after `retry_after`.
    Rate {
        per_second: u32,
        retry_after: Duration,
    },
}

impl IpLimits {
    pub fn new(
        max_open: usize,
        per_second: u32,
        trusted: Vec<IpAddr>,
        code: Option<&'static str>,
    ) -> Arc<Self> {
        let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        Arc::new(Self {
            open: Mutex::new(FxHashMap::default()),
            max_open,
            handshakes: RateLimiter::keyed(Quota::per_second(rate)),
            per_second: rate.get(),
            trusted,
            code,
        })
    }

    /// The client address of `request`: its peer, unless the peer is a
    /// trusted proxy, then the rightmost address of `X-Forwarded-For` that
    /// is not one (the peer when the header is missing or unparsable).
    pub fn client_ip(&self, request: &Request) -> Option<IpAddr> {
        let peer = request.remote_addr().as_socket_addr()?.ip();
        if !self.trusted.contains(&peer) {
            return Some(peer);
        }
        let forwarded = request
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        for hop in forwarded.iter().rev() {
            match hop.parse::<IpAddr>() {
                Ok(ip) if self.trusted.contains(&ip) => continue,
                Ok(ip) => return Some(ip),
                Err(_) => return Some(peer),
            }
        }
        Some(peer)
    }

    /// Takes one of `ip`'s connection slots after checking its handshake
    /// rate. The slot is given back when it drops.
    ///
    /// # Errors
    /// The limit the handshake hit.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<IpSlot, IpRefusal> {
        if self.handshakes.len() > PRUNE_AT {
            self.handshakes.retain_recent();
        }
        if let Err(not_until) = self.handshakes.check_key(&ip) {
            let wait = not_until.wait_time_from(self.handshakes.clock().now());
            return Err(IpRefusal::Rate {
                per_second: self.per_second,
                retry_after: wait,
            });
        }
        let mut open = self.open.lock();
        let count = open.entry(ip).or_default();
        if *count >= self.max_open {
            if *count == 0 {
                open.remove(&ip);
            }
            return Err(IpRefusal::Open { max: self.max_open });
        }
        *count += 1;
        Ok(IpSlot {
            limits: self.clone(),
            ip,
        })
    }

    /// Addresses with open connections now (bounded by the connections).
    pub fn addresses(&self) -> usize {
        self.open.lock().len()
    }
}

/// One connection's slot of its address's allowance.
pub struct IpSlot {
    limits: Arc<IpLimits>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock();
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}
