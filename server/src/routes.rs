//! The top of the shared request path: every request either shell receives ends here.

use crate::config::{Config, ConfigError};
use crate::http::{HttpRequest, HttpResponse};

/// Handles one request with the deployment's configuration.
pub async fn handle(config: &Result<Config, ConfigError>, req: HttpRequest) -> HttpResponse {
    let config = match config {
        Ok(c) => c,
        Err(e) => return xrpc_error(500, "InternalServerError", &e.to_string()),
    };
    let _ = config;
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/xrpc/_health") => HttpResponse::json(
            200,
            &serde_json::json!({ "version": env!("CARGO_PKG_VERSION") }),
        ),
        _ => not_found(),
    }
}

/// The answer for a path the PDS does not serve.
pub fn not_found() -> HttpResponse {
    xrpc_error(404, "NotFound", "Not Found")
}

/// The answer for a body over the shell's limit.
pub fn payload_too_large() -> HttpResponse {
    xrpc_error(413, "PayloadTooLarge", "request entity too large")
}

fn xrpc_error(status: u16, error: &str, message: &str) -> HttpResponse {
    HttpResponse::json(
        status,
        &serde_json::json!({ "error": error, "message": message }),
    )
}
