//! The sign-in and consent page of `/oauth/authorize`, and its error page: plain HTML that
//! works without JavaScript, one inline style sheet (allowed by its hash), light and dark,
//! phone and desktop. The form's field names are fixed (`../shared/reference/oauth.md` §4.3) so
//! that a plain form POST (tests, the command line) completes the flow as a browser does.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha256};

use super::scope::{Permission, RepoAction, Scopes};
use crate::http::{Body, HttpResponse};

const STYLE: &str = "\
:root{color-scheme:light dark;--bg:#f6f7f9;--card:#fff;--text:#15191e;--muted:#5b6470;\
--line:#dfe3e8;--accent:#1463d8;--warn:#a15c00;--bad:#b3261e}\
@media (prefers-color-scheme:dark){:root{--bg:#0f1216;--card:#181d23;--text:#e8ecf1;\
--muted:#9aa5b1;--line:#2a323c;--accent:#5b9cff;--warn:#e6a23c;--bad:#ff8a80}}\
*{box-sizing:border-box}body{margin:0;background:var(--bg);color:var(--text);\
font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif}\
main{max-width:34rem;margin:0 auto;padding:1.25rem}\
.card{background:var(--card);border:1px solid var(--line);border-radius:14px;padding:1.25rem}\
h1{font-size:1.35rem;margin:0 0 .25rem}p{margin:.5rem 0}.muted{color:var(--muted);font-size:.9rem}\
.id{font-family:ui-monospace,monospace;font-size:.85rem;word-break:break-all}\
ul{padding-left:1.2rem;margin:.5rem 0}li{margin:.3rem 0}.warn{color:var(--warn)}\
.error{color:var(--bad);font-weight:600}\
label{display:block;margin:1rem 0 .3rem;font-weight:600}\
input[type=password]{width:100%;padding:.7rem;font-size:1rem;border:1px solid var(--line);\
border-radius:10px;background:var(--bg);color:var(--text)}\
.actions{display:flex;gap:.75rem;margin-top:1rem;flex-wrap:wrap}\
button{flex:1 1 8rem;padding:.75rem 1rem;font-size:1rem;border-radius:10px;cursor:pointer;\
border:1px solid var(--line);background:var(--card);color:var(--text)}\
button.primary{background:var(--accent);border-color:var(--accent);color:#fff;font-weight:600}\
details{margin-top:1rem}summary{cursor:pointer;color:var(--muted)}\
.logo{float:right;width:3.5rem;height:3.5rem;margin:0 0 .5rem .75rem;border-radius:12px;object-fit:cover}";

/// The one script of these pages: passkeys need `navigator.credentials`. It reads its options
/// from a JSON block (`#passkey-options`), runs the ceremony when its button is pressed, and
/// submits the page's form with the result; without it (or without WebAuthn) the pages work as
/// they are, with the password.
const SCRIPT: &str = "(function(){\
var n=document.getElementById('passkey-options');if(!n)return;\
var o=JSON.parse(n.textContent),b=document.getElementById('passkey'),x=document.getElementById('passkey-error');\
function d(s){s=s.replace(/-/g,'+').replace(/_/g,'/');while(s.length%4)s+='=';\
return Uint8Array.from(atob(s),function(c){return c.charCodeAt(0)})}\
function e(a){return btoa(String.fromCharCode.apply(null,new Uint8Array(a)))\
.replace(/\\+/g,'-').replace(/\\//g,'_').replace(/=+$/,'')}\
if(!window.PublicKeyCredential)return;b.hidden=false;\
var ids=o.ids.map(function(i){return{type:'public-key',id:d(i)}});\
b.addEventListener('click',function(){x.hidden=true;var f=b.form,p;\
if(o.register){p=navigator.credentials.create({publicKey:{challenge:d(o.challenge),\
rp:{id:o.rpId,name:o.rpName},user:{id:d(o.userId),name:o.userName,displayName:o.userName},\
pubKeyCredParams:[{type:'public-key',alg:-7},{type:'public-key',alg:-8},{type:'public-key',alg:-257}],\
authenticatorSelection:{userVerification:'required',residentKey:'preferred'},\
attestation:'none',excludeCredentials:ids,timeout:120000}}).then(function(c){\
f.credential.value=JSON.stringify({id:c.id,clientDataJSON:e(c.response.clientDataJSON),\
attestationObject:e(c.response.attestationObject)});f.submit()})}\
else{p=navigator.credentials.get({publicKey:{challenge:d(o.challenge),rpId:o.rpId,\
allowCredentials:ids,userVerification:'required',timeout:120000}}).then(function(c){\
f.webauthn.value=JSON.stringify({id:c.id,clientDataJSON:e(c.response.clientDataJSON),\
authenticatorData:e(c.response.authenticatorData),signature:e(c.response.signature)});\
f.requestSubmit(document.getElementById('allow'))})}\
p.catch(function(){x.hidden=false})})})();";

