//! Every example of every message in asyncapi.yaml is valid against its
//! schema and round-trips through the generated Rust types.

use serde_json::{Value, json};
use tickgate::{protocol::v1, spec, spec::messages::V1ServerFrame};

use crate::common::{errors_of, messages, messages_of, normalize_numbers, validator, wire_type};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_example_validates_and_round_trips() {
    let schemas = spec::message_schemas();
    let client = messages_of("receive");
    let server = messages_of("send");
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

        // The validator is not vacuous: an unknown property is rejected.
        let mut bogus = json!({"type": kind});
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
            if payload["type"] != kind.as_str() {
                problems.push(format!(
                    "{what} has type {} but the message is {kind}",
                    payload["type"]
                ));
            }

            let reencoded = if client.contains(key) {
                match v1::decode(&payload.to_string()) {
                    Ok(frame) => serde_json::to_value(&frame).expect("client frame serializes"),
                    Err(error) => {
                        problems.push(format!("{what} does not decode: {error:?}"));
                        continue;
                    }
                }
            } else {
                match serde_json::from_value::<V1ServerFrame>(payload.clone()) {
                    Ok(frame) => serde_json::to_value(&frame).expect("server frame serializes"),
                    Err(error) => {
                        problems.push(format!(
                            "{what} does not deserialize into V1ServerFrame: {error}"
                        ));
                        continue;
                    }
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
