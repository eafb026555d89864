//! The REST API against the OpenAPI document the server itself serves.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::{
    common::{errors_of, validator},
    support::{TestServer, test_config},
};

/// A valid value for each query parameter the walk may need to fill.
fn valid_value(name: &str) -> Option<String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    Some(match name {
        "symbol" => "AAPL".into(),
        "resolution" => "5".into(),
        "from" => "0".into(),
        "to" => (now + 3600).to_string(),
        "query" => "A".into(),
        "symbols" => "AAPL,NOPE".into(),
        _ => return None,
    })
}

/// `application/json; charset=utf-8` and `application/json;charset=UTF-8`
/// are the same media type.
fn normalize_media(media: &str) -> String {
    media
        .split(';')
        .map(|part| part.trim().to_ascii_lowercase())
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(";")
}

fn is_json_media(media: &str) -> bool {
    let essence = normalize_media(media);
    let essence = essence.split(';').next().unwrap_or_default();
    essence == "application/json" || essence.ends_with("+json")
}

/// A validator of `schema` (an OpenAPI schema that may `$ref` into
/// `#/components/schemas`), with the document's components embedded.
fn openapi_validator(openapi: &Value, schema: &Value) -> jsonschema::Validator {
    validator(&json!({"allOf": [schema], "components": openapi["components"]}))
}

/// The schema openapi.yaml documents for `status` of `GET path`, with the
/// documented media types.
fn documented(openapi: &Value, path: &str, status: u16) -> Option<Vec<(String, Value)>> {
    let response = openapi["paths"][path]["get"]["responses"].get(status.to_string())?;
    Some(
        response["content"]
            .as_object()
            .map(|content| {
                content
                    .iter()
                    .map(|(media, body)| (media.clone(), body["schema"].clone()))
                    .collect()
            })
            .unwrap_or_default(),
    )
}

fn content_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

async fn openapi_json(server: &TestServer) -> Value {
    let response = server.get("/api/v1/openapi.json").await;
    assert_eq!(response.status().as_u16(), 200, "GET /api/v1/openapi.json");
    assert!(
        is_json_media(&content_type(&response)),
        "openapi.json is JSON: {}",
        content_type(&response)
    );
    response.json().await.expect("openapi.json parses")
}

