//! The REST API of the v1 listener (poem-openapi), its documentation pages,
//! and the routes beside it (`/metrics`, the WebSocket endpoint).
//!
//! The OpenAPI document is generated from this code; the committed
//! `openapi.yaml` is its golden copy and a test fails on any difference.
//! Every error is JSON `{code, message}`, including poem's own 404 and 405.

mod api;
mod asyncapi_page;
mod datafeed;

use std::sync::Arc;

use poem::{
    Endpoint, EndpointExt, IntoResponse, Response, Route,
    endpoint::make_sync,
    get, handler,
    http::{HeaderValue, StatusCode, header},
    web::{Data, Html},
};
use poem_openapi::{ApiResponse, Object, OpenApiService, payload::Json};

pub use self::{api::Api, datafeed::Datafeed};
use crate::{gateway::Gateway, runtime::handshake as upgrade};

/// Base path of the v1 REST API.
pub const API_BASE: &str = "/api/v1";

/// The documented error body.
#[derive(Object, Debug, Clone)]
pub struct ErrorBody {
    /// A stable machine-readable code, e.g. `unknown_symbol`.
    pub code: String,
    /// What went wrong and what to do next.
    pub message: String,
}

/// The errors a REST operation may answer with.
#[derive(ApiResponse, Debug)]
#[oai(bad_request_handler = "bad_request")]
pub enum ApiError {
    /// A parameter is missing or invalid.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// No such symbol.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
}

impl ApiError {
    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::BadRequest(Json(ErrorBody {
            code: code.to_owned(),
            message: message.into(),
        }))
    }

    pub fn not_found(code: &str, message: impl Into<String>) -> Self {
        Self::NotFound(Json(ErrorBody {
            code: code.to_owned(),
            message: message.into(),
        }))
    }
}

fn bad_request(error: poem::Error) -> ApiError {
    ApiError::bad_request("bad_request", error.to_string())
}

/// The errors of operations that look nothing up (so never answer 404).
#[derive(ApiResponse, Debug)]
#[oai(bad_request_handler = "bad_request_only")]
pub enum BadRequest {
    /// A parameter is missing or invalid.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
}

fn bad_request_only(error: poem::Error) -> BadRequest {
    BadRequest::BadRequest(Json(ErrorBody {
        code: "bad_request".to_owned(),
        message: error.to_string(),
    }))
}

/// The OpenAPI service of the v1 REST API.
pub fn openapi_service(gateway: Arc<Gateway>) -> OpenApiService<(Api, Datafeed), ()> {
    OpenApiService::new(
        (Api::new(gateway.clone()), Datafeed::new(gateway)),
        "tickgate REST API",
        "1.0.0",
    )
    .description(
        "REST side of the tickgate market-data gateway: health, versions, WebSocket \
         configuration and statistics, the specification documents, and a TradingView \
         UDF datafeed. The WebSocket API (`/api/v1/ws/v1`) is described in asyncapi.yaml. \
         Every error is JSON `{code, message}`.",
    )
    .server(API_BASE)
}

/// The OpenAPI document as served at `/api/v1/openapi.yaml`.
pub fn openapi_yaml(gateway: Arc<Gateway>) -> String {
    openapi_service(gateway).spec_yaml()
}

/// Every route of the main listener: REST, the documents and `/metrics`,
/// plus the dialects' routes on it (`dialects`: v1, quotes).
pub fn routes(
    gateway: Arc<Gateway>,
    dialects: Vec<(&'static str, poem::endpoint::BoxEndpoint<'static>)>,
) -> impl Endpoint {
    let service = openapi_service(gateway.clone());
    let redoc = offline(&service.redoc_html());
    let mut route = Route::new();
    for (path, endpoint) in dialects {
        route = route.at(path, get(endpoint));
    }
    route
        .nest(format!("{API_BASE}/docs"), service.swagger_ui())
        .at(
            format!("{API_BASE}/redoc"),
            get(make_sync(move |_| Html(redoc.clone()))),
        )
        .at(format!("{API_BASE}/asyncapi"), get(asyncapi_page::page))
        .at(
            format!("{API_BASE}/asyncapi/index.js"),
            get(asyncapi_page::bundle),
        )
        .at(
            format!("{API_BASE}/asyncapi/default.min.css"),
            get(asyncapi_page::styles),
        )
        .at(format!("{API_BASE}/openapi.json"), service.spec_endpoint())
        .at(
            format!("{API_BASE}/openapi.yaml"),
            service.spec_endpoint_yaml(),
        )
        .at("/metrics", get(metrics))
        .at("/favicon.ico", get(favicon))
        .nest(API_BASE, service)
        .data(gateway)
        .around(|endpoint, request| async move {
            let response = endpoint.get_response(request).await;
            Ok(json_errors(response).await)
        })
}

/// `html` without links to web fonts, so the page needs no network (ReDoc
/// falls back to local fonts).
fn offline(html: &str) -> String {
    html.lines()
        .filter(|line| !line.contains("fonts.googleapis.com"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `GET /favicon.ico`: no icon, and no 404 in the documentation pages'
/// browser consoles.
#[handler]
fn favicon() -> Response {
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .header(header::CACHE_CONTROL, "public, max-age=86400")
        .finish()
}

/// `GET /metrics`: Prometheus text exposition.
#[handler]
fn metrics(Data(_gateway): Data<&Arc<Gateway>>) -> impl IntoResponse {
    crate::metrics::prometheus()
        .render()
        .with_content_type("text/plain; version=0.0.4")
}

/// Rewrites poem's plain-text errors (400 for unparsable parameters, 404,
/// 405) into the documented JSON error body, and names the allowed method
/// on 405.
async fn json_errors(response: Response) -> Response {
    if !upgrade::is_plain_error(&response) {
        return response;
    }
    let status = response.status();
    if status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED {
        return upgrade::plain_errors_as_json(response).await;
    }
    if status == StatusCode::NOT_FOUND {
        return upgrade::json_error(
            status,
            "not_found",
            "no such endpoint; see /api/v1/docs for the REST API and /api/v1/asyncapi.yaml for the WebSocket API",
        );
    }
    upgrade::with_header(
        upgrade::json_error(
            status,
            "method_not_allowed",
            "this endpoint answers GET only",
        ),
        header::ALLOW,
        HeaderValue::from_static("GET"),
    )
}
