//! The dashboard page (one self-contained HTML file: no external assets,
//! so it works offline) and the API's OpenAPI description.

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};

const PAGE: &str = include_str!("dashboard.html");
const OPENAPI: &str = include_str!("../../../docs/admin-api.yaml");

pub async fn page() -> Html<&'static str> {
    Html(PAGE)
}

pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI).into_response()
}
