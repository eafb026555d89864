//! Facts about the v1 channels that the schema cannot say: which are private,
//! which are per symbol, and a dense index for per-channel arrays.

use super::messages::Channel;

/// How many channels the v1 API has.
pub const CHANNEL_COUNT: usize = 10;

impl Channel {
    /// Every channel, in `index` order (the order of asyncapi.yaml).
    pub const ALL: [Channel; CHANNEL_COUNT] = [
        Channel::MarketData,
        Channel::Orderbook,
        Channel::Trades,
        Channel::ChartData,
        Channel::System,
        Channel::Heartbeat,
        Channel::Account,
        Channel::Positions,
        Channel::Orders,
        Channel::Notifications,
    ];

    /// A dense index in `0..CHANNEL_COUNT`.
    pub const fn index(self) -> usize {
        match self {
            Channel::MarketData => 0,
            Channel::Orderbook => 1,
            Channel::Trades => 2,
            Channel::ChartData => 3,
            Channel::System => 4,
            Channel::Heartbeat => 5,
            Channel::Account => 6,
            Channel::Positions => 7,
            Channel::Orders => 8,
            Channel::Notifications => 9,
        }
    }

    /// Private channels carry one user's events and need authentication.
    pub const fn is_private(self) -> bool {
        matches!(
            self,
            Channel::Account | Channel::Positions | Channel::Orders | Channel::Notifications
        )
    }

    /// Per-symbol channels have one topic per symbol; the others one topic
    /// (public) or one per user (private).
    pub const fn per_symbol(self) -> bool {
        matches!(
            self,
            Channel::MarketData | Channel::Orderbook | Channel::Trades | Channel::ChartData
        )
    }

    /// Whether a newer frame of a topic may replace a queued one. Private
    /// frames are never conflated.
    pub const fn conflates(self) -> bool {
        !self.is_private()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_matches_all_order() {
        for (i, channel) in Channel::ALL.iter().enumerate() {
            assert_eq!(channel.index(), i, "{channel}");
        }
    }

    #[test]
    fn four_private_four_per_symbol() {
        assert_eq!(Channel::ALL.iter().filter(|c| c.is_private()).count(), 4);
        assert_eq!(Channel::ALL.iter().filter(|c| c.per_symbol()).count(), 4);
        assert!(
            Channel::ALL
                .iter()
                .all(|c| !(c.is_private() && c.per_symbol()))
        );
    }
}
