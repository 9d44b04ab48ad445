//! The authorization server's endpoints, in the account: `/oauth/par`, `/oauth/authorize`
//! (GET shows, POST decides), `/oauth/token` and `/oauth/revoke`.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

use super::client::{self, Client, Credentials};
use super::dpop::{self, Proof};
use super::page::{self, Consent};
use super::store::{token_hash, ClientAuth, OAuthStore, RequestParams, Session, StoredRequest};
use super::{
    json_response, parameters, random_token, see_other, OAuthError, ACCESS_TTL_MS,
    CHALLENGE_MEMORY_MS, CODE_TTL_MS, CONFIDENTIAL_REFRESH_IDLE_MS, CONFIDENTIAL_SESSION_MS,
    MAX_FAILED_ATTEMPTS, PUBLIC_SESSION_MS, REQUEST_TTL_MS, REQUEST_URI_PREFIX,
};
use crate::account::Account;
use crate::auth::jwt;
use crate::config::Config;
use crate::http::{HttpRequest, HttpResponse};
use crate::maintenance::now_ms;

/// Prefixes of what this server issues: a token's kind is known from its first characters.
pub const ACCESS_PREFIX: &str = "oat-";
const REFRESH_PREFIX: &str = "ort-";
const CODE_PREFIX: &str = "cod-";

/// Serves an `/oauth/*` path (the discovery documents are the edge's).
pub async fn serve(config: &Config, account: &Account, req: &HttpRequest) -> HttpResponse {
    if req.method == "POST" {
        account.precheck_dpop(req).await;
    }
    let outcome = match (req.path.as_str(), req.method.as_str()) {
        ("/oauth/par", "POST") => par(config, account, req).await,
        ("/oauth/token", "POST") => token(config, account, req).await,
        ("/oauth/revoke", "POST") => revoke(config, account, req).await,
        ("/oauth/par" | "/oauth/token" | "/oauth/revoke", _) => {
            return OAuthError {
                status: 405,
                error: "invalid_request",
                description: "Method not allowed".into(),
            }
            .response()
        }
        ("/oauth/authorize", "GET" | "HEAD") => return authorize_page(config, account, req),
        ("/oauth/authorize", "POST") => return authorize_decision(config, account, req).await,
        (super::passkey_pages::REGISTER_PATH, "GET" | "HEAD") => {
            return super::passkey_pages::register_page(config, account, req)
        }
        (super::passkey_pages::REGISTER_PATH, "POST") => {
            return super::passkey_pages::register(config, account, req)
        }
        _ => return crate::routes::not_found(),
    };
    outcome.unwrap_or_else(|e| e.response())
}

/// Checks the request's DPoP proof for an authorization server endpoint and spends its `jti`.
fn check_proof(config: &Config, account: &Account, req: &HttpRequest) -> Result<Proof, OAuthError> {
    let nonce_key = dpop::nonce_key(&config.jwt_secret);
    let now = now_ms(account);
    let htu = format!("{}{}", config.public_url(), req.path);
    let proof = dpop::check(
        &dpop::proof_headers(req),
        &dpop::Expected {
            htm: &req.method,
            htu: &htu,
            access_token: None,
            now_ms: u64::try_from(now).unwrap_or(0),
            nonce_key: &nonce_key,
            verified: &|p| account.proof_verified(p),
            continuation: false,
        },
    )?;
    OAuthStore::new(account.sql.as_ref()).spend_proof(&proof.jti, now)?;
    Ok(proof)
}

fn credentials(params: &BTreeMap<String, String>) -> Credentials {
    Credentials {
        client_id: params.get("client_id").cloned(),
        assertion_type: params.get("client_assertion_type").cloned(),
        assertion: params.get("client_assertion").cloned(),
    }
}

/// The client named by the request, authenticated as its metadata requires.
async fn authenticated_client(
    config: &Config,
    account: &Account,
    params: &BTreeMap<String, String>,
) -> Result<(Client, ClientAuth), OAuthError> {
    let client_id = params
        .get("client_id")
        .ok_or_else(|| OAuthError::invalid_client("Client credentials missing"))?;
    let client = client::resolve(account, client_id).await?;
    let store = OAuthStore::new(account.sql.as_ref());
    let kid = client::authenticate(
        &client,
        &credentials(params),
        &config.public_url(),
        &store,
        u64::try_from(now_ms(account)).unwrap_or(0),
    )?;
    let auth = ClientAuth {
        method: client.auth_method().to_owned(),
        kid,
    };
    Ok((client, auth))
}

