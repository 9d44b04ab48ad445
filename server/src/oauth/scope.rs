//! OAuth scopes as atproto defines them (the permission spec): `atproto`, the transitional
//! scopes, and granular permissions `repo:`, `rpc:`, `blob:`, `account:`, `identity:` and
//! `include:`. A token is allowed to do something when any of its scopes matches; tokens that
//! do not parse are ignored, as the spec asks.

use pds_api::runtime::syntax::{Did, Nsid};

/// The scope every OAuth request and token carries.
pub const ATPROTO: &str = "atproto";
/// What an app password could do: repository, blobs, and any service call but chat.
pub const TRANSITION_GENERIC: &str = "transition:generic";
/// Reading the account's email.
pub const TRANSITION_EMAIL: &str = "transition:email";
/// Calls to the chat service.
pub const TRANSITION_CHAT: &str = "transition:chat.bsky";

/// A repository write action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoAction {
    Create,
    Update,
    Delete,
}

impl RepoAction {
    /// Its name in scopes.
    pub fn name(self) -> &'static str {
        match self {
            RepoAction::Create => "create",
            RepoAction::Update => "update",
            RepoAction::Delete => "delete",
        }
    }

    fn parse(s: &str) -> Option<RepoAction> {
        [RepoAction::Create, RepoAction::Update, RepoAction::Delete]
            .into_iter()
            .find(|a| a.name() == s)
    }
}

/// One granular permission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Permission {
    Repo {
        collections: Vec<String>,
        actions: Vec<RepoAction>,
    },
    Rpc {
        lxms: Vec<String>,
        aud: String,
    },
    Blob {
        accept: Vec<String>,
    },
    Account {
        attr: String,
        manage: bool,
    },
    Identity {
        attr: String,
    },
    Include {
        nsid: String,
        aud: Option<String>,
    },
}

/// A parsed scope string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes {
    pub atproto: bool,
    pub generic: bool,
    pub email: bool,
    pub chat: bool,
    pub permissions: Vec<Permission>,
}

/// Whether a scope string has the OAuth token syntax: printable ASCII but `"` and `\`,
/// tokens separated by single spaces.
pub fn is_scope_syntax(scope: &str) -> bool {
    !scope.is_empty()
        && scope.split(' ').all(|t| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
        })
}

impl Scopes {
    /// Parses a space-separated scope string; tokens that are not valid scopes are ignored.
    pub fn parse(scope: &str) -> Scopes {
        let mut out = Scopes::default();
        for token in scope.split(' ').filter(|t| !t.is_empty()) {
            match token {
                ATPROTO => out.atproto = true,
                TRANSITION_GENERIC => out.generic = true,
                TRANSITION_EMAIL => out.email = true,
                TRANSITION_CHAT => out.chat = true,
                _ => {
                    if let Some(p) = parse_permission(token) {
                        out.permissions.push(p);
                    }
                }
            }
        }
        out
    }

    /// Whether the scopes allow `action` on records of `collection`; else the scope needed.
    pub fn repo(&self, collection: &str, action: RepoAction) -> Result<(), String> {
        if self.generic {
            return Ok(());
        }
        let ok = self.permissions.iter().any(|p| match p {
            Permission::Repo {
                collections,
                actions,
            } => {
                actions.contains(&action) && collections.iter().any(|c| c == "*" || c == collection)
            }
            _ => false,
        });
        ok.then_some(())
            .ok_or_else(|| format!("repo:{collection}?action={}", action.name()))
    }

    /// Whether the scopes allow calling `lxm` at the service `aud` (`did#id`); else the scope
    /// needed. `lxm` is `*` for a service token bound to no method.
    pub fn rpc(&self, lxm: &str, aud: &str) -> Result<(), String> {
        let chat = lxm.starts_with("chat.bsky.");
        if (self.generic && !chat) || (self.chat && chat) {
            return Ok(());
        }
        let ok = self.permissions.iter().any(|p| match p {
            Permission::Rpc { lxms, aud: a } => {
                (a == "*" || a == aud) && lxms.iter().any(|l| l == "*" || l == lxm)
            }
            _ => false,
        });
        ok.then_some(())
            .ok_or_else(|| format!("rpc:{lxm}?aud={}", aud.replace('#', "%23")))
    }

    /// Whether the scopes allow uploading a blob of type `mime`; else the scope needed.
    pub fn blob(&self, mime: &str) -> Result<(), String> {
        if self.generic {
            return Ok(());
        }
        let mime = mime
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let ok = self.permissions.iter().any(|p| match p {
            Permission::Blob { accept } => accept.iter().any(|a| mime_matches(a, &mime)),
            _ => false,
        });
        ok.then_some(()).ok_or_else(|| format!("blob:{mime}"))
    }