/// Escapes text for HTML content and double-quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The security headers of every page here: a CSP that allows only the inline style sheet and
/// form posts to this server and to the client's redirect origin (`form_target`), no framing,
/// no caching, referrers only to this origin (the request URI never leaves it; `no-referrer`
/// would make browsers send `Origin: null` with the form, which the CSRF check refuses).
/// Images come from this origin only, or also from `image_origin` (a trusted client's logo).
fn page_response(
    status: u16,
    html: String,
    form_target: Option<&str>,
    image_origin: Option<&str>,
) -> HttpResponse {
    let style_hash = STANDARD.encode(Sha256::digest(STYLE.as_bytes()));
    let script_src = if html.contains(SCRIPT) {
        format!(
            "'sha256-{}'",
            STANDARD.encode(Sha256::digest(SCRIPT.as_bytes()))
        )
    } else {
        "'none'".to_owned()
    };
    let form_action = match form_target {
        Some(t) => format!("'self' {t}"),
        None => "'self'".into(),
    };
    let img_src = match image_origin {
        Some(o) => format!("'self' data: {o}"),
        None => "'self' data:".into(),
    };
    let csp = format!(
        "default-src 'none'; script-src {script_src}; style-src 'sha256-{style_hash}'; \
         img-src {img_src}; form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
    );
    HttpResponse {
        status,
        headers: vec![
            ("content-type".into(), "text/html; charset=utf-8".into()),
            ("content-security-policy".into(), csp),
            ("cache-control".into(), "no-store".into()),
            ("pragma".into(), "no-cache".into()),
            ("x-frame-options".into(), "DENY".into()),
            ("x-content-type-options".into(), "nosniff".into()),
            ("referrer-policy".into(), "same-origin".into()),
            ("cross-origin-opener-policy".into(), "same-origin".into()),
            ("cross-origin-resource-policy".into(), "same-origin".into()),
        ],
        body: Body::Bytes(html.into_bytes()),
    }
}

fn document(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\"><title>{}</title><style>{STYLE}</style>\
         </head><body><main>{body}</main></body></html>",
        escape(title)
    )
}

/// An error page (the request cannot be sent back to the client).
pub fn error_page(status: u16, title: &str, message: &str) -> HttpResponse {
    let body = format!(
        "<div class=\"card\"><h1>{}</h1><p>{}</p>\
         <p class=\"muted\">You can close this page and start again from the app.</p></div>",
        escape(title),
        escape(message)
    );
    page_response(status, document(title, &body), None, None)
}

/// A passkey ceremony's options as a JSON data block for the script (`<` escaped, so the
/// block cannot end early), the script, and its button.
fn passkey_section(options: &serde_json::Value, label: &str) -> String {
    let json = options.to_string().replace('<', "\\u003c");
    format!(
        "<script type=\"application/json\" id=\"passkey-options\">{json}</script>\
         <button type=\"button\" id=\"passkey\" class=\"primary\" hidden>{}</button>\
         <p id=\"passkey-error\" class=\"error\" role=\"alert\" hidden>The passkey did not work. Try again, or use the password.</p>\
         <script>{SCRIPT}</script>",
        escape(label)
    )
}

