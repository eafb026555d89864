//! Facts read from the committed asyncapi.yaml, and JSON helpers.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::LazyLock,
};

use serde_json::{Map, Number, Value};

/// The committed asyncapi.yaml, byte for byte.
pub const ASYNCAPI_YAML: &str = include_str!("../asyncapi.yaml");

/// The committed openapi.yaml, byte for byte.
pub const OPENAPI_YAML: &str = include_str!("../openapi.yaml");

/// asyncapi.yaml parsed with yaml_serde (independently of build.rs).
pub static ASYNCAPI: LazyLock<Value> = LazyLock::new(|| {
    yaml_serde::from_str::<Value>(ASYNCAPI_YAML).expect("asyncapi.yaml parses as YAML")
});

/// `components.messages` of asyncapi.yaml.
pub fn messages() -> &'static Map<String, Value> {
    ASYNCAPI["components"]["messages"]
        .as_object()
        .expect("components.messages is a map")
}

/// Follows `$ref`s from `reference` until it reaches a message of
/// `components.messages`; returns that message's key (e.g. `Welcome`).
pub fn message_key(reference: &str) -> String {
    let mut reference = reference.to_owned();
    for _ in 0..8 {
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("only local $refs are supported: {reference}"));
        let target = ASYNCAPI
            .pointer(pointer)
            .unwrap_or_else(|| panic!("$ref {reference} resolves"));
        match target.get("$ref").and_then(Value::as_str) {
            Some(next) => reference = next.to_owned(),
            None => {
                return reference
                    .strip_prefix("#/components/messages/")
                    .unwrap_or_else(|| panic!("{reference} does not end in components.messages"))
                    .to_owned();
            }
        }
    }
    panic!("$ref chain from {reference} is too long");
}

/// One operation of asyncapi.yaml.
pub struct Operation {
    pub action: String,
    pub title: String,
    /// The channel's key in `channels` (`v1`, `candles`, ...).
    pub channel: String,
    /// Keys of `components.messages`.
    pub messages: Vec<String>,
}

pub fn operations() -> Vec<Operation> {
    ASYNCAPI["operations"]
        .as_object()
        .expect("operations is a map")
        .iter()
        .map(|(id, operation)| Operation {
            action: operation["action"]
                .as_str()
                .unwrap_or_else(|| panic!("operation {id} has an action"))
                .to_owned(),
            title: operation["title"].as_str().unwrap_or_default().to_owned(),
            channel: operation["channel"]["$ref"]
                .as_str()
                .and_then(|r| r.strip_prefix("#/channels/"))
                .unwrap_or_else(|| panic!("operation {id} names its channel"))
                .to_owned(),
            messages: operation["messages"]
                .as_array()
                .unwrap_or_else(|| panic!("operation {id} lists messages"))
                .iter()
                .map(|m| message_key(m["$ref"].as_str().expect("message $ref")))
                .collect(),
        })
        .collect()
}

/// Keys of the messages of every operation on `channel` with `action`
/// (`send` for the server's messages, `receive` for the client's).
pub fn messages_of(channel: &str, action: &str) -> BTreeSet<String> {
    operations()
        .into_iter()
        .filter(|op| op.channel == channel && op.action == action)
        .flat_map(|op| op.messages)
        .collect()
}

/// The channels of asyncapi.yaml's operations.
pub fn channels() -> BTreeSet<String> {
    operations().into_iter().map(|op| op.channel).collect()
}

/// The wire `type` of a message (its `name`).
pub fn wire_type(key: &str) -> String {
    messages()[key]["name"]
        .as_str()
        .unwrap_or_else(|| panic!("message {key} has a name"))
        .to_owned()
}

/// The enum of a schema of `components.schemas`.
pub fn schema_enum(schema: &str) -> BTreeSet<String> {
    ASYNCAPI["components"]["schemas"][schema]["enum"]
        .as_array()
        .unwrap_or_else(|| panic!("schema {schema} has an enum"))
        .iter()
        .map(|v| v.as_str().expect("string enum").to_owned())
        .collect()
}

/// Data messages by wire type -> the channel they are sent on: the send
/// operations whose title names a channel of the `Channel` enum.
pub fn data_channels() -> BTreeMap<String, String> {
    let channels = schema_enum("Channel");
    let mut by_type = BTreeMap::new();
    for op in operations() {
        if op.channel != "v1" || op.action != "send" || !channels.contains(&op.title) {
            continue;
        }
        for key in op.messages {
            let previous = by_type.insert(wire_type(&key), op.title.clone());
            assert!(
                previous.is_none(),
                "message {key} is sent on two channels ({previous:?} and {})",
                op.title
            );
        }
    }
    by_type
}

/// `value` with every number written as a float, so that JSON values that
/// differ only in how a number is spelled (`100` vs `100.0`) compare equal.
pub fn normalize_numbers(value: &Value) -> Value {
    match value {
        Value::Number(n) => match n.as_f64().and_then(Number::from_f64) {
            Some(f) if n.as_i64().is_none_or(|i| i.unsigned_abs() < (1 << 53)) => Value::Number(f),
            _ => value.clone(),
        },
        Value::Array(items) => Value::Array(items.iter().map(normalize_numbers).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), normalize_numbers(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A JSON Schema validator (2020-12, formats asserted).
pub fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(schema)
        .unwrap_or_else(|e| panic!("schema compiles: {e}\n{schema}"))
}

/// The validation errors of `instance`, one line each.
pub fn errors_of(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| {
            // The message quotes the instance, which may be a whole document.
            let mut text = e.to_string();
            if text.chars().count() > 300 {
                text = format!("{}...", text.chars().take(300).collect::<String>());
            }
            format!(
                "{text} at {:?} (schema {})",
                e.instance_path().as_str(),
                e.schema_path().as_str()
            )
        })
        .collect()
}

/// Where two texts first differ, for readable golden-file failures.
pub fn first_difference(actual: &str, expected: &str) -> String {
    for (n, (a, e)) in actual.lines().zip(expected.lines()).enumerate() {
        if a != e {
            return format!("line {}:\n  served:    {a:?}\n  committed: {e:?}", n + 1);
        }
    }
    format!(
        "one is a prefix of the other: served {} bytes / {} lines, committed {} bytes / {} lines",
        actual.len(),
        actual.lines().count(),
        expected.len(),
        expected.lines().count()
    )
}
