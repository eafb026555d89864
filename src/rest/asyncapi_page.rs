//! `/api/v1/asyncapi`: the AsyncAPI document rendered for people by the
//! vendored standalone bundle of `@asyncapi/react-component`
//! (`assets/asyncapi-react/`). Everything is embedded in the binary, so the
//! page works offline.

use std::sync::LazyLock;

use poem::{IntoResponse, Response, handler, http::header};

use crate::spec;

const BUNDLE: &[u8] = include_bytes!("../../assets/asyncapi-react/index.js");
const STYLES: &[u8] = include_bytes!("../../assets/asyncapi-react/default.min.css");

/// The page, with the document inlined (so rendering needs no further request).
static PAGE: LazyLock<String> = LazyLock::new(|| {
    // A JSON string is a valid JavaScript string literal; "</" is escaped so
    // the document cannot close the script element.
    let document = serde_json::to_string(spec::ASYNCAPI_YAML)
        .unwrap_or_else(|_| "\"\"".to_owned())
        .replace("</", "<\\/");
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tickgate WebSocket API (AsyncAPI)</title>
<link rel="stylesheet" href="/api/v1/asyncapi/default.min.css">
</head>
<body>
<div id="asyncapi"></div>
<script src="/api/v1/asyncapi/index.js"></script>
<script>
AsyncApiStandalone.render({{
  schema: {document},
  config: {{ show: {{ sidebar: true }} }}
}}, document.getElementById("asyncapi"));
</script>
</body>
</html>
"#
    )
});

/// `GET /api/v1/asyncapi`
#[handler]
pub fn page() -> Response {
    PAGE.as_str()
        .with_content_type("text/html; charset=utf-8")
        .into_response()
}

/// `GET /api/v1/asyncapi/index.js`
#[handler]
pub fn bundle() -> Response {
    asset(BUNDLE, "text/javascript; charset=utf-8")
}

/// `GET /api/v1/asyncapi/default.min.css`
#[handler]
pub fn styles() -> Response {
    asset(STYLES, "text/css; charset=utf-8")
}

fn asset(bytes: &'static [u8], content_type: &'static str) -> Response {
    Response::builder()
        .content_type(content_type)
        .header(header::CACHE_CONTROL, "public, max-age=86400")
        .body(bytes)
}