    /// Whether the scopes allow reading (`manage` false) or managing account attribute `attr`
    /// (`email`, `repo`, `status`); else the scope needed.
    pub fn account(&self, attr: &str, manage: bool) -> Result<(), String> {
        if attr == "email" && !manage && self.email {
            return Ok(());
        }
        let ok = self.permissions.iter().any(|p| match p {
            Permission::Account { attr: a, manage: m } => a == attr && (*m || !manage),
            _ => false,
        });
        let action = if manage { "manage" } else { "read" };
        ok.then_some(())
            .ok_or_else(|| format!("account:{attr}?action={action}"))
    }

    /// Whether the scopes allow changing identity attribute `attr` (`handle`, or `*` for
    /// everything: PLC operations); else the scope needed.
    pub fn identity(&self, attr: &str) -> Result<(), String> {
        let ok = self.permissions.iter().any(|p| match p {
            Permission::Identity { attr: a } => a == "*" || a == attr,
            _ => false,
        });
        ok.then_some(()).ok_or_else(|| format!("identity:{attr}"))
    }
}

/// `*/*`, `type/*` or an exact `type/subtype` against a request's type (no wildcard in it).
fn mime_matches(accept: &str, mime: &str) -> bool {
    if mime.contains('*') || !mime.contains('/') {
        return false;
    }
    match accept.strip_suffix("/*") {
        Some("*") => true,
        Some(kind) => mime.strip_prefix(kind).is_some_and(|r| r.starts_with('/')),
        None => accept == mime,
    }
}

/// The named parameters of a permission, decoded, in order.
fn params(query: &str) -> Option<Vec<(String, String)>> {
    if query.is_empty() {
        return Some(Vec::new());
    }
    query
        .split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((
                pds_api::runtime::schema::percent_decode(k).ok()?,
                pds_api::runtime::schema::percent_decode(v).ok()?,
            ))
        })
        .collect()
}

/// One granular permission string, or `None` when it is not a valid one.
pub fn parse_permission(token: &str) -> Option<Permission> {
    if !token.is_ascii() {
        return None;
    }
    let (head, query) = match token.split_once('?') {
        Some((h, q)) => (h, q),
        None => (token, ""),
    };
    let (resource, positional) = match head.split_once(':') {
        Some((r, p)) => (r, Some(pds_api::runtime::schema::percent_decode(p).ok()?)),
        None => (head, None),
    };
    let positional = positional.filter(|p| !p.is_empty());
    let named = params(query)?;
    let (positional_key, keys): (&str, &[&str]) = match resource {
        "repo" => ("collection", &["collection", "action"]),
        "rpc" => ("lxm", &["lxm", "aud"]),
        "blob" => ("accept", &["accept"]),
        "account" => ("attr", &["attr", "action"]),
        "identity" => ("attr", &["attr"]),
        "include" => ("nsid", &["nsid", "aud"]),
        _ => return None,
    };
    if named.iter().any(|(k, _)| !keys.contains(&k.as_str())) {
        return None;
    }
    let all = |key: &str| -> Vec<String> {
        let mut values: Vec<String> = named
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect();
        if key == positional_key {
            values.extend(positional.clone());
        }
        values
    };
    // The positional parameter may not also be named.
    if positional.is_some() && named.iter().any(|(k, _)| k == positional_key) {
        return None;
    }
    let one = |key: &str| -> Option<Option<String>> {
        let mut values = all(key);
        match values.len() {
            0 => Some(None),
            1 => Some(values.pop()),
            _ => None,
        }
    };
    let nsid_or_star = |v: &String| v == "*" || Nsid::new(v.clone()).is_ok();
    match resource {
        "repo" => {
            let collections = all("collection");
            if collections.is_empty() || !collections.iter().all(nsid_or_star) {
                return None;
            }
            let named_actions = all("action");
            let actions = if named_actions.is_empty() {
                vec![RepoAction::Create, RepoAction::Update, RepoAction::Delete]
            } else {
                named_actions
                    .iter()
                    .map(|a| RepoAction::parse(a))
                    .collect::<Option<Vec<_>>>()?
            };
            Some(Permission::Repo {
                collections,
                actions,
            })
        }
        "rpc" => {
            let lxms = all("lxm");
            let aud = one("aud")??;
            if lxms.is_empty() || !lxms.iter().all(nsid_or_star) || !is_service_aud(&aud) {
                return None;
            }
            if aud == "*" && lxms.iter().any(|l| l == "*") {
                return None;
            }
            Some(Permission::Rpc { lxms, aud })
        }
        "blob" => {
            let accept: Vec<String> = all("accept")
                .iter()
                .map(|a| a.to_ascii_lowercase())
                .collect();
            let valid = |a: &String| {
                let mut parts = a.split('/');
                matches!(
                    (parts.next(), parts.next(), parts.next()),
                    (Some(t), Some(s), None) if !t.is_empty() && !s.is_empty()
                        && !a.contains(' ')
                        && (t != "*" || s == "*")
                        && (s == "*" || !s.contains('*'))
                )
            };
            if accept.is_empty() || !accept.iter().all(valid) {
                return None;
            }
            Some(Permission::Blob { accept })
        }
        "account" => {
            let attr = one("attr")??;
            if !matches!(attr.as_str(), "email" | "repo" | "status") {
                return None;
            }
            let actions = all("action");
            if !actions.iter().all(|a| a == "read" || a == "manage") {
                return None;
            }
            Some(Permission::Account {
                attr,
                manage: actions.iter().any(|a| a == "manage"),
            })
        }
        "identity" => {
            let attr = one("attr")??;
            matches!(attr.as_str(), "handle" | "*").then_some(Permission::Identity { attr })
        }
        "include" => {
            let nsid = one("nsid")??;
            let aud = one("aud")?;
            if Nsid::new(nsid.clone()).is_err() || aud.as_ref().is_some_and(|a| !is_service_aud(a))
            {
                return None;
            }
            Some(Permission::Include { nsid, aud })
        }
        _ => None,
    }
}

