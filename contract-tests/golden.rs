//! The documents the server serves are the committed ones.

use serde_json::Value;

use crate::{
    common::{ASYNCAPI_YAML, OPENAPI_YAML, first_difference},
    support::{TestServer, test_config},
};

async fn body(server: &TestServer, path: &str) -> String {
    let response = server.get(path).await;
    assert_eq!(response.status().as_u16(), 200, "GET {path}");
    let bytes = response.bytes().await.expect("body");
    String::from_utf8(bytes.to_vec()).unwrap_or_else(|e| panic!("GET {path} is UTF-8: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_openapi_yaml_is_the_committed_file() {
    let server = TestServer::start(test_config()).await;
    let served = body(&server, "/api/v1/openapi.yaml").await;
    assert!(
        served.as_bytes() == OPENAPI_YAML.as_bytes(),
        "GET /api/v1/openapi.yaml differs from the committed openapi.yaml \
         (regenerate it from the server if the change is intended): {}",
        first_difference(&served, OPENAPI_YAML)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_asyncapi_documents_are_the_committed_file() {
    let server = TestServer::start(test_config()).await;
    let served = body(&server, "/api/v1/asyncapi.yaml").await;
    assert!(
        served.as_bytes() == ASYNCAPI_YAML.as_bytes(),
        "GET /api/v1/asyncapi.yaml differs from the committed asyncapi.yaml: {}",
        first_difference(&served, ASYNCAPI_YAML)
    );

    let json = body(&server, "/api/v1/asyncapi.json").await;
    let served: Value = serde_json::from_str(&json).expect("asyncapi.json parses");
    let committed: Value =
        yaml_serde::from_str(ASYNCAPI_YAML).expect("asyncapi.yaml parses as YAML");
    assert!(
        served == committed,
        "GET /api/v1/asyncapi.json is not asyncapi.yaml: {}",
        first_difference(
            &serde_json::to_string_pretty(&served).unwrap_or_default(),
            &serde_json::to_string_pretty(&committed).unwrap_or_default()
        )
    );
}

/// The RT orchestrator's (8085) and the enhanced service's (8080) served
/// OpenAPI documents equal their committed files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_usdcop_openapi_documents_are_the_committed_files() {
    let server = TestServer::start(test_config()).await;
    for (addr, file) in [
        (server.rt_orchestrator_addr, "openapi.rt-orchestrator.yaml"),
        (server.enhanced_addr, "openapi.enhanced.yaml"),
    ] {
        let addr = addr.expect("listener enabled");
        let served = reqwest::get(format!("http://{addr}/openapi.yaml"))
            .await
            .expect("GET")
            .text()
            .await
            .expect("body");
        let committed =
            std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file))
                .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(
            served == committed,
            "GET http://{addr}/openapi.yaml differs from the committed {file} \
             (run `cargo run -- generate`): {}",
            first_difference(&served, &committed)
        );
    }
}