/// The page where the owner registers a passkey (from the link `pds passkey add` prints).
pub fn register_page(
    token: &str,
    name: &str,
    handle: &str,
    options: &serde_json::Value,
) -> HttpResponse {
    let body = format!(
        "<div class=\"card\"><h1>Add a passkey</h1>\
         <p>For <strong>@{handle}</strong>: <strong>{name}</strong>. Your device will ask you to \
         confirm with your fingerprint, face, PIN or security key.</p>\
         <form method=\"post\" action=\"/passkey/register\" id=\"register\">\
         <input type=\"hidden\" name=\"token\" value=\"{token}\">\
         <input type=\"hidden\" name=\"credential\" value=\"\">\
         <div class=\"actions\">{section}</div>\
         <noscript><p class=\"error\">Passkeys need JavaScript.</p></noscript>\
         </form></div>",
        handle = escape(handle),
        name = escape(name),
        token = escape(token),
        section = passkey_section(options, "Create the passkey"),
    );
    page_response(200, document("Add a passkey", &body), None, None)
}

/// A short page with a title and a message (the outcome of a registration).
pub fn message_page(status: u16, title: &str, message: &str) -> HttpResponse {
    let body = format!(
        "<div class=\"card\"><h1>{}</h1><p>{}</p></div>",
        escape(title),
        escape(message)
    );
    page_response(status, document(title, &body), None, None)
}

/// What the page shows and posts.
pub struct Consent<'a> {
    /// The client's id, shown in full.
    pub client_id: &'a str,
    /// The client's name, logo and links, when it declared them.
    pub client_name: Option<&'a str>,
    pub logo_uri: Option<&'a str>,
    pub client_uri: Option<&'a str>,
    pub tos_uri: Option<&'a str>,
    pub policy_uri: Option<&'a str>,
    /// A loopback development client.
    pub loopback: bool,
    /// A client the operator trusts (`PDS_OAUTH_TRUSTED_CLIENTS`): its declared name and logo
    /// are shown as its own.
    pub trusted: bool,
    pub handle: &'a str,
    pub did: &'a str,
    /// The requested scope string.
    pub scope: &'a str,
    /// A permission set's title (and detail), by NSID, when known.
    pub set_titles: &'a dyn Fn(&str) -> Option<String>,
    pub request_uri: &'a str,
    pub csrf_token: &'a str,
    /// A message after a failed attempt.
    pub error: Option<&'a str>,
    /// The origin (or private-use scheme) the approval redirects to.
    pub redirect_target: &'a str,
    /// The passkey sign-in's options, when the owner has passkeys.
    pub passkeys: Option<serde_json::Value>,
}

