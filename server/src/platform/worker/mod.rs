//! The Cloudflare Workers shell: a stateless fetch entry that forwards account work to the one
//! SQLite-backed Durable Object, which runs the shared core.

pub mod r2;
pub mod sql;

use worker::{
    durable_object, event, Context, DurableObject, Env, Method, Request, Response, Result, State,
};

use crate::http::{Body, HttpRequest, HttpResponse};

/// The Durable Object instance name: one account per deployment, so one object.
const ACCOUNT_OBJECT: &str = "account";

#[event(fetch)]
async fn fetch(mut req: Request, env: Env, _ctx: Context) -> Result<Response> {
    if !req.path().starts_with("/xrpc/") {
        let request = from_worker_request(&mut req).await?;
        if let Some(res) = crate::routes::stateless(&read_config(&env), &request) {
            return to_worker_response(res);
        }
    }
    let stub = env.durable_object("ACCOUNT")?.get_by_name(ACCOUNT_OBJECT)?;
    stub.fetch_with_request(req).await
}

/// Reads the configuration from the Worker's variables and secrets.
fn read_config(
    env: &Env,
) -> std::result::Result<crate::config::Config, crate::config::ConfigError> {
    crate::config::Config::from_lookup(|name| {
        env.secret(name)
            .or_else(|_| env.var(name))
            .ok()
            .map(|v| v.to_string())
    })
}

/// The account's Durable Object: owns SQLite and runs XRPC methods.
#[durable_object]
pub struct AccountDurableObject {
    #[allow(dead_code)]
    state: State,
    env: Env,
    /// The object's SQLite behind the storage layer's SQL port.
    #[allow(dead_code)]
    sql: sql::DurableSql,
    /// Whether the schema could be brought up to date when the object started.
    schema: std::result::Result<crate::storage::MigrationOutcome, crate::storage::StorageError>,
}

impl DurableObject for AccountDurableObject {
    fn new(state: State, env: Env) -> Self {
        let sql = sql::DurableSql::new(&state);
        let schema = crate::storage::migrate(&sql);
        Self {
            state,
            env,
            sql,
            schema,
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        if let Err(e) = &self.schema {
            // Nothing can run on a database this build cannot use.
            let body =
                serde_json::json!({ "error": "InternalServerError", "message": e.to_string() });
            return to_worker_response(HttpResponse::json(500, &body));
        }
        let request = from_worker_request(&mut req).await?;
        let config = crate::config::Config::from_lookup(|name| {
            self.env.var(name).ok().map(|v| v.to_string())
        });
        let response = crate::routes::handle(&config, request).await;
        to_worker_response(response)
    }
}

async fn from_worker_request(req: &mut Request) -> Result<HttpRequest> {
    let url = req.url()?;
    let method = match req.method() {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Head => "HEAD",
        Method::Options => "OPTIONS",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        _ => "OTHER",
    };
    let headers = req
        .headers()
        .entries()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    let body = if matches!(method, "GET" | "HEAD") {
        Vec::new()
    } else {
        req.bytes().await?
    };
    Ok(HttpRequest {
        method: method.to_owned(),
        path: url.path().to_owned(),
        query: url.query().unwrap_or("").to_owned(),
        headers,
        body,
    })
}

fn to_worker_response(res: HttpResponse) -> Result<Response> {
    let headers = worker::Headers::new();
    for (name, value) in &res.headers {
        headers.append(name, value)?;
    }
    let response = match res.body {
        Body::Bytes(bytes) => Response::from_bytes(bytes)?,
        // Streamed through without buffering (CAR exports, blobs).
        Body::Stream(stream) => {
            use futures_util::TryStreamExt;
            Response::from_stream(stream.map_err(|e| worker::Error::RustError(e.to_string())))?
        }
    };
    Ok(response.with_status(res.status).with_headers(headers))
}
