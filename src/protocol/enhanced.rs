//! Seed 001's stream frames (`/ws`, `/ws/{symbol}` on 8080): the client's
//! `heartbeat`, the server's `heartbeat_response` and `error`. Its
//! `market_data` frames are the USD/COP stream's (`usdcop::market_data`).

use crate::{
    calendar::SessionStatus,
    orchestrator::State,
    spec::{
        UsdcopTime,
        messages::{
            EnhancedClientFrame, EnhancedServerFrame, EnhancedServerStatus,
            EnhancedServerStatusMarketStatus, EnhancedServerStatusServiceStatus,
        },
    },
};

use super::Text;

/// What the client asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Heartbeat,
}

/// Decodes a client frame.
///
/// # Errors
/// The text of the `error` frame that answers anything else.
pub fn decode(text: &str) -> Result<Command, &'static str> {
    match serde_json::from_str::<EnhancedClientFrame>(text) {
        // The union has one variant, so typify types it by its tag only.
        Ok(EnhancedClientFrame::Type(kind)) if kind == "heartbeat" => Ok(Command::Heartbeat),
        _ => Err(r#"Invalid message format: send {"type": "heartbeat"}"#),
    }
}

/// What `heartbeat_response` reports.
pub struct Status {
    pub service: State,
    pub market: SessionStatus,
    pub market_open: bool,
    pub clients_connected: u64,
}

pub fn heartbeat_response(status: &Status, now: jiff::Timestamp) -> Text {
    encode(&EnhancedServerFrame::HeartbeatResponse {
        timestamp: UsdcopTime(now),
        server_status: EnhancedServerStatus {
            service_status: service_status(status.service),
            market_status: match status.market {
                SessionStatus::Open => EnhancedServerStatusMarketStatus::Open,
                SessionStatus::Closing => EnhancedServerStatusMarketStatus::Closing,
                SessionStatus::Closed => EnhancedServerStatusMarketStatus::Closed,
            },
            market_open: status.market_open,
            clients_connected: status.clients_connected,
        },
    })
}

fn service_status(state: State) -> EnhancedServerStatusServiceStatus {
    use EnhancedServerStatusServiceStatus as S;
    match state {
        State::Initializing => S::Initializing,
        State::WaitingL0 => S::WaitingL0,
        State::CheckingData => S::CheckingData,
        State::Ready => S::Ready,
        State::Active => S::Active,
        State::MarketClosed => S::MarketClosed,
        State::Error => S::Error,
        State::Shutdown => S::Shutdown,
    }
}

/// An `error` frame.
pub fn error(message: impl Into<String>, now: jiff::Timestamp) -> Text {
    encode(&EnhancedServerFrame::Error {
        message: message.into(),
        timestamp: UsdcopTime(now),
    })
}

fn encode(frame: &EnhancedServerFrame) -> Text {
    super::to_text(
        frame,
        r#"{"type":"error","message":"frame did not serialize"}"#,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_heartbeat_is_a_command() {
        assert_eq!(decode(r#"{"type":"heartbeat"}"#), Ok(Command::Heartbeat));
        for bad in [r#"{"type":"ping"}"#, "{", "[]", r#"{"kind":"heartbeat"}"#] {
            assert!(decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_state_has_its_wire_name() {
        let now = jiff::Timestamp::UNIX_EPOCH;
        for (state, name) in [
            (State::Initializing, "initializing"),
            (State::WaitingL0, "waiting_l0"),
            (State::CheckingData, "checking_data"),
            (State::Ready, "ready"),
            (State::Active, "active"),
            (State::MarketClosed, "market_closed"),
            (State::Error, "error"),
            (State::Shutdown, "shutdown"),
        ] {
            let status = Status {
                service: state,
                market: SessionStatus::Closing,
                market_open: true,
                clients_connected: 3,
            };
            let frame: serde_json::Value =
                serde_json::from_str(&heartbeat_response(&status, now)).unwrap();
            assert_eq!(frame["type"], "heartbeat_response");
            assert_eq!(frame["server_status"]["service_status"], name);
            assert_eq!(frame["server_status"]["market_status"], "closing");
            assert_eq!(frame["server_status"]["clients_connected"], 3);
        }
    }
}
