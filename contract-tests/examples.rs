//! Every example of every message in asyncapi.yaml is valid against its
//! schema and round-trips through the generated Rust types.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use tickgate::{
    protocol::{candles, usdcop, v1},
    spec,
    spec::messages::{
        CandlesClientFrame, CandlesServerFrame, EnhancedClientFrame, EnhancedServerFrame, Quote,
        UsdcopClientFrame, UsdcopServerFrame, V1ServerFrame,
    },
};

use crate::common::{
    channels, errors_of, messages, messages_of, normalize_numbers, validator, wire_type,
};

/// Decodes an example the way the gateway does and encodes it again.
fn round_trip(channel: &str, client: bool, payload: &Value) -> Result<Value, String> {
    let text = payload.to_string();
    let to_value = |v: Result<Value, serde_json::Error>| v.map_err(|e| e.to_string());
    match (channel, client) {
        ("v1", true) => v1::decode(&text)
            .map_err(|e| format!("does not decode: {e:?}"))
            .and_then(|f| to_value(serde_json::to_value(&f))),
        ("v1", false) => serde_json::from_value::<V1ServerFrame>(payload.clone())
            .map_err(|e| format!("does not deserialize into V1ServerFrame: {e}"))
            .and_then(|f| to_value(serde_json::to_value(&f))),
        ("candles", true) => {
            candles::decode(&text).map_err(|e| format!("does not decode: {e}"))?;
            serde_json::from_value::<CandlesClientFrame>(payload.clone())
                .map_err(|e| format!("does not deserialize into CandlesClientFrame: {e}"))
                .and_then(|f| to_value(serde_json::to_value(&f)))
        }
        ("candles", false) => serde_json::from_value::<CandlesServerFrame>(payload.clone())
            .map_err(|e| format!("does not deserialize into CandlesServerFrame: {e}"))
            .and_then(|f| to_value(serde_json::to_value(&f))),
        ("quotes", false) => serde_json::from_value::<Quote>(payload.clone())
            .map_err(|e| format!("does not deserialize into Quote: {e}"))
            .and_then(|f| to_value(serde_json::to_value(&f))),
        ("marketStream", true) => {
            usdcop::decode(&text).map_err(|e| format!("does not decode: {e}"))?;
            serde_json::from_value::<UsdcopClientFrame>(payload.clone())
                .map_err(|e| format!("does not deserialize into UsdcopClientFrame: {e}"))
                .and_then(|f| to_value(serde_json::to_value(&f)))
        }
        ("marketStream", false) => serde_json::from_value::<UsdcopServerFrame>(payload.clone())
            .map_err(|e| format!("does not deserialize into UsdcopServerFrame: {e}"))
            .and_then(|f| to_value(serde_json::to_value(&f))),
        ("enhanced", true) => serde_json::from_value::<EnhancedClientFrame>(payload.clone())
            .map_err(|e| format!("does not deserialize into EnhancedClientFrame: {e}"))
            .and_then(|f| to_value(serde_json::to_value(&f))),
        ("enhanced", false) => serde_json::from_value::<EnhancedServerFrame>(payload.clone())
            .map_err(|e| format!("does not deserialize into EnhancedServerFrame: {e}"))
            .and_then(|f| to_value(serde_json::to_value(&f))),
        // Redis messages: the broker reads them (schema and all); there is
        // nothing to re-encode, so they compare as given.
        (redis, true) if redis.starts_with("redis") => {
            let address = crate::common::ASYNCAPI["channels"][redis]["address"]
                .as_str()
                .unwrap_or_default();
            tickgate::broker::decode(address, text.as_bytes(), &tickgate::broker::Names::new(""))
                .map(|_| payload.clone())
                .map_err(|e| format!("is refused by the broker: {e:?}"))
        }
        (other, _) => Err(format!("no codec for channel {other}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_example_validates_and_round_trips() {
    let schemas = spec::message_schemas();
    let mut client = BTreeSet::new();
    let mut server = BTreeSet::new();
    // Message key -> its channel.
    let mut channel_of = std::collections::BTreeMap::new();
    for channel in channels() {
        for key in messages_of(&channel, "receive") {
            channel_of.insert(key.clone(), channel.clone());
            client.insert(key);
        }
        for key in messages_of(&channel, "send") {
            channel_of.insert(key.clone(), channel.clone());
            server.insert(key);
        }
    }
    assert!(
        !client.is_empty() && !server.is_empty(),
        "operations list messages"
    );
    assert!(
        client.is_disjoint(&server),
        "a message is both sent and received: {:?}",
        client.intersection(&server).collect::<Vec<_>>()
    );

    let mut checked = 0;
    let mut problems = Vec::new();
    for (key, message) in messages() {
        assert!(
            client.contains(key) || server.contains(key),
            "message {key} is in no operation"
        );
        let schema = schemas
            .get(key)
            .unwrap_or_else(|| panic!("spec::message_schemas() has no schema for {key}"));
        let validator = validator(schema);
        let kind = wire_type(key);

        // The validator is not vacuous: an unknown property is rejected
        // (with every other property of an example present).
        let first = message["examples"][0]["payload"].clone();
        let mut bogus = if first.is_object() {
            first
        } else {
            json!({"type": kind})
        };
        bogus["not_in_the_schema"] = json!(1);
        assert!(
            !validator.is_valid(&bogus),
            "the schema of {key} accepts an unknown property; is it empty?"
        );

        let examples = message["examples"].as_array().cloned().unwrap_or_default();
        assert!(!examples.is_empty(), "message {key} has no example");
        for example in examples {
            let name = example["name"].as_str().unwrap_or("<unnamed>").to_owned();
            let what = format!("{key} example {name}");
            let payload = example
                .get("payload")
                .unwrap_or_else(|| panic!("{what} has a payload"));
            checked += 1;

            let errors = errors_of(&validator, payload);
            if !errors.is_empty() {
                problems.push(format!(
                    "{what} violates its schema: {errors:?}\n  {payload}"
                ));
            }
            // Messages of a `type`-less stream (quotes) carry no type.
            let typed = schema["properties"].get("type").is_some();
            if typed && payload["type"] != kind.as_str() {
                problems.push(format!(
                    "{what} has type {} but the message is {kind}",
                    payload["type"]
                ));
            }

            let reencoded = match round_trip(&channel_of[key], client.contains(key), payload) {
                Ok(value) => value,
                Err(error) => {
                    problems.push(format!("{what} {error}"));
                    continue;
                }
            };
            // JSON does not tell 100 from 100.0; the generated f64 fields
            // write the latter, so compare numbers by value.
            if normalize_numbers(&reencoded) != normalize_numbers(payload) {
                problems.push(format!(
                    "{what} does not round-trip:\n  example:    {payload}\n  re-encoded: {reencoded}"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert!(
        checked >= messages().len(),
        "every message contributed an example"
    );
}

/// The number normalisation used above does not hide real differences.
#[test]
fn number_normalisation_only_forgets_the_spelling() {
    let a: Value = serde_json::from_str(r#"{"q": 100, "p": [1.5, 2]}"#).unwrap();
    let b: Value = serde_json::from_str(r#"{"q": 100.0, "p": [1.5, 2.0]}"#).unwrap();
    let c: Value = serde_json::from_str(r#"{"q": 100.5, "p": [1.5, 2.0]}"#).unwrap();
    assert_eq!(normalize_numbers(&a), normalize_numbers(&b));
    assert_ne!(normalize_numbers(&a), normalize_numbers(&c));
}
