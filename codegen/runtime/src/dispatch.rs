//! The steps the generated dispatcher runs for every method: typed params from the query
//! string, input decoding and validation, output encoding. Statuses and messages follow the
//! reference's packages/xrpc-server.

use serde::Serialize;

use super::decode::FromValue;
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

/// Decodes, checks and types the query parameters.
pub fn params<P: FromValue>(meta: &MethodMeta, query: &str) -> Result<P, XrpcError> {
    let map = schema::decode_params(meta.params, query)
        .map_err(|e| XrpcError::invalid_request(e.message))?;
    P::from_value(&Value::Map(map)).map_err(|e| XrpcError::invalid_request(format!("Params: {e}")))
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
    I::from_value(&value).map_err(|e| XrpcError::invalid_request(format!("Input: {e}")))
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
    let body = serde_json::to_vec(out)
        .map_err(|e| XrpcError::internal_message(format!("encoding output: {e}")))?;
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
