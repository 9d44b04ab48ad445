//! A small OAuth client for the negative cases: it makes its own DPoP proofs (P-256, with the
//! server's nonce) and PKCE pairs, so each test can break exactly one thing. The happy path
//! with the npm client real apps use is `oracle/oauth-flow.mjs`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use pds::crypto::{KeyAlgorithm, SigningKey};
use sha2::{Digest, Sha256};

use super::account::{HOSTNAME, PASSWORD};
use super::http::{request, Reply};

/// The public origin of the test servers (what proofs name).
pub fn origin() -> String {
    format!("http://{HOSTNAME}")
}

/// The loopback redirect URI the test clients register.
pub const REDIRECT: &str = "http://127.0.0.1/callback";

/// Percent-encodes a form value.
pub fn enc(s: &str) -> String {
    pds::oauth::encode_component(s)
}

/// A form body from pairs.
pub fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A loopback client id declaring `scope`.
pub fn loopback_client_id(scope: &str) -> String {
    format!(
        "http://localhost?redirect_uri={}&scope={}",
        enc(REDIRECT),
        enc(scope)
    )
}

/// The authorize page's path for a pushed request of `client_id`.
pub fn authorize_path(client_id: &str, request_uri: &str) -> String {
    format!(
        "/oauth/authorize?client_id={}&request_uri={}",
        enc(client_id),
        enc(request_uri)
    )
}

/// What a browser keeps from the authorize page to post its form: the CSRF token and the cookie
/// it is bound to (`name=value`).
pub fn form_secrets(page: &Reply) -> (String, String) {
    let html = String::from_utf8_lossy(&page.body);
    let csrf = html
        .split("name=\"csrf_token\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the page has a csrf_token field")
        .to_owned();
    let cookie = page
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .expect("the page sets its CSRF cookie")
        .to_owned();
    (csrf, cookie)
}

/// One test client: a DPoP key, the nonce it last saw, its client id.
pub struct Client {
    pub base: String,
    pub key: SigningKey,
    pub nonce: Option<String>,
    pub client_id: String,
    jti: u64,
}

/// Tokens from the token endpoint.
pub struct Tokens {
    pub access: String,
    pub refresh: String,
    pub scope: String,
}

