//! The discovery documents (RFC 9728, RFC 8414): answered at the edge from configuration.

use serde_json::json;

use crate::config::Config;
use crate::http::HttpResponse;

/// Path of the protected resource metadata.
pub const PROTECTED_RESOURCE: &str = "/.well-known/oauth-protected-resource";
/// Path of the authorization server metadata.
pub const AUTHORIZATION_SERVER: &str = "/.well-known/oauth-authorization-server";
/// Path of the (empty) key set: access tokens are opaque, so there are no keys to publish.
pub const JWKS: &str = "/oauth/jwks";

/// The scopes this server knows.
const SCOPES: [&str; 4] = [
    super::scope::ATPROTO,
    super::scope::TRANSITION_GENERIC,
    super::scope::TRANSITION_EMAIL,
    super::scope::TRANSITION_CHAT,
];

/// The protected resource metadata: this PDS, and itself as its one authorization server.
pub fn protected_resource(config: &Config) -> serde_json::Value {
    let origin = config.public_url();
    json!({
        "resource": origin,
        "authorization_servers": [origin],
        "bearer_methods_supported": ["header"],
        "scopes_supported": SCOPES,
        "resource_documentation": "https://atproto.com",
    })
}

/// The authorization server metadata, with everything the atproto profile requires and the
/// revocation endpoint (without it, the npm client's sign-out revokes nothing). Written as one
/// template: building it as a `json!` value cost 8 KB of wasm.
pub fn authorization_server(config: &Config) -> serde_json::Value {
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
    // The issuer is a URL made from the configured hostname: no quote or backslash in it.
    let issuer = config.public_url().replace(['"', '\\'], "");
    serde_json::from_str(&TEMPLATE.replace('$', &issuer)).unwrap_or_default()
}

/// The answer for one of the documents at `path`, if it is one.
pub fn document(config: &Config, path: &str) -> Option<HttpResponse> {
    let value = match path {
        PROTECTED_RESOURCE => protected_resource(config),
        AUTHORIZATION_SERVER => authorization_server(config),
        JWKS => json!({ "keys": [] }),
        _ => return None,
    };
    let mut res = HttpResponse::json(200, &value);
    res.headers
        .push(("cache-control".into(), "max-age=300".into()));
    Some(res)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let m = authorization_server(&config);
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
        let r = protected_resource(&config);
        assert_eq!(r["authorization_servers"][0], m["issuer"]);
    }
}