/// `*`, or a DID with a service fragment (`did:web:api.bsky.app#bsky_appview`).
fn is_service_aud(aud: &str) -> bool {
    if aud == "*" {
        return true;
    }
    match aud.split_once('#') {
        Some((did, id)) => {
            !id.is_empty()
                && id.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'~' | b':')
                })
                && Did::new(did.to_owned()).is_ok()
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_examples_parse_and_the_bad_ones_do_not() {
        for good in [
            "identity:*",
            "identity:*?",
            "rpc?lxm=*&aud=did:web:api.example.com%23svc_appview",
            "blob?accept=video/*&accept=text/html",
            "repo:app.example.profile?action=create&action=update&action=delete",
            "include:app.example.authFull?aud=did:web:api.example.com%23svc_chat",
            "account:email?action=manage",
            "blob:*/*",
            "repo:*",
        ] {
            assert!(parse_permission(good).is_some(), "{good}");
        }
        for bad in [
            "resource",
            "resource:positional?key=val",
            "repo:",
            "repo:?",
            "repo?",
            "repo:a.b.c?collection=d.e.f",
            "repo:com.example.*",
            "repo:app.bsky.feed.post?action=publish",
            "rpc:*?aud=*",
            "rpc:app.bsky.feed.getFeed?aud=did:web:api.bsky.app",
            "rpc:app.bsky.feed.getFeed",
            "identity:handle?attr=handle",
            "account:email?attr=repo",
            "blob:image",
            "québec",
        ] {
            assert!(parse_permission(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn permissions_match_as_the_reference_matches() {
        let s = Scopes::parse(
            "atproto repo:app.bsky.feed.post?action=create blob:image/* \
             rpc:app.bsky.actor.getPreferences?aud=did:web:api.bsky.app%23bsky_appview \
             account:email identity:handle",
        );
        assert!(s.atproto);
        assert!(s.repo("app.bsky.feed.post", RepoAction::Create).is_ok());
        assert_eq!(
            s.repo("app.bsky.feed.post", RepoAction::Delete),
            Err("repo:app.bsky.feed.post?action=delete".into())
        );
        assert!(s.repo("app.bsky.feed.like", RepoAction::Create).is_err());
        assert!(s.blob("image/png; charset=x").is_ok());
        assert_eq!(s.blob("video/mp4"), Err("blob:video/mp4".into()));
        let appview = "did:web:api.bsky.app#bsky_appview";
        assert!(s.rpc("app.bsky.actor.getPreferences", appview).is_ok());
        assert_eq!(
            s.rpc(
                "app.bsky.actor.getPreferences",
                "did:web:evil.example#bsky_appview"
            ),
            Err("rpc:app.bsky.actor.getPreferences?aud=did:web:evil.example%23bsky_appview".into())
        );
        assert!(s.account("email", false).is_ok());
        assert!(s.account("email", true).is_err());
        assert!(s.identity("handle").is_ok());
        assert!(s.identity("*").is_err());

        let generic = Scopes::parse("atproto transition:generic");
        assert!(generic.repo("any.thing.here", RepoAction::Delete).is_ok());
        assert!(generic.blob("video/mp4").is_ok());
        assert!(generic.rpc("app.bsky.feed.getTimeline", appview).is_ok());
        assert!(generic
            .rpc(
                "chat.bsky.convo.listConvos",
                "did:web:api.bsky.chat#bsky_chat"
            )
            .is_err());
        assert!(generic.account("email", false).is_err());
        assert!(generic.identity("handle").is_err());
        let chat = Scopes::parse("atproto transition:chat.bsky transition:email");
        assert!(chat
            .rpc(
                "chat.bsky.convo.listConvos",
                "did:web:api.bsky.chat#bsky_chat"
            )
            .is_ok());
        assert!(chat.account("email", false).is_ok());
    }

    #[test]
    fn scope_syntax() {
        assert!(is_scope_syntax("atproto transition:generic"));
        assert!(!is_scope_syntax("atproto  transition:generic"));
        assert!(!is_scope_syntax(" atproto"));
        assert!(!is_scope_syntax("a\"b"));
    }
}
