//! The pool of upstream API keys: where they come from (environment and
//! configuration), which one the next request uses, and what each has done.
//!
//! Keys are indexed from 0 in pool order: `TWELVEDATA_API_KEY_G1_1..8`,
//! `TWELVEDATA_API_KEY_G2_1..8`, `TWELVEDATA_API_KEY_1..16`,
//! `TWELVEDATA_API_KEYS` (comma-separated), `TWELVEDATA_API_KEY`, then
//! `upstream.twelvedata.keys` from the configuration; duplicates keep their
//! first place and the pool holds at most [`MAX_KEYS`].
//!
//! Time is passed in as a `jiff::Timestamp` rather than read from a clock:
//! the spacing and cool-down rules are tested without sleeping, and every
//! time the pool reports (last use, end of a cool-down, the daily credit
//! reset at UTC midnight) is a wall-clock time that `/status` can show, which
//! a `tokio::time::Instant` is not. The time passed in is real time, not the
//! gateway's `Clock`: these are the provider's limits, and a pinned or frozen
//! clock must not stall or skip them.
//!
//! A key never appears in full outside the request that carries it: its
//! `Debug`, its serialized form and every report show it masked.

use std::{fmt, time::Duration};

use jiff::{SignedDuration, Timestamp};
use parking_lot::Mutex;
use serde::Serialize;

/// Most keys a pool holds (two groups of eight).
pub const MAX_KEYS: usize = 16;

/// Least time between two uses of one key, unless configured.
pub const DEFAULT_MIN_SPACING: Duration = Duration::from_secs(8);

/// How long a rate-limited key rests when the provider does not say: the
/// provider counts credits per minute.
pub const DEFAULT_RATE_LIMIT_COOLDOWN: Duration = Duration::from_secs(60);

/// Values that stand in for a key in example files, never keys themselves.
const PLACEHOLDERS: &[&str] = &[
    "your_real_api_key_here",
    "your_api_key_here",
    "your_twelvedata_api_key",
    "changeme",
    "xxx",
];

/// One API key: the configuration's [`Secret`] (it prints and serializes
/// masked; `expose` is the only way to its text, for the request that
/// carries it).
pub use crate::config::{Secret as ApiKey, mask};

/// Whether `value` is a real key rather than an empty value or a placeholder
/// copied from an example.
fn is_real_key(value: &str) -> bool {
    let lower = value.trim().to_ascii_lowercase();
    let placeholder = PLACEHOLDERS.contains(&lower.as_str())
        || (lower.starts_with("your_") && lower.ends_with("_here"))
        || (lower.starts_with('<') && lower.ends_with('>'));
    !lower.is_empty() && !placeholder
}

/// What happened to a request made with a leased key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answered; the provider may say how many credits are left.
    Ok { remaining_credits: Option<u32> },
    /// HTTP 429 or `"code": 429` for the current minute: the key rests for
    /// `retry_after` (default [`DEFAULT_RATE_LIMIT_COOLDOWN`]).
    RateLimited { retry_after: Option<Duration> },
    /// The key's credits for the day are spent: it rests until `reset`
    /// (default: the next UTC midnight, when the provider resets them).
    OutOfCredits { reset: Option<Timestamp> },
    /// HTTP 401/403: the key is refused and stays disabled until restart.
    Invalid,
    /// The stream on this key ended without blame: the key stays usable,
    /// and the pool moves on to the next key for the reconnect.
    Disconnected,
}

/// The state of one key, as `usage` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    Ready,
    RateLimited,
    OutOfCredits,
    Invalid,
}

/// A key handed out for one request (or one stream connection); the call is
/// already counted.
#[derive(Clone, Debug)]
pub struct Lease {
    pub index: usize,
    pub key: ApiKey,
}

/// No key may be used now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wait {
    /// The earliest moment some key becomes usable; `None` when none ever
    /// will (no keys, or every key refused by the provider).
    pub until: Option<Timestamp>,
}

