//! `[channels.<name>]`: per-channel limits, defaulting to seed 004's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::spec::messages::Channel;

/// Per-channel limits, keyed by channel name.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChannelsConfig(pub BTreeMap<String, ChannelLimits>);

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ChannelLimits {
    /// Most frames the channel sends one connection per second.
    pub rate_per_second: u32,
    /// Most connections subscribed to the channel at once.
    pub max_subscribers: u32,
}

impl Default for ChannelsConfig {
    fn default() -> Self {
        Self(
            Channel::ALL
                .iter()
                .map(|&channel| (channel.to_string(), seed_limits(channel)))
                .collect(),
        )
    }
}

/// The per-channel rates and subscriber caps of seed 004.
fn seed_limits(channel: Channel) -> ChannelLimits {
    let (rate_per_second, max_subscribers) = match channel {
        Channel::MarketData => (100, 500),
        Channel::Orderbook => (50, 200),
        Channel::Trades => (100, 300),
        Channel::ChartData => (10, 100),
        Channel::System => (5, 1000),
        Channel::Heartbeat => (1, 1000),
        Channel::Account => (10, 50),
        Channel::Positions => (20, 50),
        Channel::Orders => (50, 100),
        Channel::Notifications => (20, 200),
    };
    ChannelLimits {
        rate_per_second,
        max_subscribers,
    }
}

impl ChannelsConfig {
    /// The limits of `channel`, falling back to the seed's defaults.
    pub fn limits(&self, channel: Channel) -> ChannelLimits {
        self.0
            .get(&channel.to_string())
            .copied()
            .unwrap_or_else(|| seed_limits(channel))
    }

    pub(super) fn check(&self) -> Result<(), String> {
        for name in self.0.keys() {
            if name.parse::<Channel>().is_err() {
                return Err(format!("channels.{name}: no such channel"));
            }
        }
        for (name, limits) in &self.0 {
            if limits.rate_per_second == 0 || limits.max_subscribers == 0 {
                return Err(format!(
                    "channels.{name}: rate_per_second and max_subscribers must be at least 1"
                ));
            }
        }
        Ok(())
    }
}
