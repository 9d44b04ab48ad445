//! The PLC directory as this PDS uses it: the last operation of a DID (what the next one
//! follows) and submitting a signed operation. The directory checks the operation again; its
//! refusals come back with its own message.

use std::fmt;
use std::time::Duration;

use pds_api::runtime::xrpc::XrpcError;

use super::http_client::{ClientRequest, HttpClient, HttpError};
use crate::plc::{LoggedOperation, PlcError};

/// How long a directory exchange may take.
const TIMEOUT: Duration = Duration::from_secs(15);
/// The largest answer read: an operation is at most 7,500 bytes as CBOR, and the directory's
/// error messages are short.
const MAX_ANSWER_BYTES: u64 = 64 * 1024;

/// Why a directory exchange failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectoryError {
    /// The directory refused the request: an unknown DID, an invalid operation (its status and
    /// message).
    Refused { status: u16, message: String },
    /// An answer that is not what the directory serves.
    Malformed(String),
    /// No usable answer.
    Unreachable(String),
}

impl fmt::Display for DirectoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DirectoryError::Refused { status, message } => {
                write!(
                    f,
                    "the PLC directory refused the operation ({status}): {message}"
                )
            }
            DirectoryError::Malformed(why) => write!(f, "unexpected PLC directory answer: {why}"),
            DirectoryError::Unreachable(why) => write!(f, "PLC directory unreachable: {why}"),
        }
    }
}

impl std::error::Error for DirectoryError {}

impl From<HttpError> for DirectoryError {
    fn from(e: HttpError) -> Self {
        DirectoryError::Unreachable(e.to_string())
    }
}

impl From<DirectoryError> for XrpcError {
    fn from(e: DirectoryError) -> Self {
        match e {
            // The directory's own words, as the reference passes them on.
            DirectoryError::Refused { message, .. } => XrpcError::invalid_request(message),
            DirectoryError::Malformed(_) | DirectoryError::Unreachable(_) => {
                XrpcError::upstream_failure(e.to_string())
            }
        }
    }
}

/// A PLC directory at a base URL (no trailing slash).
pub struct PlcDirectory<'a> {
    http: &'a dyn HttpClient,
    base: &'a str,
}

impl<'a> PlcDirectory<'a> {
    /// The directory at `base`, reached through `http`.
    pub fn new(http: &'a dyn HttpClient, base: &'a str) -> PlcDirectory<'a> {
        PlcDirectory {
            http,
            base: base.trim_end_matches('/'),
        }
    }

    /// The newest operation of `did`'s log, with its CID.
    pub async fn last_operation(&self, did: &str) -> Result<LoggedOperation, DirectoryError> {
        let request = ClientRequest::get(format!("{}/{did}/log/last", self.base))
            .header("accept", "application/json")
            .timeout(TIMEOUT)
            .max_response_bytes(MAX_ANSWER_BYTES);
        let body = exchange(self.http, request).await?;
        let json: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| DirectoryError::Malformed(format!("not JSON: {e}")))?;
        LoggedOperation::from_json(&json)
            .map_err(|e: PlcError| DirectoryError::Malformed(e.to_string()))
    }

    /// Submits a signed operation for `did` (the directory validates it again).
    pub async fn submit(
        &self,
        did: &str,
        operation: &serde_json::Value,
    ) -> Result<(), DirectoryError> {
        let body =
            serde_json::to_vec(operation).map_err(|e| DirectoryError::Malformed(e.to_string()))?;
        let request = ClientRequest::post_json(format!("{}/{did}", self.base), body)
            .timeout(TIMEOUT)
            .max_response_bytes(MAX_ANSWER_BYTES);
        exchange(self.http, request).await.map(drop)
    }
}

/// The body of a 2xx answer; a 4xx is the directory refusing, anything else a failure.
async fn exchange(
    http: &dyn HttpClient,
    request: ClientRequest,
) -> Result<Vec<u8>, DirectoryError> {
    let response = http.send(request).await?;
    let status = response.status;
    let body = response.bytes().await?;
    match status {
        200..=299 => Ok(body),
        400..=499 => Err(DirectoryError::Refused {
            status,
            message: message_of(&body),
        }),
        _ => Err(DirectoryError::Unreachable(format!(
            "HTTP {status}: {}",
            message_of(&body)
        ))),
    }
}

/// The `message` of a JSON error answer, else the start of the body as text.
fn message_of(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned())
}