/// The answer to a manual rotation. Indices are 0-based in pool order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rotation {
    pub previous_key_index: usize,
    pub current_key_index: usize,
    /// The new key's credits left, as the provider last reported them.
    pub remaining_credits: Option<u32>,
    /// When the new key's credits reset (the next UTC midnight, or the end
    /// of its rest).
    pub next_reset: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RotateError {
    #[error(
        "key rotation needs at least 2 API keys, {configured} configured: set TWELVEDATA_API_KEY_G1_1 ... TWELVEDATA_API_KEY_G2_8"
    )]
    TooFewKeys { configured: usize },
    #[error(
        "no other API key is usable now: every other key is rate-limited, out of credits or refused"
    )]
    NoUsableKey,
}

/// One key's usage, for `/status`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KeyUsage {
    pub index: usize,
    /// 1 or 2 for `TWELVEDATA_API_KEY_G<group>_<n>` keys, none for the others.
    pub group: Option<u8>,
    pub masked: String,
    pub calls: u64,
    pub last_used: Option<Timestamp>,
    pub state: KeyState,
    pub remaining_credits: Option<u32>,
    pub cooldown_until: Option<Timestamp>,
}

/// The whole pool's usage, for `/status` (`api_key_usage`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PoolUsage {
    pub total_keys: usize,
    pub current_key_index: Option<usize>,
    pub total_calls: u64,
    pub keys: Vec<KeyUsage>,
}

struct Slot {
    key: ApiKey,
    group: Option<u8>,
    calls: u64,
    last_used: Option<Timestamp>,
    state: KeyState,
    remaining_credits: Option<u32>,
    cooldown_until: Option<Timestamp>,
}

impl Slot {
    /// Ends a finished rest.
    fn refresh(&mut self, now: Timestamp) {
        if let Some(until) = self.cooldown_until
            && until <= now
        {
            self.cooldown_until = None;
            if matches!(self.state, KeyState::RateLimited | KeyState::OutOfCredits) {
                self.state = KeyState::Ready;
            }
        }
    }

    fn ready(&self) -> bool {
        self.state == KeyState::Ready
    }
}

struct State {
    slots: Vec<Slot>,
    current: Option<usize>,
    total_calls: u64,
}

/// The keys, shared by the sources and the REST API (`Arc<KeyPool>`).
pub struct KeyPool {
    state: Mutex<State>,
    min_spacing: SignedDuration,
    rate_limit_cooldown: Duration,
}

impl fmt::Debug for KeyPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPool")
            .field("total_keys", &self.len())
            .finish_non_exhaustive()
    }
}

impl KeyPool {
    /// The keys named by the environment `vars` (formats in the module
    /// documentation), with the default spacing and cool-down. The caller
    /// passes `std::env::vars()`; the library never reads the environment.
    pub fn from_env(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        Self::from_sources(vars, &[])
    }

    /// The keys of `vars`, then `extra` (the configuration's keys).
    pub fn from_sources(
        vars: impl IntoIterator<Item = (String, String)>,
        extra: &[ApiKey],
    ) -> Self {
        let vars: std::collections::HashMap<String, String> = vars
            .into_iter()
            .filter(|(name, _)| name.starts_with("TWELVEDATA_API_KEY"))
            .collect();
        let mut found: Vec<(ApiKey, Option<u8>)> = Vec::new();
        let mut add = |value: &str, group: Option<u8>| {
            let key = ApiKey::new(value);
            if is_real_key(value) && !found.iter().any(|(known, _)| *known == key) {
                found.push((key, group));
            }
        };
        for group in 1..=2u8 {
            for n in 1..=8 {
                if let Some(value) = vars.get(&format!("TWELVEDATA_API_KEY_G{group}_{n}")) {
                    add(value, Some(group));
                }
            }
        }
        for n in 1..=16 {
            if let Some(value) = vars.get(&format!("TWELVEDATA_API_KEY_{n}")) {
                add(value, None);
            }
        }
        if let Some(list) = vars.get("TWELVEDATA_API_KEYS") {
            for value in list.split(',') {
                add(value, None);
            }
        }
        if let Some(value) = vars.get("TWELVEDATA_API_KEY") {
            add(value, None);
        }
        for key in extra {
            add(key.expose(), None);
        }
        found.truncate(MAX_KEYS);
        Self::new(found)
    }