/// `POST /oauth/par`: a pushed authorization request.
async fn par(
    config: &Config,
    account: &Account,
    req: &HttpRequest,
) -> Result<HttpResponse, OAuthError> {
    let params = parameters(req, false)?;
    let proof = check_proof(config, account, req)?;
    let (client, client_auth) = authenticated_client(config, account, &params).await?;
    let get = |k: &str| params.get(k).map(String::as_str);
    for unsupported in [
        "request",
        "request_uri",
        "claims",
        "id_token_hint",
        "nonce",
        "authorization_details",
        "client_secret",
    ] {
        if params.contains_key(unsupported) {
            return Err(OAuthError::invalid_request(format!(
                "Parameter \"{unsupported}\" is not supported"
            )));
        }
    }
    if get("response_type") != Some("code") {
        return Err(OAuthError {
            status: 400,
            error: "unsupported_response_type",
            description: "response_type must be \"code\"".into(),
        });
    }
    let challenge = get("code_challenge")
        .ok_or_else(|| OAuthError::invalid_request("code_challenge is required"))?;
    if challenge.len() != 43
        || !challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(OAuthError::invalid_request("Invalid code_challenge"));
    }
    if get("code_challenge_method") != Some("S256") {
        return Err(OAuthError::invalid_request(
            "code_challenge_method must be S256",
        ));
    }
    let state = get("state")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| OAuthError::invalid_request("state is required"))?;
    let redirect_uri = get("redirect_uri")
        .ok_or_else(|| OAuthError::invalid_request("redirect_uri is required"))?;
    if !client.allows_redirect(redirect_uri) {
        return Err(OAuthError::invalid_request(
            "redirect_uri is not registered for this client",
        ));
    }
    let scope = get("scope").ok_or_else(|| OAuthError::invalid_scope("scope is required"))?;
    check_scope(&client, scope)?;
    // Every permission set must resolve now (the spec: a set that cannot be resolved fails
    // the request); the page shows them by their titles.
    super::permission_set::expand_scope(config, account, scope).await?;
    let response_mode = get("response_mode").unwrap_or("query");
    if !matches!(response_mode, "query" | "fragment") {
        return Err(OAuthError::invalid_request(
            "response_mode must be query or fragment",
        ));
    }
    let prompt = get("prompt");
    if !prompt.is_none_or(|p| matches!(p, "none" | "login" | "consent" | "select_account")) {
        return Err(OAuthError::invalid_request("Unsupported prompt value"));
    }
    let login_hint = match get("login_hint") {
        None => None,
        Some(h) => {
            let h = h.to_ascii_lowercase();
            let valid = pds_api::runtime::syntax::Did::new(h.clone()).is_ok()
                || pds_api::runtime::syntax::Handle::new(h.clone()).is_ok();
            if !valid {
                return Err(OAuthError::invalid_request("Invalid login_hint"));
            }
            Some(h)
        }
    };
    if get("dpop_jkt").is_some_and(|jkt| jkt != proof.jkt) {
        return Err(OAuthError {
            status: 400,
            error: "invalid_dpop_proof",
            description: "dpop_jkt does not match the DPoP proof's key".into(),
        });
    }
    let id = random_token()?;
    let now = now_ms(account);
    let stored = StoredRequest {
        id: id.clone(),
        client_id: client.metadata.client_id.clone(),
        client_auth,
        params: RequestParams {
            redirect_uri: redirect_uri.to_owned(),
            scope: normalize_scope(scope),
            state: state.to_owned(),
            code_challenge: challenge.to_owned(),
            response_mode: response_mode.to_owned(),
            login_hint,
            prompt: prompt.map(str::to_owned),
        },
        dpop_jkt: proof.jkt,
        expires_ms: now + REQUEST_TTL_MS,
        failed_attempts: 0,
        code_expires_ms: None,
        auth_method: None,
    };
    OAuthStore::new(account.sql.as_ref()).insert_request(&stored, now)?;
    Ok(json_response(
        201,
        &crate::data::json::JsonWriter::new()
            .str("request_uri", &format!("{REQUEST_URI_PREFIX}{id}"))
            .i64("expires_in", REQUEST_TTL_MS / 1000)
            .finish(),
    ))
}

