//! The discovery documents (RFC 9728, RFC 8414): answered at the edge from configuration.

use crate::config::Config;
use crate::http::HttpResponse;

/// Path of the protected resource metadata.
pub const PROTECTED_RESOURCE: &str = "/.well-known/oauth-protected-resource";
/// Path of the authorization server metadata.
pub const AUTHORIZATION_SERVER: &str = "/.well-known/oauth-authorization-server";
/// Path of the (empty) key set: access tokens are opaque, so there are no keys to publish.
pub const JWKS: &str = "/oauth/jwks";

/// The protected resource metadata: this PDS, and itself as its one authorization server.
pub fn protected_resource(config: &Config) -> String {
    const TEMPLATE: &str = r#"{"resource":"$","authorization_servers":["$"],
"bearer_methods_supported":["header"],
"scopes_supported":["atproto","transition:generic","transition:email","transition:chat.bsky"],
"resource_documentation":"https://atproto.com"}"#;
    fill(TEMPLATE, config)
}

/// `template` on one line, with each `$` replaced by this server's origin. The origin is a URL
/// made from the configured hostname; quotes and backslashes are dropped all the same, so it
/// stays one JSON string.
fn fill(template: &str, config: &Config) -> String {
    template
        .replace('\n', "")
        .replace('$', &config.public_url().replace(['"', '\\'], ""))
}

/// The authorization server metadata, with everything the atproto profile requires and the
/// revocation endpoint (without it, the npm client's sign-out revokes nothing). Written as one
/// template: building it as a `json!` value cost 8 KB of wasm.
pub fn authorization_server(config: &Config) -> String {
    const TEMPLATE: &str = r#"{"issuer":"$","authorization_endpoint":"$/oauth/authorize",
"token_endpoint":"$/oauth/token","pushed_authorization_request_endpoint":"$/oauth/par",
"revocation_endpoint":"$/oauth/revoke","jwks_uri":"$/oauth/jwks",
"require_pushed_authorization_requests":true,"response_types_supported":["code"],
"response_modes_supported":["query","fragment"],
"grant_types_supported":["authorization_code","refresh_token"],
"code_challenge_methods_supported":["S256"],
"token_endpoint_auth_methods_supported":["none","private_key_jwt"],
"token_endpoint_auth_signing_alg_values_supported":["ES256"],
"revocation_endpoint_auth_methods_supported":["none","private_key_jwt"],
"revocation_endpoint_auth_signing_alg_values_supported":["ES256"],
"dpop_signing_alg_values_supported":["ES256","ES256K"],
"scopes_supported":["atproto","transition:generic","transition:email","transition:chat.bsky"],
"subject_types_supported":["public"],
"prompt_values_supported":["none","login","consent","select_account"],
"authorization_response_iss_parameter_supported":true,
"client_id_metadata_document_supported":true,"require_request_uri_registration":true,
"protected_resources":["$"]}"#;
    fill(TEMPLATE, config)
}

/// The answer for one of the documents at `path`, if it is one.
pub fn document(config: &Config, path: &str) -> Option<HttpResponse> {
    let text = match path {
        PROTECTED_RESOURCE => protected_resource(config),
        AUTHORIZATION_SERVER => authorization_server(config),
        JWKS => r#"{"keys":[]}"#.to_owned(),
        _ => return None,
    };
    let mut res = HttpResponse::bytes(200, "application/json; charset=utf-8", text.into_bytes());
    res.headers
        .push(("cache-control".into(), "max-age=300".into()));
    Some(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scopes this server knows.
    const SCOPES: [&str; 4] = [
        crate::oauth::scope::ATPROTO,
        crate::oauth::scope::TRANSITION_GENERIC,
        crate::oauth::scope::TRANSITION_EMAIL,
        crate::oauth::scope::TRANSITION_CHAT,
    ];

    #[test]
    fn the_template_is_the_profile_s_document() {
        let config = crate::config::Config::from_lookup(|name| {
            let v = match name {
                crate::config::vars::HOSTNAME => "pds.example.com",
                crate::config::vars::DID => "did:web:pds.example.com",
                crate::config::vars::HANDLE => "alice.example.com",
                crate::config::vars::SIGNING_KEY => {
                    "9085d2bef69286a6cbb51623c8fa258629945cd55ca705cc4e66700396894e0c"
                }
                crate::config::vars::PASSWORD_HASH => {
                    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
                }
                crate::config::vars::JWT_SECRET => {
                    "0000000000000000000000000000000000000000000000000000000000000000"
                }
                _ => return None,
            };
            Some(v.to_owned())
        })
        .unwrap();
        let parse = |t: String| serde_json::from_str::<serde_json::Value>(&t).unwrap();
        let m = parse(authorization_server(&config));
        assert_eq!(m["issuer"], "https://pds.example.com");
        assert_eq!(
            m["pushed_authorization_request_endpoint"],
            "https://pds.example.com/oauth/par"
        );
        assert_eq!(
            m["revocation_endpoint"],
            "https://pds.example.com/oauth/revoke"
        );
        assert_eq!(m["protected_resources"][0], "https://pds.example.com");
        assert_eq!(m["scopes_supported"], serde_json::json!(SCOPES));
        assert_eq!(
            m["code_challenge_methods_supported"],
            serde_json::json!(["S256"])
        );
        let r = parse(protected_resource(&config));
        assert_eq!(r["scopes_supported"], serde_json::json!(SCOPES));
        assert_eq!(r["authorization_servers"][0], m["issuer"]);
    }
}