    /// A pool of `keys` (with their group) in this order.
    pub fn new(keys: Vec<(ApiKey, Option<u8>)>) -> Self {
        let slots: Vec<Slot> = keys
            .into_iter()
            .take(MAX_KEYS)
            .map(|(key, group)| Slot {
                key,
                group,
                calls: 0,
                last_used: None,
                state: KeyState::Ready,
                remaining_credits: None,
                cooldown_until: None,
            })
            .collect();
        let current = (!slots.is_empty()).then_some(0);
        Self {
            state: Mutex::new(State {
                slots,
                current,
                total_calls: 0,
            }),
            min_spacing: SignedDuration::try_from(DEFAULT_MIN_SPACING)
                .unwrap_or(SignedDuration::ZERO),
            rate_limit_cooldown: DEFAULT_RATE_LIMIT_COOLDOWN,
        }
    }

    /// This pool with `spacing` between two uses of one key.
    pub fn with_min_spacing(mut self, spacing: Duration) -> Self {
        self.min_spacing = SignedDuration::try_from(spacing).unwrap_or(SignedDuration::MAX);
        self
    }

    /// This pool with `cooldown` for a rate-limited key when the provider
    /// gives no `Retry-After`.
    pub fn with_rate_limit_cooldown(mut self, cooldown: Duration) -> Self {
        self.rate_limit_cooldown = cooldown;
        self
    }

