//! The steps the generated dispatcher runs for every method: typed params from the query
//! string, input decoding and validation, output encoding. Statuses and messages follow the
//! reference's packages/xrpc-server.

use serde::Serialize;

use super::decode::{DecodeError, FromValue};
use super::schema;
use super::serde_value::value_from_json;
use super::value::Value;
use super::xrpc::{BinaryInput, BinaryOutput, Body, MethodMeta, Request, Response, XrpcError};

/// One method's run (decode, handle, encode), boxed so that the dispatcher builds only the
/// run of the method asked for: the runs of methods a service does not serve are never built,
/// so their code is left out of the binary.
pub type MethodRun<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response, XrpcError>> + 'a>>;

/// Largest JSON request body accepted, in bytes.
pub const JSON_LIMIT: usize = 1024 * 1024;

// The generic steps below are one line each over a shared, non-generic part: they are built
// once per method, and whatever they hold is built that many times.

/// Decodes, checks and types the query parameters.
pub fn params<P: FromValue>(meta: &MethodMeta, query: &str) -> Result<P, XrpcError> {
    P::from_value(&params_value(meta, query)?).map_err(|e| untyped("Params", e))
}

fn params_value(meta: &MethodMeta, query: &str) -> Result<Value, XrpcError> {
    let map = schema::decode_params(meta.params, query)
        .map_err(|e| XrpcError::invalid_request(e.message))?;
    Ok(Value::Map(map))
}

/// The 400 for a value that passed its schema but not its type.
fn untyped(part: &str, e: DecodeError) -> XrpcError {
    XrpcError::invalid_request(format!("{part}: {e}"))
}

/// The MIME type of a Content-Type header: lowercased, parameters dropped.
pub fn normalize_mime(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn encoding_accepts(declared: &str, mime: &str) -> bool {
    declared
        .split(',')
        .map(str::trim)
        .any(|d| d == "*/*" || schema::mime_matches(d, mime))
}

fn request_encoding(meta: &MethodMeta, req: &Request) -> Result<String, XrpcError> {
    let mime = match req.header("content-type").map(normalize_mime) {
        Some(m) if !m.is_empty() => m,
        _ => {
            return Err(XrpcError::invalid_request(
                "Request encoding (Content-Type) required but not provided",
            ))
        }
    };
    if let Some(enc) = meta.input {
        if !encoding_accepts(enc.mime, &mime) {
            return Err(XrpcError::invalid_request(format!(
                "Wrong request encoding (Content-Type): {mime}"
            )));
        }
    }
    Ok(mime)
}

/// For methods without input: a non-empty body is refused.
pub fn no_input(req: &Request) -> Result<(), XrpcError> {
    match &req.body {
        Body::Bytes(b) if !b.is_empty() => Err(XrpcError::invalid_request(
            "A request body was provided when none was expected",
        )),
        _ => Ok(()),
    }
}

/// Reads a JSON input: Content-Type checked, body parsed into the data model, validated
/// against the input schema, then typed.
pub async fn json_input<I: FromValue>(meta: &MethodMeta, req: Request) -> Result<I, XrpcError> {
    I::from_value(&json_input_value(meta, req).await?).map_err(|e| untyped("Input", e))
}

async fn json_input_value(meta: &MethodMeta, req: Request) -> Result<Value, XrpcError> {
    if matches!(&req.body, Body::Bytes(b) if b.is_empty()) {
        return Err(XrpcError::invalid_request(
            "A request body is expected but none was provided",
        ));
    }
    request_encoding(meta, &req)?;
    let bytes = req.body.collect(JSON_LIMIT).await?;
    let value = value_from_json(&bytes)
        .map_err(|e| XrpcError::invalid_request(format!("Invalid JSON body: {e}")))?;
    if let Some(s) = meta.input_schema {
        schema::validate(s, &value, "Input").map_err(|e| XrpcError::invalid_request(e.message))?;
    }
    Ok(value)
}

/// Hands over a raw input (blob bytes, a CAR) after checking its Content-Type.
pub fn binary_input(meta: &MethodMeta, req: Request) -> Result<BinaryInput, XrpcError> {
    request_encoding(meta, &req)?;
    let content_type = req.header("content-type").map(str::to_string);
    Ok(BinaryInput {
        content_type,
        body: req.body,
    })
}

/// A 200 JSON response.
pub fn json_output<O: Serialize>(out: &O) -> Result<Response, XrpcError> {
    json_response(serde_json::to_vec(out))
}

fn json_response(body: serde_json::Result<Vec<u8>>) -> Result<Response, XrpcError> {
    let body = body.map_err(|e| XrpcError::internal_message(format!("encoding output: {e}")))?;
    Ok(Response {
        status: 200,
        headers: vec![(
            "content-type".into(),
            "application/json; charset=utf-8".into(),
        )],
        body: Body::Bytes(body),
    })
}

/// A response with a raw body, its headers and the status the handler chose.
pub fn binary_output(out: BinaryOutput) -> Result<Response, XrpcError> {
    let mut headers = vec![("content-type".to_string(), out.content_type)];
    headers.extend(out.headers);
    Ok(Response {
        status: out.status,
        headers,
        body: out.body,
    })
}

/// A 200 response without a body (methods with no output).
pub fn empty_output() -> Result<Response, XrpcError> {
    Ok(Response {
        status: 200,
        headers: Vec::new(),
        body: Body::empty(),
    })
}