/// The requested permissions in plain words, most powerful first; `true` marks a warning.
pub fn describe(
    scope: &str,
    handle: &str,
    set_titles: &dyn Fn(&str) -> Option<String>,
) -> Vec<(String, bool)> {
    let s = Scopes::parse(scope);
    let mut out = Vec::new();
    for p in &s.permissions {
        match p {
            Permission::Identity { attr } if attr == "*" => out.push((
                "Take control of your identity: change your handle, signing keys and hosting. \
                 This is full control of your account."
                    .into(),
                true,
            )),
            Permission::Identity { .. } => out.push(("Change your handle".into(), true)),
            Permission::Account { attr, manage } => {
                let text = match (attr.as_str(), manage) {
                    ("email", false) => "See your email address",
                    ("email", true) => "See and change your email address",
                    ("repo", true) => "Replace all the data in your account (import a repository)",
                    ("status", true) => "Activate or deactivate your account",
                    _ => "See your account's settings",
                };
                out.push((text.into(), *manage));
            }
            _ => {}
        }
    }
    if s.generic {
        out.push((
            "Create, change and delete anything in your account's public data (posts, likes, \
             follows, profile), upload media, and use Bluesky and other services as you. Not \
             your direct messages, not your account settings."
                .into(),
            true,
        ));
    }
    if s.chat {
        out.push(("Read and send your direct messages".into(), true));
    }
    if s.email {
        out.push(("See your email address".into(), false));
    }
    for p in &s.permissions {
        match p {
            Permission::Repo {
                collections,
                actions,
            } => {
                let verbs: Vec<&str> = actions
                    .iter()
                    .map(|a| match a {
                        RepoAction::Create => "create",
                        RepoAction::Update => "change",
                        RepoAction::Delete => "delete",
                    })
                    .collect();
                let what = if collections.iter().any(|c| c == "*") {
                    "records of any kind".to_owned()
                } else {
                    format!("records of kind {}", collections.join(", "))
                };
                out.push((
                    format!("{} {what} in your account", capitalize(&verbs.join(", "))),
                    false,
                ));
            }
            Permission::Blob { accept } => {
                out.push((format!("Upload files ({})", accept.join(", ")), false))
            }
            Permission::Rpc { lxms, aud } => {
                let service = if aud == "*" {
                    "any service"
                } else {
                    aud.as_str()
                };
                out.push((
                    format!("Call {} at {service} as you", lxms.join(", ")),
                    false,
                ))
            }
            Permission::Include { nsid, .. } => out.push((
                match set_titles(nsid) {
                    Some(title) => format!("{title} ({nsid})"),
                    None => format!("Use the permission set {nsid}"),
                },
                false,
            )),
            _ => {}
        }
    }
    out.insert(0, (format!("Know that you are @{handle}"), false));
    out
}

/// `s` with its first letter upper-cased: ASCII only (these are this file's own words), which
/// keeps the Unicode case tables out of the build.
fn capitalize(s: &str) -> String {
    let mut out = s.to_owned();
    if let Some(first) = out.get_mut(..1) {
        first.make_ascii_uppercase();
    }
    out
}

/// The sign-in and consent page (`status` 401 after a wrong password).
pub fn consent_page(status: u16, c: &Consent<'_>) -> HttpResponse {
    // An app is named by its client_id's host, which was checked (its metadata lives there).
    // The name and logo it declares are any app's to choose (one could show another's), so
    // they are shown as its own only for clients the operator trusts; otherwise the name is
    // only what it calls itself, and there is no logo.
    let trusted = c.trusted && !c.loopback;
    let host = crate::http::url_origin(c.client_id)
        .map_or(c.client_id, |o| o.strip_prefix("https://").unwrap_or(o));
    let name = match c.client_name {
        _ if c.loopback => "A local development app",
        Some(declared) if trusted => declared,
        _ => host,
    };
    let calls_itself = match c.client_name.filter(|_| !c.loopback && !trusted) {
        Some(declared) => format!(
            "<p>It calls itself <strong>{}</strong>.</p>",
            escape(declared)
        ),
        None => String::new(),
    };
    let logo = c
        .logo_uri
        .filter(|u| trusted && u.starts_with("https://"))
        .and_then(|u| Some((u, image_origin(u)?)));
    let logo_img = logo
        .map(|(u, _)| {
            format!(
                "<img class=\"logo\" src=\"{}\" alt=\"\" referrerpolicy=\"no-referrer\">",
                escape(u)
            )
        })
        .unwrap_or_default();
    let mut links = String::new();
    for (label, uri) in [
        ("Website", c.client_uri),
        ("Terms", c.tos_uri),
        ("Privacy", c.policy_uri),
    ] {
        if let Some(u) = uri.filter(|u| u.starts_with("https://")) {
            links.push_str(&format!(
                " <a href=\"{}\" rel=\"noopener noreferrer\" target=\"_blank\">{label}</a>",
                escape(u)
            ));
        }
    }
    let permissions: String = describe(c.scope, c.handle, c.set_titles)
        .iter()
        .map(|(text, warn)| {
            if *warn {
                format!("<li class=\"warn\">{}</li>", escape(text))
            } else {
                format!("<li>{}</li>", escape(text))
            }
        })
        .collect();
    let error = c
        .error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    let body = format!(
        "<div class=\"card\">{logo_img}\
         <h1>{name} wants to use your account</h1>\
         {calls_itself}\
         <p class=\"muted\">App: <span class=\"id\">{client_id}</span>{links}</p>\
         <p>Signing in as <strong>@{handle}</strong><br><span class=\"id muted\">{did}</span></p>\
         <p>If you allow it, this app can:</p><ul>{permissions}</ul>\
         <details><summary>Requested scopes</summary><p class=\"id\">{scope}</p></details>\
         {error}\
         <form method=\"post\" action=\"/oauth/authorize\">\
         <input type=\"hidden\" name=\"request_uri\" value=\"{request_uri}\">\
         <input type=\"hidden\" name=\"client_id\" value=\"{client_id}\">\
         <input type=\"hidden\" name=\"csrf_token\" value=\"{csrf}\">\
         <input type=\"hidden\" name=\"webauthn\" value=\"\">\
         <input type=\"text\" name=\"username\" value=\"{handle}\" autocomplete=\"username\" hidden>\
         <label for=\"password\">Your account password</label>\
         <input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" autofocus>\
         <p class=\"muted\">App passwords are not accepted here.</p>\
         <div class=\"actions\">\
         <button type=\"submit\" name=\"action\" value=\"deny\" formnovalidate>Deny</button>\
         <button type=\"submit\" name=\"action\" value=\"allow\" id=\"allow\" class=\"primary\">Allow</button>\
         </div>{passkey}</form></div>",
        name = escape(name),
        client_id = escape(c.client_id),
        handle = escape(c.handle),
        did = escape(c.did),
        scope = escape(c.scope),
        request_uri = escape(c.request_uri),
        csrf = escape(c.csrf_token),
        passkey = c
            .passkeys
            .as_ref()
            .map(|o| format!("<div class=\"actions\">{}</div>", passkey_section(o, "Allow with a passkey")))
            .unwrap_or_default(),
    );
    page_response(
        status,
        document(&format!("Sign in to {name}"), &body),
        Some(c.redirect_target),
        logo.map(|(_, origin)| origin),
    )
}