/// The REST base path: `servers[0].url`.
fn base(openapi: &Value) -> String {
    openapi["servers"][0]["url"]
        .as_str()
        .expect("servers[0].url")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_get_answers_its_documented_schema() {
    let server = TestServer::start(test_config()).await;
    let openapi = openapi_json(&server).await;
    let base = base(&openapi);
    let http = reqwest::Client::new();

    let mut called = Vec::new();
    let mut violations = Vec::new();
    for (path, item) in openapi["paths"].as_object().expect("paths") {
        let Some(operation) = item.get("get") else {
            continue;
        };
        let mut query = Vec::new();
        for parameter in operation["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let name = parameter["name"].as_str().expect("parameter name");
            assert_eq!(
                parameter["in"], "query",
                "GET {path}: only query parameters are expected"
            );
            match valid_value(name) {
                Some(value) => query.push((name.to_owned(), value)),
                None => assert!(
                    parameter["required"] != true,
                    "GET {path}: no valid value known for required parameter {name}; extend valid_value"
                ),
            }
        }
        let response = http
            .get(server.url(&format!("{base}{path}")))
            .query(&query)
            .send()
            .await
            .expect("HTTP request");
        let status = response.status().as_u16();
        let media = content_type(&response);
        let body = response.text().await.expect("body");
        called.push(path.clone());
        let what = format!("GET {path} ({status}, {media})");

        if status != 200 {
            violations.push(format!(
                "{what}: expected 200 with valid parameters; body {body}"
            ));
        }
        let Some(content) = documented(&openapi, path, status) else {
            violations.push(format!("{what}: status {status} is not documented"));
            continue;
        };
        let Some((_, schema)) = content
            .iter()
            .find(|(documented, _)| normalize_media(documented) == normalize_media(&media))
        else {
            violations.push(format!(
                "{what}: Content-Type is not a documented media type {:?}",
                content.iter().map(|(m, _)| m).collect::<Vec<_>>()
            ));
            continue;
        };
        if !is_json_media(&media) {
            // YAML and plain-text bodies: status and media type suffice.
            assert!(!body.is_empty(), "{what}: empty body");
            continue;
        }
        let instance: Value = match serde_json::from_str(&body) {
            Ok(value) => value,
            Err(error) => {
                violations.push(format!("{what}: body is not JSON ({error})"));
                continue;
            }
        };
        let errors = errors_of(&openapi_validator(&openapi, schema), &instance);
        if !errors.is_empty() {
            let shown: String = body.chars().take(300).collect();
            violations.push(format!(
                "{what}: body violates the documented schema {schema}: {errors:?}\n    body: {shown}"
            ));
        }
    }

    let documented_gets = openapi["paths"]
        .as_object()
        .expect("paths")
        .values()
        .filter(|item| item.get("get").is_some())
        .count();
    assert!(documented_gets > 0, "openapi.json documents GET operations");
    assert_eq!(
        called.len(),
        documented_gets,
        "every documented GET was called"
    );
    assert!(
        violations.is_empty(),
        "{} REST contract violation(s):\n  {}",
        violations.len(),
        violations.join("\n  ")
    );
}

/// Calls `url`, expects `status` and a JSON body valid against `schema`.
async fn expect_json_error(
    openapi: &Value,
    response: reqwest::Response,
    what: &str,
    status: u16,
    schema: &Value,
) -> Value {
    let got = response.status().as_u16();
    let media = content_type(&response);
    let body = response.text().await.expect("body");
    assert_eq!(got, status, "{what}: status (body {body})");
    assert!(
        is_json_media(&media),
        "{what}: JSON error body, got Content-Type {media:?}: {body}"
    );
    let instance: Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("{what}: body is JSON ({e}): {body}"));
    let errors = errors_of(&openapi_validator(openapi, schema), &instance);
    assert!(
        errors.is_empty(),
        "{what}: body violates {schema}: {errors:?}\n  {body}"
    );
    for field in ["code", "message"] {
        assert!(
            instance[field].as_str().is_some_and(|s| !s.is_empty()),
            "{what}: {field} is a non-empty string: {instance}"
        );
    }
    instance
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_errors_are_json_code_and_message() {
    let server = TestServer::start(test_config()).await;
    let openapi = openapi_json(&server).await;
    let base = base(&openapi);
    let to = valid_value("to").expect("to");

    // (path as documented, query, status)
    let cases: [(&str, String, u16, &str); 9] = [
        ("/datafeed/search", "limit=0".into(), 400, "limit below 1"),
        (
            "/datafeed/symbols",
            "symbol=NOPE".into(),
            404,
            "unknown symbol",
        ),
        (
            "/datafeed/history",
            format!("symbol=NOPE&resolution=5&from=0&to={to}"),
            404,
            "unknown symbol",
        ),
        (
            "/datafeed/history",
            format!("symbol=AAPL&resolution=7&from=0&to={to}"),
            400,
            "bad resolution",
        ),
        (
            "/datafeed/history",
            format!("symbol=AAPL&resolution=bogus&from=0&to={to}"),
            400,
            "bad resolution",
        ),
        (
            "/datafeed/history",
            "symbol=AAPL&resolution=5&from=0".into(),
            400,
            "missing to",
        ),
        ("/datafeed/symbols", String::new(), 400, "missing symbol"),
        (
            "/datafeed/history",
            format!("symbol=AAPL&resolution=5&from={to}&to=0"),
            400,
            "from > to",
        ),
        (
            "/datafeed/history",
            format!("symbol=AAPL&resolution=5&from=zero&to={to}"),
            400,
            "unparsable from",
        ),
    ];
    for (path, query, status, why) in cases {
        let what = format!("GET {path}?{query} ({why})");
        let content = documented(&openapi, path, status)
            .unwrap_or_else(|| panic!("{what}: openapi.json documents status {status}"));
        let (_, schema) = content
            .iter()
            .find(|(media, _)| is_json_media(media))
            .unwrap_or_else(|| panic!("{what}: a JSON body is documented for {status}"));
        let response = server.get(&format!("{base}{path}?{query}")).await;
        expect_json_error(&openapi, response, &what, status, schema).await;
    }

    // Undocumented routes still answer the documented error body.
    let error_body = json!({"$ref": "#/components/schemas/ErrorBody"});
    let response = server.get(&format!("{base}/no/such/endpoint")).await;
    expect_json_error(&openapi, response, "GET an unknown path", 404, &error_body).await;
    let response = server.get("/no-such-root").await;
    expect_json_error(
        &openapi,
        response,
        "GET an unknown root path",
        404,
        &error_body,
    )
    .await;

    let response = reqwest::Client::new()
        .post(server.url(&format!("{base}/health")))
        .send()
        .await
        .expect("POST");
    let allow = response
        .headers()
        .get(reqwest::header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    expect_json_error(&openapi, response, "POST /health", 405, &error_body).await;
    let allow = allow.expect("405 carries an Allow header");
    assert!(
        allow
            .split(',')
            .any(|m| m.trim().eq_ignore_ascii_case("GET")),
        "Allow names GET: {allow:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_and_docs_pages_are_served() {
    let server = TestServer::start(test_config()).await;
    // The documents' own routes are not in openapi.yaml's paths; poem
    // serves openapi.yaml as application/x-yaml, the pre-RFC 9512 spelling.
    let cases: [(&str, &[&str]); 7] = [
        ("/api/v1/openapi.json", &["application/json"]),
        (
            "/api/v1/openapi.yaml",
            &["application/yaml", "application/x-yaml"],
        ),
        ("/api/v1/asyncapi.yaml", &["application/yaml"]),
        ("/api/v1/asyncapi.json", &["application/json"]),
        ("/api/v1/docs", &["text/html"]),
        ("/api/v1/redoc", &["text/html"]),
        ("/api/v1/datafeed/time", &["text/plain"]),
    ];
    for (path, essences) in cases {
        let response = server.get(path).await;
        let status = response.status().as_u16();
        let media = content_type(&response);
        let body = response.text().await.expect("body");
        assert_eq!(status, 200, "GET {path}: {body}");
        let essence = normalize_media(&media)
            .split(';')
            .next()
            .unwrap_or_default()
            .to_owned();
        assert!(
            essences.contains(&essence.as_str()),
            "GET {path}: Content-Type {media:?}, expected one of {essences:?}"
        );
        assert!(!body.is_empty(), "GET {path}: empty body");
    }
    // The time endpoint is unix seconds as documented.
    let response = server.get("/api/v1/datafeed/time").await;
    let text = response.text().await.expect("body");
    let seconds: u64 = text
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("time is an integer ({e}): {text:?}"));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert!(
        seconds.abs_diff(now) < 3600,
        "time is unix seconds: {seconds} vs {now}"
    );
}