    pub fn len(&self) -> usize {
        self.state.lock().slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The key for the next request at `now`: the current key if it is
    /// usable and its last use is at least the spacing ago; otherwise the
    /// next such key in round-robin order, which becomes current. The call
    /// is counted on the key and the pool.
    ///
    /// # Errors
    /// `Wait` when no key may be used now, with when one may.
    pub fn acquire(&self, now: Timestamp) -> Result<Lease, Wait> {
        let mut state = self.state.lock();
        let count = state.slots.len();
        for slot in &mut state.slots {
            slot.refresh(now);
        }
        let start = state.current.unwrap_or(0);
        let spaced = |slot: &Slot| {
            slot.last_used
                .is_none_or(|last| now.duration_since(last) >= self.min_spacing)
        };
        let pick = (0..count)
            .map(|offset| (start + offset) % count)
            .find(|&i| state.slots[i].ready() && spaced(&state.slots[i]));
        let Some(index) = pick else {
            let until = state
                .slots
                .iter()
                .filter_map(|slot| {
                    let spaced_at = slot.last_used.map_or(now, |last| {
                        last.saturating_add(self.min_spacing).unwrap_or(last)
                    });
                    match slot.state {
                        KeyState::Ready => Some(spaced_at),
                        KeyState::RateLimited | KeyState::OutOfCredits => {
                            Some(slot.cooldown_until.map_or(spaced_at, |c| c.max(spaced_at)))
                        }
                        KeyState::Invalid => None,
                    }
                })
                .min();
            return Err(Wait { until });
        };
        state.current = Some(index);
        state.total_calls += 1;
        let slot = &mut state.slots[index];
        slot.calls += 1;
        slot.last_used = Some(now);
        Ok(Lease {
            index,
            key: slot.key.clone(),
        })
    }

    /// Records what a request with key `index` met at `now`. A key that
    /// must rest (or is refused) stops being current: the pool moves on to
    /// the next usable key, and the key comes back when its rest ends.
    pub fn report(&self, index: usize, outcome: Outcome, now: Timestamp) {
        let mut state = self.state.lock();
        let cooldown = self.rate_limit_cooldown;
        let Some(slot) = state.slots.get_mut(index) else {
            return;
        };
        let move_on = match outcome {
            Outcome::Ok { remaining_credits } => {
                if remaining_credits.is_some() {
                    slot.remaining_credits = remaining_credits;
                }
                if slot.state != KeyState::Invalid {
                    slot.state = KeyState::Ready;
                    slot.cooldown_until = None;
                }
                false
            }
            Outcome::RateLimited { retry_after } => {
                let rest = retry_after.unwrap_or(cooldown);
                slot.state = KeyState::RateLimited;
                slot.cooldown_until = Some(add(now, rest));
                true
            }
            Outcome::OutOfCredits { reset } => {
                slot.state = KeyState::OutOfCredits;
                slot.remaining_credits = Some(0);
                slot.cooldown_until = Some(reset.unwrap_or_else(|| next_utc_midnight(now)));
                true
            }
            Outcome::Invalid => {
                slot.state = KeyState::Invalid;
                slot.cooldown_until = None;
                true
            }
            Outcome::Disconnected => true,
        };
        if move_on
            && state.current == Some(index)
            && let Some(next) = next_ready(&mut state, index, now)
        {
            state.current = Some(next);
        }
    }

    /// Manual rotation: the next usable key after the current one becomes
    /// current (spacing still applies to the requests that use it).
    ///
    /// # Errors
    /// `TooFewKeys` with fewer than 2 keys; `NoUsableKey` when every other
    /// key is resting or refused.
    pub fn rotate(&self, now: Timestamp) -> Result<Rotation, RotateError> {
        let mut state = self.state.lock();
        let configured = state.slots.len();
        if configured < 2 {
            return Err(RotateError::TooFewKeys { configured });
        }
        let previous = state.current.unwrap_or(0);
        let next = next_ready(&mut state, previous, now).ok_or(RotateError::NoUsableKey)?;
        state.current = Some(next);
        let slot = &state.slots[next];
        Ok(Rotation {
            previous_key_index: previous,
            current_key_index: next,
            remaining_credits: slot.remaining_credits,
            next_reset: Some(
                slot.cooldown_until
                    .unwrap_or_else(|| next_utc_midnight(now)),
            ),
        })
    }

    /// Every key's usage now.
    pub fn usage(&self) -> PoolUsage {
        self.usage_at(Timestamp::now())
    }

    /// Every key's usage at `now` (rests that ended by `now` are over).
    pub fn usage_at(&self, now: Timestamp) -> PoolUsage {
        let mut state = self.state.lock();
        for slot in &mut state.slots {
            slot.refresh(now);
        }
        PoolUsage {
            total_keys: state.slots.len(),
            current_key_index: state.current,
            total_calls: state.total_calls,
            keys: state
                .slots
                .iter()
                .enumerate()
                .map(|(index, slot)| KeyUsage {
                    index,
                    group: slot.group,
                    masked: slot.key.masked(),
                    calls: slot.calls,
                    last_used: slot.last_used,
                    state: slot.state,
                    remaining_credits: slot.remaining_credits,
                    cooldown_until: slot.cooldown_until,
                })
                .collect(),
        }
    }
}

/// The first usable key after `index` in round-robin order, not `index`
/// itself.
fn next_ready(state: &mut State, index: usize, now: Timestamp) -> Option<usize> {
    let count = state.slots.len();
    for slot in &mut state.slots {
        slot.refresh(now);
    }
    (1..count)
        .map(|offset| (index + offset) % count)
        .find(|&i| state.slots[i].ready())
}

fn add(now: Timestamp, duration: Duration) -> Timestamp {
    SignedDuration::try_from(duration)
        .ok()
        .and_then(|d| now.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

/// The next midnight UTC after `now`, when the provider's daily credits reset.
pub fn next_utc_midnight(now: Timestamp) -> Timestamp {
    const DAY: i64 = 86_400;
    let next = (now.as_second().div_euclid(DAY) + 1) * DAY;
    Timestamp::from_second(next).unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn masked_keys(pool: &KeyPool) -> Vec<String> {
        let usage = pool.usage_at(Timestamp::UNIX_EPOCH);
        usage.keys.into_iter().map(|k| k.masked).collect()
    }

    fn pool(n: usize) -> KeyPool {
        KeyPool::new(
            (0..n)
                .map(|i| (ApiKey::new(&format!("key-number-{i:02}")), None))
                .collect(),
        )
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    fn index(result: Result<Lease, Wait>) -> usize {
        result.expect("a key").index
    }

    #[test]
    fn every_env_format_in_pool_order() {
        let pool = KeyPool::from_env(vars(&[
            ("TWELVEDATA_API_KEY", "single-key-000"),
            ("TWELVEDATA_API_KEYS", "list-key-0001, list-key-0002"),
            ("TWELVEDATA_API_KEY_3", "numbered-k-3"),
            ("TWELVEDATA_API_KEY_1", "numbered-k-1"),
            ("TWELVEDATA_API_KEY_G2_1", "group2-key-1"),
            ("TWELVEDATA_API_KEY_G1_8", "group1-key-8"),
            ("TWELVEDATA_API_KEY_G1_1", "group1-key-1"),
            ("UNRELATED", "not-a-key-at-all"),
        ]));
        let usage = pool.usage_at(Timestamp::UNIX_EPOCH);
        let got: Vec<(String, Option<u8>)> = usage
            .keys
            .iter()
            .map(|k| (k.masked.clone(), k.group))
            .collect();
        let want = [
            ("grou…-1", Some(1)),
            ("grou…-8", Some(1)),
            ("grou…-1", Some(2)),
            ("numb…-1", None),
            ("numb…-3", None),
            ("list…01", None),
            ("list…02", None),
            ("sing…00", None),
        ];
        let want: Vec<(String, Option<u8>)> =
            want.iter().map(|(m, g)| ((*m).to_owned(), *g)).collect();
        assert_eq!(got, want);
        assert_eq!(usage.total_keys, 8);
        assert_eq!(usage.current_key_index, Some(0));
    }

    #[test]
    fn config_keys_come_after_env_and_duplicates_keep_their_first_place() {
        let pool = KeyPool::from_sources(
            vars(&[
                ("TWELVEDATA_API_KEY_G1_1", "aaaa-key-0001"),
                ("TWELVEDATA_API_KEY_G1_2", "bbbb-key-0002"),
                (
                    "TWELVEDATA_API_KEYS",
                    "bbbb-key-0002,aaaa-key-0001, cccc-key-0003",
                ),
                ("TWELVEDATA_API_KEY", " aaaa-key-0001 "),
            ]),
            &[ApiKey::new("cccc-key-0003"), ApiKey::new("dddd-key-0004")],
        );
        assert_eq!(
            masked_keys(&pool),
            ["aaaa…01", "bbbb…02", "cccc…03", "dddd…04"]
        );
    }

    #[test]
    fn at_most_sixteen_keys() {
        let mut pairs = Vec::new();
        for group in 1..=2 {
            for n in 1..=8 {
                pairs.push((
                    format!("TWELVEDATA_API_KEY_G{group}_{n}"),
                    format!("group-{group}-key-{n}"),
                ));
            }
        }
        pairs.push(("TWELVEDATA_API_KEY".into(), "the-seventeenth".into()));
        let pool = KeyPool::from_env(pairs);
        assert_eq!(pool.len(), 16);
        assert!(!masked_keys(&pool).contains(&mask("the-seventeenth")));
    }

    #[test]
    fn empty_values_and_placeholders_are_ignored() {
        let pool = KeyPool::from_env(vars(&[
            ("TWELVEDATA_API_KEY_G1_1", "your_real_api_key_here"),
            ("TWELVEDATA_API_KEY_G1_2", ""),
            ("TWELVEDATA_API_KEY_G1_3", "   "),
            ("TWELVEDATA_API_KEY", "your_api_key_here"),
            ("TWELVEDATA_API_KEYS", ",,YOUR_API_KEY_HERE,"),
        ]));
        assert_eq!(pool.len(), 0);
        assert_eq!(pool.acquire(at(0)).unwrap_err(), Wait { until: None });
        let usage = pool.usage_at(at(0));
        assert_eq!((usage.total_keys, usage.current_key_index), (0, None));
    }

    #[test]
    fn rotates_round_robin_when_the_current_key_is_too_recent() {
        let pool = pool(3);
        assert_eq!(index(pool.acquire(at(0))), 0);
        assert_eq!(index(pool.acquire(at(1))), 1);
        assert_eq!(index(pool.acquire(at(2))), 2);
        // Key 2 was used 1 s ago; key 0 is 9 s old.
        assert_eq!(index(pool.acquire(at(9))), 0);
        let usage = pool.usage_at(at(9));
        assert_eq!(usage.total_calls, 4);
        assert_eq!(
            usage.keys.iter().map(|k| k.calls).collect::<Vec<_>>(),
            [2, 1, 1]
        );
        assert_eq!(usage.keys[0].last_used, Some(at(9)));
        assert_eq!(usage.current_key_index, Some(0));
    }

    #[test]
    fn keeps_the_current_key_once_it_is_spaced() {
        let pool = pool(2);
        assert_eq!(index(pool.acquire(at(0))), 0);
        assert_eq!(index(pool.acquire(at(8))), 0);
        assert_eq!(index(pool.acquire(at(16))), 0);
    }

    #[test]
    fn waits_for_the_earliest_spaced_key() {
        let pool = pool(2);
        pool.acquire(at(0)).unwrap();
        pool.acquire(at(3)).unwrap();
        assert_eq!(
            pool.acquire(at(5)).unwrap_err(),
            Wait { until: Some(at(8)) }
        );
        assert_eq!(
            pool.acquire(at(7)).unwrap_err(),
            Wait { until: Some(at(8)) }
        );
        assert_eq!(index(pool.acquire(at(8))), 0);
        // A wait counts no call.
        assert_eq!(pool.usage_at(at(8)).total_calls, 3);
    }

    #[test]
    fn spacing_is_configurable() {
        let pool = pool(1).with_min_spacing(Duration::from_secs(2));
        pool.acquire(at(0)).unwrap();
        assert_eq!(
            pool.acquire(at(1)).unwrap_err(),
            Wait { until: Some(at(2)) }
        );
        assert_eq!(index(pool.acquire(at(2))), 0);
    }

    #[test]
    fn a_rate_limited_key_rotates_away_and_comes_back_after_its_rest() {
        let pool = pool(2).with_min_spacing(Duration::ZERO);
        let lease = pool.acquire(at(0)).unwrap();
        pool.report(
            lease.index,
            Outcome::RateLimited { retry_after: None },
            at(0),
        );
        let usage = pool.usage_at(at(0));
        assert_eq!(usage.current_key_index, Some(1));
        assert_eq!(usage.keys[0].state, KeyState::RateLimited);
        assert_eq!(usage.keys[0].cooldown_until, Some(at(60)));
        assert_eq!(index(pool.acquire(at(1))), 1);
        assert_eq!(index(pool.acquire(at(59))), 1);
        // Key 1 is rate-limited too: nothing until key 0's rest ends.
        pool.report(
            1,
            Outcome::RateLimited {
                retry_after: Some(Duration::from_secs(90)),
            },
            at(59),
        );
        assert_eq!(
            pool.acquire(at(59)).unwrap_err(),
            Wait {
                until: Some(at(60))
            }
        );
        assert_eq!(index(pool.acquire(at(60))), 0);
        assert_eq!(pool.usage_at(at(60)).keys[0].state, KeyState::Ready);
        assert_eq!(pool.usage_at(at(60)).keys[1].state, KeyState::RateLimited);
    }

    #[test]
    fn an_out_of_credits_key_rests_until_the_reset() {
        let pool = pool(2).with_min_spacing(Duration::ZERO);
        let midnight = next_utc_midnight(at(0));
        assert_eq!(midnight.as_second() % 86_400, 0);
        assert!(midnight > at(0) && midnight <= at(86_400));
        pool.report(0, Outcome::OutOfCredits { reset: None }, at(0));
        let usage = pool.usage_at(at(0));
        assert_eq!(usage.keys[0].state, KeyState::OutOfCredits);
        assert_eq!(usage.keys[0].remaining_credits, Some(0));
        assert_eq!(usage.keys[0].cooldown_until, Some(midnight));
        assert_eq!(index(pool.acquire(at(1))), 1);
        pool.report(
            1,
            Outcome::OutOfCredits {
                reset: Some(at(100)),
            },
            at(1),
        );
        assert_eq!(
            pool.acquire(at(2)).unwrap_err(),
            Wait {
                until: Some(at(100))
            }
        );
        assert_eq!(index(pool.acquire(at(100))), 1);
    }

    #[test]
    fn an_invalid_key_never_comes_back() {
        let pool = pool(2).with_min_spacing(Duration::ZERO);
        pool.report(0, Outcome::Invalid, at(0));
        pool.report(
            0,
            Outcome::Ok {
                remaining_credits: Some(5),
            },
            at(1),
        );
        assert_eq!(index(pool.acquire(at(1_000_000))), 1);
        pool.report(1, Outcome::Invalid, at(0));
        assert_eq!(
            pool.acquire(at(2_000_000)).unwrap_err(),
            Wait { until: None }
        );
        assert_eq!(pool.usage_at(at(0)).keys[0].state, KeyState::Invalid);
    }

    #[test]
    fn a_disconnect_moves_to_the_next_key_without_resting() {
        let pool = pool(3).with_min_spacing(Duration::ZERO);
        assert_eq!(index(pool.acquire(at(0))), 0);
        pool.report(0, Outcome::Disconnected, at(1));
        assert_eq!(index(pool.acquire(at(1))), 1);
        assert_eq!(pool.usage_at(at(1)).keys[0].state, KeyState::Ready);
    }

    #[test]
    fn ok_records_the_credits_left() {
        let pool = pool(2);
        pool.report(
            1,
            Outcome::Ok {
                remaining_credits: Some(5),
            },
            at(0),
        );
        pool.report(
            1,
            Outcome::Ok {
                remaining_credits: None,
            },
            at(0),
        );
        assert_eq!(pool.usage_at(at(0)).keys[1].remaining_credits, Some(5));
    }

    #[test]
    fn manual_rotation() {
        let pool = pool(3);
        pool.report(
            1,
            Outcome::Ok {
                remaining_credits: Some(5),
            },
            at(0),
        );
        let rotation = pool.rotate(at(0)).unwrap();
        assert_eq!(
            rotation,
            Rotation {
                previous_key_index: 0,
                current_key_index: 1,
                remaining_credits: Some(5),
                next_reset: Some(next_utc_midnight(at(0))),
            }
        );
        pool.report(2, Outcome::RateLimited { retry_after: None }, at(0));
        assert_eq!(pool.rotate(at(0)).unwrap().current_key_index, 0);
        assert_eq!(pool.usage_at(at(0)).current_key_index, Some(0));
        // The next request uses the rotated-to key.
        assert_eq!(index(pool.acquire(at(0))), 0);
        pool.report(1, Outcome::Invalid, at(0));
        assert_eq!(pool.rotate(at(0)), Err(RotateError::NoUsableKey));
        assert_eq!(pool.usage_at(at(0)).current_key_index, Some(0));
    }

    #[test]
    fn rotation_needs_two_keys() {
        assert_eq!(
            pool(0).rotate(at(0)),
            Err(RotateError::TooFewKeys { configured: 0 })
        );
        assert_eq!(
            pool(1).rotate(at(0)),
            Err(RotateError::TooFewKeys { configured: 1 })
        );
        let usage = pool(1).usage_at(at(0));
        assert_eq!((usage.total_keys, usage.current_key_index), (1, Some(0)));
    }

    #[test]
    fn masking() {
        assert_eq!(mask("abcdefghijklmnop"), "abcd…op");
        assert_eq!(mask("abcdefghi"), "abcd…hi");
        assert_eq!(mask("abcdefgh"), "****");
        assert_eq!(mask(""), "****");
        assert_eq!(mask("ключ-ключ-ключ"), "ключ…юч");
    }

    #[test]
    fn a_key_never_prints_or_serializes_in_full() {
        let secret = "0123456789abcdef0123456789abcdef";
        let key = ApiKey::new(secret);
        let lease = Lease {
            index: 0,
            key: key.clone(),
        };
        let pool = KeyPool::from_env(vars(&[("TWELVEDATA_API_KEY", secret)]));
        let printed = [
            format!("{key:?}"),
            format!("{key:#?}"),
            format!("{lease:?}"),
            format!("{pool:?}"),
            serde_json::to_string(&key).unwrap(),
            serde_json::to_string(&pool.usage_at(at(0))).unwrap(),
            key.scrub(&format!("GET /quote?apikey={secret}")),
        ];
        for text in printed {
            assert!(!text.contains(secret), "{text}");
            assert!(!text.contains("456789"), "{text}");
        }
        assert_eq!(format!("{key:?}"), "Secret(0123…ef)");
        assert_eq!(key.expose(), secret);
    }

    #[test]
    fn usage_serializes_as_status_shows_it() {
        let pool = pool(2);
        pool.acquire(at(0)).unwrap();
        let value = serde_json::to_value(pool.usage_at(at(0))).unwrap();
        assert_eq!(value["total_keys"], 2);
        assert_eq!(value["current_key_index"], 0);
        assert_eq!(value["total_calls"], 1);
        assert_eq!(value["keys"][0]["state"], "ready");
        assert_eq!(value["keys"][0]["last_used"], "2023-11-14T22:13:20Z");
        assert_eq!(value["keys"][1]["last_used"], serde_json::Value::Null);
    }
}