/// The requested scope: valid syntax, `atproto` in it, no OpenID, and every token declared by
/// the client.
fn check_scope(client: &Client, scope: &str) -> Result<(), OAuthError> {
    if !super::scope::is_scope_syntax(scope) {
        return Err(OAuthError::invalid_scope("Invalid scope"));
    }
    let tokens: Vec<&str> = scope.split(' ').collect();
    if !tokens.contains(&super::scope::ATPROTO) {
        return Err(OAuthError::invalid_scope(
            "The \"atproto\" scope is required",
        ));
    }
    if tokens.contains(&"openid") {
        return Err(OAuthError::invalid_scope("OpenID Connect is not supported"));
    }
    if client.metadata.scope.as_deref().unwrap_or("").is_empty() {
        return Err(OAuthError::invalid_scope("Client has no declared scopes"));
    }
    if let Some(t) = tokens.iter().find(|t| !client.declares_scope(t)) {
        return Err(OAuthError::invalid_scope(format!(
            "Scope \"{t}\" is not declared in the client metadata"
        )));
    }
    Ok(())
}

/// The scope as stored: duplicates collapsed, in the order given.
fn normalize_scope(scope: &str) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for t in scope.split(' ') {
        if !seen.contains(&t) {
            seen.push(t);
        }
    }
    seen.join(" ")
}

/// The request id of a `request_uri`.
fn request_id(request_uri: &str) -> Option<&str> {
    request_uri
        .strip_prefix(REQUEST_URI_PREFIX)
        .filter(|id| !id.is_empty() && id.len() <= 64)
}

/// The client's redirect with `params` (and `iss`), in the request's response mode.
fn redirect_to_client(
    config: &Config,
    request: &StoredRequest,
    params: &[(&str, &str)],
) -> HttpResponse {
    let mut query = format!("iss={}", super::encode_component(&config.public_url()));
    query.push_str(&format!(
        "&state={}",
        super::encode_component(&request.params.state)
    ));
    for (k, v) in params {
        query.push_str(&format!("&{k}={}", super::encode_component(v)));
    }
    let uri = &request.params.redirect_uri;
    let separator = if request.params.response_mode == "fragment" {
        '#'
    } else if uri.contains('?') {
        '&'
    } else {
        '?'
    };
    see_other(&format!("{uri}{separator}{query}"))
}

fn denied(
    config: &Config,
    request: &StoredRequest,
    error: &str,
    description: &str,
) -> HttpResponse {
    redirect_to_client(
        config,
        request,
        &[("error", error), ("error_description", description)],
    )
}

/// Where the approval redirects to, for the page's `form-action`: the redirect URI's origin,
/// or its private-use scheme.
fn redirect_target(redirect_uri: &str) -> String {
    match redirect_uri.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            format!("{scheme}://{}", &rest[..end])
        }
        None => format!(
            "{}:",
            redirect_uri.split(':').next().unwrap_or(redirect_uri)
        ),
    }
}

/// The name of the CSRF cookie: `__Host-` bound when served over https.
fn csrf_cookie_name(config: &Config) -> &'static str {
    if config.public_url().starts_with("https://") {
        "__Host-oauth_csrf"
    } else {
        "oauth_csrf"
    }
}

/// The form's CSRF token: the cookie's value bound to the request by the server's key.
fn csrf_token(config: &Config, cookie: &str, request_id: &str) -> String {
    let key = jwt::hmac_sha256_tag(&config.jwt_secret, b"oauth-csrf");
    URL_SAFE_NO_PAD.encode(jwt::hmac_sha256_tag(
        &key,
        format!("{cookie}|{request_id}").as_bytes(),
    ))
}