/// The origin of an https image URL, as a CSP source: a DNS name or IP with an optional port,
/// nothing a policy could misread.
fn image_origin(url: &str) -> Option<&str> {
    let origin = crate::http::url_origin(url)?;
    let host = origin.strip_prefix("https://")?;
    let fine = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'));
    fine.then_some(origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_permissions_read_as_a_sentence() {
        let lines = describe(
            "atproto repo:app.bsky.feed.post?action=create&action=delete",
            "alice.test",
            &|_| None,
        );
        assert_eq!(
            lines,
            vec![
                ("Know that you are @alice.test".to_owned(), false),
                (
                    "Create, delete records of kind app.bsky.feed.post in your account".to_owned(),
                    false
                ),
            ]
        );
        assert_eq!(capitalize(""), "");
        assert_eq!(capitalize("é"), "é");
    }

    #[test]
    fn the_page_escapes_what_it_shows_and_carries_the_fixed_form() {
        let res = consent_page(
            200,
            &Consent {
                client_id: "https://evil.example.com/<script>",
                client_name: Some("\"><img src=x>"),
                logo_uri: Some("https://evil.example.com/logo.png"),
                client_uri: None,
                tos_uri: Some("javascript:alert(1)"),
                policy_uri: None,
                loopback: false,
                trusted: false,
                handle: "alice.test",
                did: "did:web:localhost",
                scope: "atproto transition:generic identity:*",
                set_titles: &|_| None,
                request_uri: "urn:ietf:params:oauth:request_uri:req-abc",
                csrf_token: "tok",
                error: None,
                redirect_target: "https://evil.example.com",
                passkeys: None,
            },
        );
        let Body::Bytes(b) = &res.body else { panic!() };
        let html = String::from_utf8(b.clone()).unwrap();
        assert!(!html.contains("<script>"));
        assert!(!html.contains("<img src=x>"));
        assert!(!html.contains("javascript:"));
        for field in [
            "name=\"request_uri\"",
            "name=\"client_id\"",
            "name=\"csrf_token\"",
            "name=\"password\"",
            "value=\"allow\"",
            "value=\"deny\"",
        ] {
            assert!(html.contains(field), "{field}");
        }
        assert!(html.contains("full control of your account"));
        assert!(html.contains("<h1>evil.example.com wants to use your account</h1>"));
        assert!(html.contains("It calls itself <strong>&quot;&gt;&lt;img src=x&gt;</strong>"));
        let csp = res
            .headers
            .iter()
            .find(|(k, _)| k == "content-security-policy")
            .unwrap();
        assert!(csp.1.contains("frame-ancestors 'none'"));
        assert!(csp
            .1
            .contains("form-action 'self' https://evil.example.com"));
        // An untrusted client's logo is not shown, and no image source beyond this origin.
        assert!(!html.contains("class=\"logo\""));
        assert!(csp.1.contains("img-src 'self' data:;"));
    }

    fn page_of(
        client_name: Option<&str>,
        logo_uri: Option<&str>,
        trusted: bool,
    ) -> (String, String) {
        let res = consent_page(
            200,
            &Consent {
                client_id: "https://app.example.com/client-metadata.json",
                client_name,
                logo_uri,
                client_uri: None,
                tos_uri: None,
                policy_uri: None,
                loopback: false,
                trusted,
                handle: "alice.test",
                did: "did:web:localhost",
                scope: "atproto",
                set_titles: &|_| None,
                request_uri: "urn:ietf:params:oauth:request_uri:req-abc",
                csrf_token: "tok",
                error: None,
                redirect_target: "https://app.example.com",
                passkeys: None,
            },
        );
        let Body::Bytes(b) = &res.body else { panic!() };
        let csp = res
            .headers
            .iter()
            .find(|(k, _)| k == "content-security-policy")
            .unwrap()
            .1
            .clone();
        (String::from_utf8(b.clone()).unwrap(), csp)
    }

    #[test]
    fn a_trusted_client_is_shown_by_its_name_and_logo() {
        let (html, csp) = page_of(
            Some("Example <App>"),
            Some("https://cdn.example.com:8443/logo.png?s=1"),
            true,
        );
        assert!(html.contains("<h1>Example &lt;App&gt; wants to use your account</h1>"));
        assert!(!html.contains("It calls itself"));
        assert!(html.contains(
            "<img class=\"logo\" src=\"https://cdn.example.com:8443/logo.png?s=1\" alt=\"\" \
             referrerpolicy=\"no-referrer\">"
        ));
        assert!(csp.contains("img-src 'self' data: https://cdn.example.com:8443;"));
        // The full client_id is still shown.
        assert!(html.contains("https://app.example.com/client-metadata.json"));

        // The same client, untrusted: named by its host, no logo, no foreign image source.
        let (html, csp) = page_of(
            Some("Example <App>"),
            Some("https://cdn.example.com:8443/logo.png?s=1"),
            false,
        );
        assert!(html.contains("<h1>app.example.com wants to use your account</h1>"));
        assert!(html.contains("It calls itself <strong>Example &lt;App&gt;</strong>"));
        assert!(!html.contains("<img"));
        assert!(csp.contains("img-src 'self' data:;"));

        // A logo URL that could bend the policy, or is not https, is left out.
        for bad in [
            "https://cdn.example.com;script-src *",
            "https://user@cdn.example.com/logo.png",
            "http://cdn.example.com/logo.png",
            "https://[::1]/logo.png",
        ] {
            let (html, csp) = page_of(Some("Example"), Some(bad), true);
            assert!(!html.contains("<img"), "{bad}");
            assert!(csp.contains("img-src 'self' data:;"), "{bad}");
        }
        // Trusted without a declared name: named by its host.
        let (html, _) = page_of(None, None, true);
        assert!(html.contains("<h1>app.example.com wants to use your account</h1>"));
    }
}