/// A PKCE verifier and its S256 challenge.
pub fn pkce() -> (String, String) {
    let verifier = URL_SAFE_NO_PAD.encode(rand_bytes());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

fn rand_bytes() -> [u8; 32] {
    let k = SigningKey::generate(KeyAlgorithm::P256);
    Sha256::digest(k.to_bytes()).into()
}

impl Client {
    /// A client of the server at `base` declaring `scope`.
    pub fn new(base: &str, scope: &str) -> Client {
        Client {
            base: base.to_owned(),
            key: SigningKey::generate(KeyAlgorithm::P256),
            nonce: None,
            client_id: loopback_client_id(scope),
            jti: 0,
        }
    }

    /// A proof for `method` `path` (on the public origin), with the current nonce and, when
    /// given, the access token's hash. `tweak` may change the claims before signing.
    pub fn proof_with(
        &mut self,
        method: &str,
        path: &str,
        access: Option<&str>,
        tweak: impl FnOnce(&mut serde_json::Value),
    ) -> String {
        self.jti += 1;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut claims = serde_json::json!({
            "jti": format!("{}-{}", URL_SAFE_NO_PAD.encode(&rand_bytes()[..8]), self.jti),
            "htm": method,
            "htu": format!("{}{path}", origin()),
            "iat": now,
        });
        if let Some(n) = &self.nonce {
            claims["nonce"] = n.clone().into();
        }
        if let Some(a) = access {
            claims["ath"] = pds::oauth::dpop::access_token_hash(a).into();
        }
        tweak(&mut claims);
        let mut header = serde_json::Map::new();
        header.insert("typ".into(), "dpop+jwt".into());
        header.insert(
            "jwk".into(),
            pds::oauth::dpop::public_jwk(&self.key.public_key()),
        );
        pds::auth::jwt::sign_es(header, claims.as_object().unwrap(), &self.key)
    }

    /// A proof for `method` `path`.
    pub fn proof(&mut self, method: &str, path: &str, access: Option<&str>) -> String {
        self.proof_with(method, path, access, |_| {})
    }

    fn remember_nonce(&mut self, reply: &Reply) {
        if let Some(n) = reply.header("dpop-nonce") {
            self.nonce = Some(n.to_owned());
        }
    }

    /// POSTs a form to an authorization server endpoint with a fresh proof; a
    /// `use_dpop_nonce` answer is retried once with the nonce it carries, as clients do.
    pub fn post_form(&mut self, path: &str, body: &str) -> Reply {
        for _ in 0..2 {
            let proof = self.proof("POST", path, None);
            let reply = request(
                &self.base,
                "POST",
                path,
                &[
                    ("content-type", "application/x-www-form-urlencoded"),
                    ("dpop", &proof),
                ],
                body.as_bytes(),
            );
            self.remember_nonce(&reply);
            if reply.status == 400 && reply.json()["error"] == "use_dpop_nonce" {
                continue;
            }
            return reply;
        }
        panic!("the server kept asking for a nonce");
    }

    /// A pushed request with `extra` parameters over the usual ones (an empty value removes
    /// one). Returns the reply.
    pub fn par(&mut self, challenge: &str, scope: &str, extra: &[(&str, &str)]) -> Reply {
        let client_id = self.client_id.clone();
        let mut params: Vec<(&str, &str)> = vec![
            ("client_id", &client_id),
            ("response_type", "code"),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
            ("state", "s-123"),
            ("redirect_uri", REDIRECT),
            ("scope", scope),
        ];
        for (k, v) in extra {
            params.retain(|(pk, _)| pk != k);
            if !v.is_empty() {
                params.push((k, v));
            }
        }
        self.post_form("/oauth/par", &form(&params))
    }

    /// The owner approves `request_uri` on the page with the account password; returns the
    /// decision's reply (a 303 to the client on success).
    pub fn approve(&self, request_uri: &str, password: &str) -> Reply {
        let page = request(
            &self.base,
            "GET",
            &authorize_path(&self.client_id, request_uri),
            &[("accept", "text/html")],
            b"",
        );
        assert_eq!(page.status, 200, "{}", String::from_utf8_lossy(&page.body));
        let (csrf, cookie) = form_secrets(&page);
        let body = form(&[
            ("request_uri", request_uri),
            ("client_id", &self.client_id),
            ("csrf_token", &csrf),
            ("webauthn", ""),
            ("password", password),
            ("action", "allow"),
        ]);
        request(
            &self.base,
            "POST",
            "/oauth/authorize",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("cookie", &cookie),
                ("origin", &origin()),
                ("sec-fetch-site", "same-origin"),
            ],
            body.as_bytes(),
        )
    }

    /// A pushed request for `scope` that must be accepted: its `request_uri` and the PKCE
    /// verifier.
    pub fn push(&mut self, scope: &str, extra: &[(&str, &str)]) -> (String, String) {
        let (verifier, challenge) = pkce();
        let par = self.par(&challenge, scope, extra);
        assert_eq!(par.status, 201, "{}", String::from_utf8_lossy(&par.body));
        let request_uri = par.json()["request_uri"].as_str().unwrap().to_owned();
        (request_uri, verifier)
    }

    /// PAR and approval: the code and the PKCE verifier.
    pub fn code(&mut self, scope: &str) -> (String, String) {
        let (request_uri, verifier) = self.push(scope, &[]);
        let decision = self.approve(&request_uri, PASSWORD);
        assert_eq!(
            decision.status,
            303,
            "{}",
            String::from_utf8_lossy(&decision.body)
        );
        let location = decision.header("location").unwrap().to_owned();
        let code = location
            .split("code=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap()
            .to_owned();
        (code, verifier)
    }

    /// Exchanges a code.
    pub fn exchange(&mut self, code: &str, verifier: &str) -> Reply {
        let client_id = self.client_id.clone();
        self.post_form(
            "/oauth/token",
            &form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("code_verifier", verifier),
                ("redirect_uri", REDIRECT),
                ("client_id", &client_id),
            ]),
        )
    }

    /// A full sign-in: tokens for `scope`.
    pub fn sign_in(&mut self, scope: &str) -> Tokens {
        let (code, verifier) = self.code(scope);
        let reply = self.exchange(&code, &verifier);
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        let body = reply.json();
        Tokens {
            access: body["access_token"].as_str().unwrap().to_owned(),
            refresh: body["refresh_token"].as_str().unwrap().to_owned(),
            scope: body["scope"].as_str().unwrap().to_owned(),
        }
    }

    /// Refreshes.
    pub fn refresh(&mut self, refresh: &str) -> Reply {
        let client_id = self.client_id.clone();
        self.post_form(
            "/oauth/token",
            &form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh),
                ("client_id", &client_id),
            ]),
        )
    }

    /// An XRPC call with a raw body of `content_type` (retried once on `use_dpop_nonce`).
    pub fn xrpc_raw(&mut self, path: &str, access: &str, content_type: &str, body: &[u8]) -> Reply {
        for _ in 0..2 {
            let proof = self.proof("POST", path, Some(access));
            let auth = format!("DPoP {access}");
            let headers = [
                ("authorization", auth.as_str()),
                ("dpop", proof.as_str()),
                ("content-type", content_type),
            ];
            let reply = request(&self.base, "POST", path, &headers, body);
            self.remember_nonce(&reply);
            if reply.status == 401 && reply.json()["error"] == "use_dpop_nonce" {
                continue;
            }
            return reply;
        }
        panic!("the server kept asking for a nonce");
    }

    /// An XRPC call with the access token and a proof (retried once on `use_dpop_nonce`).
    pub fn xrpc(
        &mut self,
        method: &str,
        path_and_query: &str,
        access: &str,
        body: Option<&serde_json::Value>,
    ) -> Reply {
        let path = path_and_query.split('?').next().unwrap().to_owned();
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        for _ in 0..2 {
            let proof = self.proof(method, &path, Some(access));
            let auth = format!("DPoP {access}");
            let mut headers = vec![("authorization", auth.as_str()), ("dpop", proof.as_str())];
            if body.is_some() {
                headers.push(("content-type", "application/json"));
            }
            let reply = request(&self.base, method, path_and_query, &headers, &bytes);
            self.remember_nonce(&reply);
            if reply.status == 401 && reply.json()["error"] == "use_dpop_nonce" {
                continue;
            }
            return reply;
        }
        panic!("the server kept asking for a nonce");
    }
}