fn cookie_value<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .filter(|(k, _)| k == "cookie")
        .flat_map(|(_, v)| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The request a page or form names, or the error page to show instead.
fn load_request(
    account: &Account,
    request_uri: Option<&str>,
) -> Result<StoredRequest, HttpResponse> {
    let Some(uri) = request_uri else {
        return Err(page::error_page(
            400,
            "Invalid request",
            "This server accepts only pushed authorization requests: the link has no request_uri.",
        ));
    };
    let unknown = || {
        page::error_page(
            400,
            "Unknown or expired request",
            "This sign-in link is not valid (any more).",
        )
    };
    let id = request_id(uri).ok_or_else(unknown)?;
    match OAuthStore::new(account.sql.as_ref()).request(id) {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err(unknown()),
        Err(e) => Err({
            crate::log::error(&format!("oauth: {e}"));
            page::error_page(500, "Server error", "Something went wrong. Try again.")
        }),
    }
}

/// `GET /oauth/authorize`: the sign-in and consent page. Reads and changes nothing but the
/// browser's CSRF cookie, so a link preview or a reload spends nothing.
fn authorize_page(config: &Config, account: &Account, req: &HttpRequest) -> HttpResponse {
    let params = match parameters(req, true) {
        Ok(p) => p,
        Err(e) => return page::error_page(400, "Invalid request", &e.description),
    };
    let request = match load_request(account, params.get("request_uri").map(String::as_str)) {
        Ok(r) => r,
        Err(page) => return page,
    };
    if let Some(refusal) = refusal(config, account, &request, params.get("client_id")) {
        return refusal;
    }
    if request.params.prompt.as_deref() == Some("none") {
        return denied(config, &request, "login_required", "Sign-in is required");
    }
    let cookie = match random_token() {
        Ok(c) => c,
        Err(e) => return e.response(),
    };
    let mut res = consent(config, account, &request, &cookie, 200, None);
    let secure = if csrf_cookie_name(config).starts_with("__Host-") {
        "; Secure"
    } else {
        ""
    };
    res.headers.push((
        "set-cookie".into(),
        format!(
            "{}={cookie}; Path=/; HttpOnly; SameSite=Strict; Max-Age=600{secure}",
            csrf_cookie_name(config)
        ),
    ));
    res
}

/// What refuses a request whatever the owner does: another client's id, expiry, an earlier
/// approval, a login hint naming someone else.
fn refusal(
    config: &Config,
    account: &Account,
    request: &StoredRequest,
    client_id: Option<&String>,
) -> Option<HttpResponse> {
    if client_id.is_some_and(|c| *c != request.client_id) {
        return Some(denied(config, request, "access_denied", "Client mismatch"));
    }
    if request.expires_ms < now_ms(account) {
        return Some(denied(
            config,
            request,
            "access_denied",
            "This request has expired",
        ));
    }
    if request.code_expires_ms.is_some() {
        return Some(denied(
            config,
            request,
            "access_denied",
            "This request was already authorized",
        ));
    }
    if request
        .params
        .login_hint
        .as_deref()
        .is_some_and(|h| !config.names_account(h))
    {
        return Some(denied(
            config,
            request,
            "access_denied",
            "This account is not hosted here",
        ));
    }
    None
}

fn consent(
    config: &Config,
    account: &Account,
    request: &StoredRequest,
    cookie: &str,
    status: u16,
    error: Option<&str>,
) -> HttpResponse {
    let csrf = csrf_token(config, cookie, &request.id);
    let loopback = request.client_id.starts_with("http://");
    let cached = if loopback {
        None
    } else {
        OAuthStore::new(account.sql.as_ref())
            .cached_client(&request.client_id, 0)
            .ok()
            .flatten()
            .and_then(|m| client::ClientMetadata::parse(m.as_bytes()).ok())
    };
    let request_uri = format!("{REQUEST_URI_PREFIX}{}", request.id);
    let target = redirect_target(&request.params.redirect_uri);
    // Permission sets by their title and detail, from the copies PAR resolved.
    let set_titles = |nsid: &str| -> Option<String> {
        use crate::storage::SqlExt;
        let row = account
            .sql
            .query_opt(
                "SELECT lexicon FROM lexicon_cache WHERE nsid = ?",
                &[nsid.into()],
            )
            .ok()??;
        let doc: serde_json::Value = serde_json::from_slice(row.text(0).ok()?.as_bytes()).ok()?;
        let set = super::permission_set::PermissionSet::from_lexicon(nsid, &doc).ok()?;
        let title = set.title?;
        Some(match set.detail {
            Some(detail) => format!("{title}: {detail}"),
            None => title,
        })
    };
    page::consent_page(
        status,
        &Consent {
            client_id: &request.client_id,
            client_name: cached.as_ref().and_then(|m| m.client_name.as_deref()),
            logo_uri: cached.as_ref().and_then(|m| m.logo_uri.as_deref()),
            client_uri: cached.as_ref().and_then(|m| m.client_uri.as_deref()),
            tos_uri: cached.as_ref().and_then(|m| m.tos_uri.as_deref()),
            policy_uri: cached.as_ref().and_then(|m| m.policy_uri.as_deref()),
            loopback,
            trusted: config.oauth_trusted_clients.contains(&request.client_id),
            handle: config.handle.as_str(),
            did: config.did.as_str(),
            scope: &request.params.scope,
            set_titles: &set_titles,
            request_uri: &request_uri,
            csrf_token: &csrf,
            error,
            redirect_target: &target,
            passkeys: super::passkey_pages::sign_in_options(config, account, &request.id),
        },
    )
}

/// `POST /oauth/authorize`: the owner's decision. Checks the form came from this server's page
/// (CSRF token bound to the cookie and the request, same-origin headers), then denies, or
/// approves with the account password (never an app password) and redirects with a code.
async fn authorize_decision(config: &Config, account: &Account, req: &HttpRequest) -> HttpResponse {
    let form = match parameters(req, false) {
        Ok(f) => f,
        Err(e) => return page::error_page(400, "Invalid request", &e.description),
    };
    let forbidden = || {
        page::error_page(
            403,
            "Request refused",
            "This form did not come from this server's sign-in page. Open the sign-in link again.",
        )
    };
    let origin_ok = req
        .header("origin")
        .is_none_or(|o| o == config.public_url());
    let site_ok = req
        .header("sec-fetch-site")
        .is_none_or(|s| s == "same-origin");
    if !origin_ok || !site_ok {
        return forbidden();
    }
    let request = match load_request(account, form.get("request_uri").map(String::as_str)) {
        Ok(r) => r,
        Err(page) => return page,
    };
    let Some(cookie) = cookie_value(req, csrf_cookie_name(config)) else {
        return forbidden();
    };
    let expected = csrf_token(config, cookie, &request.id);
    let sent = form.get("csrf_token").map(String::as_str).unwrap_or("");
    if !jwt::constant_time_eq(expected.as_bytes(), sent.as_bytes()) {
        return forbidden();
    }
    let store = OAuthStore::new(account.sql.as_ref());
    let spend = |res: HttpResponse| {
        if let Err(e) = store.delete_request(&request.id) {
            crate::log::error(&format!("oauth: {e}"));
        }
        res
    };
    if let Some(refusal) = refusal(config, account, &request, form.get("client_id")) {
        // An approved request keeps its code for the token exchange.
        if request.code_expires_ms.is_some() {
            return refusal;
        }
        return spend(refusal);
    }
    match form.get("action").map(String::as_str) {
        Some("deny") => {
            return spend(denied(
                config,
                &request,
                "access_denied",
                "The user denied the request",
            ))
        }
        Some("allow") => {}
        _ => return page::error_page(400, "Invalid request", "Choose Allow or Deny."),
    }
    // The login throttle createSession has, per client address.
    let key = format!("account@{}", crate::rate_limit::address_key(req.client_ip));
    let now = now_ms(account);
    match crate::rate_limit::consume(
        account.sql.as_ref(),
        &crate::rate_limit::LOGIN,
        &key,
        u64::try_from(now).unwrap_or(0),
        1,
    ) {
        Ok(Ok(_)) => {}
        Ok(Err(_)) => {
            return page::error_page(
                429,
                "Too many attempts",
                "Too many sign-in attempts from this address. Wait a few minutes and try again.",
            )
        }
        Err(e) => {
            crate::log::error(&format!("oauth: {e}"));
            return page::error_page(500, "Server error", "Something went wrong. Try again.");
        }
    }
    let password = form.get("password").map(String::as_str).unwrap_or("");
    let passkey = form.get("webauthn").filter(|w| !w.is_empty());
    let (right, method) = match passkey {
        Some(assertion) => {
            let outcome =
                super::passkey_pages::sign_in(config, account, &request.id, assertion).await;
            if let Err(why) = &outcome {
                crate::log::error(&format!("passkey sign-in refused: {why}"));
            }
            (outcome.is_ok(), "passkey")
        }
        None => (
            password.len() <= 256 && crate::password::verify(password, &config.password_hash),
            "password",
        ),
    };
    if !right {
        let failures = store
            .fail_request(&request.id)
            .unwrap_or(MAX_FAILED_ATTEMPTS);
        if failures >= MAX_FAILED_ATTEMPTS {
            return spend(denied(
                config,
                &request,
                "access_denied",
                "Too many wrong passwords",
            ));
        }
        let message = if passkey.is_some() {
            "The passkey was not accepted. Try again, or use the password."
        } else if crate::auth::app_password::is_app_password_format(password) {
            "App passwords are not allowed here: use your account password."
        } else {
            "Wrong password. Try again."
        };
        return consent(config, account, &request, cookie, 401, Some(message));
    }
    let code = match random_token() {
        Ok(t) => format!("{CODE_PREFIX}{t}"),
        Err(e) => return e.response(),
    };
    match store.approve_request(&request.id, &token_hash(&code), now + CODE_TTL_MS, method) {
        Ok(true) => redirect_to_client(config, &request, &[("code", &code)]),
        Ok(false) => denied(
            config,
            &request,
            "access_denied",
            "This request was already authorized",
        ),
        Err(e) => OAuthError::server_error(e).response(),
    }
}

/// The token response for a session's fresh tokens.
fn token_response(
    config: &Config,
    session: &Session,
    access: &str,
    refresh: Option<&str>,
) -> HttpResponse {
    let now = session.refreshed_ms;
    let body = crate::data::json::JsonWriter::new()
        .str("access_token", access)
        .str("token_type", "DPoP")
        .i64("expires_in", (session.access_expires_ms - now) / 1000)
        .str("scope", &session.scope)
        .str("sub", config.did.as_str())
        .opt_str("refresh_token", refresh)
        .finish();
    json_response(200, &body)
}

/// `POST /oauth/token`: the code and refresh grants. The DPoP proof is checked before the code
/// or refresh token is touched, so a nonce retry spends nothing.
async fn token(
    config: &Config,
    account: &Account,
    req: &HttpRequest,
) -> Result<HttpResponse, OAuthError> {
    let params = parameters(req, false)?;
    let proof = check_proof(config, account, req)?;
    let grant = params
        .get("grant_type")
        .ok_or_else(|| OAuthError::invalid_request("grant_type is required"))?
        .clone();
    if grant != "authorization_code" && grant != "refresh_token" {
        return Err(OAuthError::unsupported_grant_type(format!(
            "Grant type \"{grant}\" is not supported"
        )));
    }
    let (client, client_auth) = authenticated_client(config, account, &params).await?;
    if !client.has_grant(&grant) {
        return Err(OAuthError::invalid_grant(format!(
            "This client may not use the {grant} grant"
        )));
    }
    if grant == "authorization_code" {
        code_grant(config, account, &params, &client, &client_auth, &proof).await
    } else {
        refresh_grant(config, account, &params, &client, &client_auth, &proof).await
    }
}

async fn code_grant(
    config: &Config,
    account: &Account,
    params: &BTreeMap<String, String>,
    client: &Client,
    client_auth: &ClientAuth,
    proof: &Proof,
) -> Result<HttpResponse, OAuthError> {
    let store = OAuthStore::new(account.sql.as_ref());
    let code = params
        .get("code")
        .filter(|c| c.starts_with(CODE_PREFIX))
        .ok_or_else(|| OAuthError::invalid_grant("Invalid code"))?;
    let verifier = params
        .get("code_verifier")
        .ok_or_else(|| OAuthError::invalid_grant("code_verifier is required"))?;
    let code_hash = token_hash(code);
    let Some(request) = store.take_code(&code_hash)? else {
        // A code used twice: whatever it was exchanged for is revoked.
        if let Some(session) = store.session_by_code(&code_hash)? {
            store.delete_session(&session.id)?;
            return Err(OAuthError::invalid_grant(
                "Code replayed: its session is revoked",
            ));
        }
        return Err(OAuthError::invalid_grant("Invalid code"));
    };
    let now = now_ms(account);
    if request.code_expires_ms.is_none_or(|e| e < now) {
        return Err(OAuthError::invalid_grant("Code expired"));
    }
    if request.client_id != client.metadata.client_id || request.client_auth != *client_auth {
        return Err(OAuthError::invalid_grant(
            "The code was issued to another client or client key",
        ));
    }
    if request.dpop_jkt != proof.jkt {
        return Err(OAuthError::invalid_grant(
            "DPoP proof does not match the expected JKT",
        ));
    }
    if params.get("redirect_uri") != Some(&request.params.redirect_uri) {
        return Err(OAuthError::invalid_grant("redirect_uri does not match"));
    }
    let verifier_ok = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    if !verifier_ok
        || !jwt::constant_time_eq(
            computed.as_bytes(),
            request.params.code_challenge.as_bytes(),
        )
    {
        return Err(OAuthError::invalid_grant("Invalid code_verifier"));
    }
    if !store.use_once(
        &format!("challenge:{}", request.params.code_challenge),
        now + CHALLENGE_MEMORY_MS,
        now,
    )? {
        return Err(OAuthError::invalid_grant("Code challenge already used"));
    }
    // Permission sets become the granular scopes they grant (again at every refresh).
    let requested = request.params.scope.clone();
    let granted = super::permission_set::expand_scope(config, account, &requested).await?;
    let (lifetime, idle) = if client.is_confidential() {
        (CONFIDENTIAL_SESSION_MS, CONFIDENTIAL_REFRESH_IDLE_MS)
    } else {
        (PUBLIC_SESSION_MS, PUBLIC_SESSION_MS)
    };
    let access = format!("{}{}", super::server::ACCESS_PREFIX, random_token()?);
    let refresh = if client.has_grant("refresh_token") {
        Some(format!("{REFRESH_PREFIX}{}", random_token()?))
    } else {
        None
    };
    let session = Session {
        // Hex: the owner types it after `pds oauth revoke` (base64url may start with `-`).
        id: crate::hex::encode(
            &crate::auth::random_bytes::<16>().map_err(OAuthError::server_error)?,
        ),
        client_id: request.client_id.clone(),
        client_auth: request.client_auth.clone(),
        dpop_jkt: proof.jkt.clone(),
        requested_scope: (granted != requested).then_some(requested),
        scope: granted,
        created_ms: now,
        refreshed_ms: now,
        expires_ms: now + lifetime,
        refresh_idle_ms: idle,
        access_expires_ms: now + ACCESS_TTL_MS.min(lifetime),
        auth_method: request
            .auth_method
            .clone()
            .unwrap_or_else(|| "password".into()),
    };
    store.prune_sessions(now)?;
    store.insert_session(
        &session,
        &token_hash(&access),
        refresh.as_deref().map(token_hash).as_deref(),
        &code_hash,
    )?;
    Ok(token_response(
        config,
        &session,
        &access,
        refresh.as_deref(),
    ))
}

async fn refresh_grant(
    config: &Config,
    account: &Account,
    params: &BTreeMap<String, String>,
    client: &Client,
    client_auth: &ClientAuth,
    proof: &Proof,
) -> Result<HttpResponse, OAuthError> {
    let store = OAuthStore::new(account.sql.as_ref());
    let presented = params
        .get("refresh_token")
        .filter(|t| t.starts_with(REFRESH_PREFIX))
        .ok_or_else(|| OAuthError::invalid_grant("Invalid refresh token"))?;
    let old_hash = token_hash(presented);
    let Some(session) = store.session_by_refresh(&old_hash)? else {
        if let Some(session_id) = store.spent_refresh_session(&old_hash)? {
            store.delete_session(&session_id)?;
            return Err(OAuthError::invalid_grant("Refresh token replayed"));
        }
        return Err(OAuthError::invalid_grant("Invalid refresh token"));
    };
    let now = now_ms(account);
    // From here on, any mismatch ends the session (the reference does the same): a token in
    // the wrong hands is worth nothing more.
    let problem =
        if session.client_id != client.metadata.client_id || session.client_auth != *client_auth {
            Some("The refresh token was issued to another client or client key")
        } else if session.dpop_jkt != proof.jkt {
            Some("DPoP proof does not match the session's key")
        } else if session.expires_ms <= now {
            Some("The session has expired")
        } else if session.refreshed_ms + session.refresh_idle_ms <= now {
            Some("The refresh token has expired")
        } else {
            None
        };
    if let Some(problem) = problem {
        store.delete_session(&session.id)?;
        return Err(OAuthError::invalid_grant(problem));
    }
    let scope = match &session.requested_scope {
        Some(requested) => {
            // A set that can no longer be resolved (not even from the cache) leaves the
            // session with what it was granted before.
            super::permission_set::expand_scope(config, account, requested)
                .await
                .unwrap_or_else(|_| session.scope.clone())
        }
        None => session.scope.clone(),
    };
    let access = format!("{ACCESS_PREFIX}{}", random_token()?);
    let refresh = format!("{REFRESH_PREFIX}{}", random_token()?);
    let access_expires = (now + ACCESS_TTL_MS).min(session.expires_ms);
    if !store.rotate(
        &session.id,
        &old_hash,
        &token_hash(&access),
        access_expires,
        &token_hash(&refresh),
        &scope,
        now,
    )? {
        store.delete_session(&session.id)?;
        return Err(OAuthError::invalid_grant("Refresh token replayed"));
    }
    let refreshed = Session {
        refreshed_ms: now,
        access_expires_ms: access_expires,
        scope,
        ..session
    };
    Ok(token_response(config, &refreshed, &access, Some(&refresh)))
}

/// `POST /oauth/revoke` (RFC 7009): ends the session a token (access, refresh or code) belongs
/// to, if the client holds it. Anything but a bad DPoP proof or a missing token answers 200.
async fn revoke(
    config: &Config,
    account: &Account,
    req: &HttpRequest,
) -> Result<HttpResponse, OAuthError> {
    let params = parameters(req, false)?;
    check_proof(config, account, req)?;
    let token = params
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    let ok = json_response(200, &crate::data::json::JsonWriter::new().finish());
    let Ok((client, client_auth)) = authenticated_client(config, account, &params).await else {
        return Ok(ok);
    };
    let store = OAuthStore::new(account.sql.as_ref());
    let hash = token_hash(token);
    let session = if token.starts_with(ACCESS_PREFIX) {
        store.session_by_access(&hash)?
    } else if token.starts_with(REFRESH_PREFIX) {
        match store.session_by_refresh(&hash)? {
            Some(s) => Some(s),
            None => match store.spent_refresh_session(&hash)? {
                Some(id) => store.sessions()?.into_iter().find(|s| s.id == id),
                None => None,
            },
        }
    } else if token.starts_with(CODE_PREFIX) {
        // An unexchanged code is dropped only by the client it was issued to.
        if let Some(request) = store.request_by_code(&hash)? {
            if request.client_id == client.metadata.client_id && request.client_auth == client_auth
            {
                store.delete_request(&request.id)?;
            }
        }
        store.session_by_code(&hash)?
    } else {
        None
    };
    if let Some(session) = session {
        if session.client_id == client.metadata.client_id && session.client_auth == client_auth {
            store.delete_session(&session.id)?;
        }
    }
    Ok(ok)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::platform::native::{DirBlobStore, NativeSql};

    const CLIENT: &str = "https://app.example.com/oauth-client-metadata.json";
    const NOW_MS: i64 = 1_800_000_000_000;

    fn config(trusted: &str) -> Config {
        crate::config::test_config(&[(crate::config::vars::OAUTH_TRUSTED_CLIENTS, trusted)])
    }

    /// An account holding a pushed request of [`CLIENT`], whose metadata (with a name and a
    /// logo) PAR cached; the authorize page's GET for it.
    fn pushed() -> (Account, HttpRequest) {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "pds-oauth-server-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let account = Account::open(
            Box::new(NativeSql::open_in_memory().unwrap()),
            Box::new(DirBlobStore::open(&dir).unwrap()),
            Box::new(ManualClock::new(NOW_MS as u64 * 1000)),
        );
        let store = OAuthStore::new(account.sql.as_ref());
        let metadata = serde_json::json!({
            "client_id": CLIENT,
            "client_name": "Example App",
            "logo_uri": "https://cdn.example.com/logo.png",
            "redirect_uris": ["https://app.example.com/callback"],
            "scope": "atproto",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "dpop_bound_access_tokens": true,
            "token_endpoint_auth_method": "none",
        });
        store
            .cache_client(CLIENT, &metadata.to_string(), NOW_MS)
            .unwrap();
        store
            .insert_request(
                &StoredRequest {
                    id: "r1".into(),
                    client_id: CLIENT.into(),
                    client_auth: ClientAuth {
                        method: "none".into(),
                        kid: None,
                    },
                    params: RequestParams {
                        redirect_uri: "https://app.example.com/callback".into(),
                        scope: "atproto".into(),
                        state: "s".into(),
                        code_challenge: "c".into(),
                        response_mode: "query".into(),
                        login_hint: None,
                        prompt: None,
                    },
                    dpop_jkt: "jkt".into(),
                    expires_ms: NOW_MS + REQUEST_TTL_MS,
                    failed_attempts: 0,
                    code_expires_ms: None,
                    auth_method: None,
                },
                NOW_MS,
            )
            .unwrap();
        let req = HttpRequest {
            method: "GET".into(),
            path: "/oauth/authorize".into(),
            query: format!(
                "client_id={}&request_uri={}r1",
                super::super::encode_component(CLIENT),
                super::super::encode_component(REQUEST_URI_PREFIX)
            ),
            headers: Vec::new(),
            body: Vec::new(),
            client_ip: None,
        };
        (account, req)
    }

    fn page(res: &HttpResponse) -> (String, &str) {
        let crate::http::Body::Bytes(b) = &res.body else {
            panic!("a page")
        };
        let csp = res
            .headers
            .iter()
            .find(|(k, _)| k == "content-security-policy")
            .map(|(_, v)| v.as_str())
            .unwrap();
        (String::from_utf8(b.clone()).unwrap(), csp)
    }

    #[test]
    fn the_page_shows_a_trusted_clients_name_and_logo_only() {
        let (account, req) = pushed();
        let untrusted = config("https://other.example.com/client.json");
        let res = authorize_page(&untrusted, &account, &req);
        assert_eq!(res.status, 200);
        let (html, csp) = page(&res);
        assert!(html.contains("<h1>app.example.com wants to use your account</h1>"));
        assert!(html.contains("It calls itself <strong>Example App</strong>"));
        assert!(!html.contains("<img"));
        assert!(csp.contains("img-src 'self' data:;"), "{csp}");

        let trusted = config(&format!("https://other.example.com/client.json,{CLIENT}"));
        let res = authorize_page(&trusted, &account, &req);
        assert_eq!(res.status, 200);
        let (html, csp) = page(&res);
        assert!(html.contains("<h1>Example App wants to use your account</h1>"));
        assert!(html.contains("src=\"https://cdn.example.com/logo.png\""));
        assert!(html.contains(CLIENT));
        assert!(
            csp.contains("img-src 'self' data: https://cdn.example.com;"),
            "{csp}"
        );
    }
}
