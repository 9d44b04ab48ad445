//! `pds init`: sets up a deployment of the PDS for one account. It makes the account's keys and
//! secrets, its DID (did:web of the user's domain, a new did:plc submitted to the directory, or
//! the did:plc of an account that will migrate in), writes the deployment's variables to a
//! git-ignored `wrangler.deploy.toml` (the tracked `wrangler.toml` with this account's values)
//! and its secrets to Cloudflare (`wrangler secret bulk`) or, with `--local`, to `.dev.vars`.

use std::path::{Path, PathBuf};

use crate::config::vars;
use crate::crypto::{KeyAlgorithm, SigningKey};

/// The file `pds init` writes the deployment's configuration to, beside `wrangler.toml`.
pub const DEPLOY_CONFIG: &str = "wrangler.deploy.toml";
/// Where `--local` writes the secrets (wrangler dev reads it beside the configuration).
pub const LOCAL_SECRETS: &str = ".dev.vars";

/// Which account the deployment hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountKind {
    /// A new did:web account on the PDS's own hostname.
    Web,
    /// A new did:plc account, created by a genesis operation this command submits; the user's
    /// own recovery key (a `did:key`), if given, ranks above this PDS's rotation key.
    Plc { recovery_key: Option<String> },
    /// An existing did:plc account that will migrate in (`pds migrate`).
    Migrate { did: String },
}

/// What `pds init` was asked for.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The project's directory (where `wrangler.toml` is).
    pub dir: PathBuf,
    /// Secrets into `.dev.vars` instead of Cloudflare.
    pub local: bool,
    /// Replace an existing deployment's keys.
    pub force: bool,
    /// The PDS's public hostname, e.g. `pds.example.com`.
    pub hostname: String,
    /// The account's handle.
    pub handle: String,
    /// The account.
    pub kind: AccountKind,
    /// The PLC directory.
    pub plc_url: String,
}

/// A deployment's configuration, made by [`prepare`].
pub struct Deployment {
    /// The account's DID.
    pub did: String,
    /// Non-secret variables, for `wrangler.deploy.toml`.
    pub vars: Vec<(&'static str, String)>,
    /// Secrets.
    pub secrets: Vec<(&'static str, String)>,
    /// The genesis operation to submit, for a new did:plc.
    pub genesis: Option<serde_json::Value>,
}

/// Whether this project already holds a deployment whose keys `pds init` would replace.
pub fn existing_deployment(opts: &InitOptions) -> Option<PathBuf> {
    let deploy = opts.dir.join(DEPLOY_CONFIG);
    if deploy.exists() {
        return Some(deploy);
    }
    let secrets = opts.dir.join(LOCAL_SECRETS);
    let holds_key = std::fs::read_to_string(&secrets)
        .is_ok_and(|text| text.lines().any(|l| l.starts_with(vars::SIGNING_KEY)));
    (opts.local && holds_key).then_some(secrets)
}

/// Makes the deployment: fresh keys and token secret, the password's hash, the DID (and, for a
/// new did:plc, its signed genesis operation).
pub fn prepare(opts: &InitOptions, password: &str) -> Result<Deployment, String> {
    if password.len() < 8 {
        return Err("the password must have at least 8 characters".into());
    }
    let host = opts.hostname.trim().to_ascii_lowercase();
    if host.is_empty() || host.contains('/') {
        return Err(format!("{host:?} is not a hostname (no scheme, no path)"));
    }
    let handle = opts
        .handle
        .trim()
        .trim_start_matches('@')
        .to_ascii_lowercase();
    pds_api::runtime::syntax::Handle::new(handle.clone())
        .map_err(|e| format!("handle {handle:?}: {e}"))?;
    let signing = SigningKey::generate(KeyAlgorithm::K256);
    let rotation = SigningKey::generate(KeyAlgorithm::K256);
    let mut jwt_secret = [0u8; 32];
    getrandom02::getrandom(&mut jwt_secret).map_err(|e| format!("no randomness: {e}"))?;
    let (did, genesis) = match &opts.kind {
        AccountKind::Web => (format!("did:web:{}", host.replace(':', "%3A")), None),
        AccountKind::Migrate { did } => {
            if !did.starts_with("did:plc:") {
                return Err(format!(
                    "{did}: only a did:plc account migrates in (a did:web account is set up \
                     on its own host)"
                ));
            }
            (did.clone(), None)
        }
        AccountKind::Plc { recovery_key } => {
            let op = genesis(&host, &handle, &signing, &rotation, recovery_key.as_deref())?;
            let did = op.genesis_did().map_err(|e| e.to_string())?;
            (did, Some(op.to_json()))
        }
    };
    let mut vars = vec![
        (vars::HOSTNAME, host),
        (vars::DID, did.clone()),
        (vars::HANDLE, handle),
    ];
    if !matches!(opts.kind, AccountKind::Web) {
        vars.push((vars::PLC_URL, opts.plc_url.trim_end_matches('/').to_owned()));
    }
    let secrets = vec![
        (vars::SIGNING_KEY, signing.to_hex()),
        (vars::PLC_ROTATION_KEY, rotation.to_hex()),
        (vars::PASSWORD_HASH, crate::password::hash(password)?),
        (vars::JWT_SECRET, crate::hex::encode(&jwt_secret)),
    ];
    Ok(Deployment {
        did,
        vars,
        secrets,
        genesis,
    })
}

/// The genesis operation of a new did:plc: this PDS's keys, handle and endpoint, the user's
/// recovery key first when there is one.
fn genesis(
    host: &str,
    handle: &str,
    signing: &SigningKey,
    rotation: &SigningKey,
    recovery_key: Option<&str>,
) -> Result<crate::plc::Operation, String> {
    let mut rotation_keys = Vec::new();
    if let Some(key) = recovery_key {
        crate::crypto::PublicKey::from_did_key(key)
            .map_err(|e| format!("recovery key {key:?}: {e}"))?;
        rotation_keys.push(key.to_owned());
    }
    rotation_keys.push(rotation.public_key().to_did_key());
    let data = crate::plc::DocumentData {
        rotation_keys,
        verification_methods: [("atproto".to_owned(), signing.public_key().to_did_key())]
            .into_iter()
            .collect(),
        also_known_as: vec![format!("at://{handle}")],
        services: [(
            "atproto_pds".to_owned(),
            crate::plc::Service {
                kind: crate::plc::PDS_SERVICE_TYPE.to_owned(),
                endpoint: format!("https://{host}"),
            },
        )]
        .into_iter()
        .collect(),
    };
    crate::plc::Operation::new(data, None)
        .sign(rotation)
        .map_err(|e| e.to_string())
}

/// Submits a new did:plc's genesis operation to the directory.
pub async fn submit_genesis(
    plc_url: &str,
    did: &str,
    operation: &serde_json::Value,
) -> Result<(), String> {
    let url = format!("{}/{did}", plc_url.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .body(operation.to_string())
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = response.status().as_u16();
    if status == 200 {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    Err(format!(
        "the PLC directory refused the genesis operation ({status}): {body}"
    ))
}

/// Writes `wrangler.deploy.toml`: the tracked `wrangler.toml` of `dir`, with `vars` set in its
/// `[vars]` and the hostname as the Worker's custom domain. Comments and everything else are
/// kept, so it deploys what the tracked file describes.
pub fn write_deploy_config(dir: &Path, vars: &[(&'static str, String)]) -> Result<PathBuf, String> {
    let tracked = dir.join("wrangler.toml");
    let text = std::fs::read_to_string(&tracked)
        .map_err(|e| format!("reading {}: {e}", tracked.display()))?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e| format!("{}: {e}", tracked.display()))?;
    let table = doc
        .entry("vars")
        .or_insert(toml_edit::table())
        .as_table_mut()
        .ok_or("wrangler.toml: [vars] is not a table")?;
    for (name, value) in vars {
        table[*name] = toml_edit::value(value.as_str());
    }
    let host = vars
        .iter()
        .find(|(name, _)| *name == vars::HOSTNAME)
        .map(|(_, h)| h.clone())
        .unwrap_or_default();
    // A custom domain on a zone of the account's Cloudflare: wrangler creates its DNS record
    // and certificate on deploy. (Local hostnames with a port get none.)
    if !host.contains(':') {
        let mut route = toml_edit::InlineTable::new();
        route.insert("pattern", host.as_str().into());
        route.insert("custom_domain", true.into());
        let mut routes = toml_edit::Array::new();
        routes.push(route);
        doc["routes"] = toml_edit::value(routes);
    }
    let out = dir.join(DEPLOY_CONFIG);
    let header = "# Made by `pds init` from wrangler.toml, with this deployment's values: deploy with\n\
                  # `npx wrangler deploy --config wrangler.deploy.toml`. Not tracked by git; after a\n\
                  # `git pull` that changes wrangler.toml, `pds init --refresh` makes it again.\n";
    std::fs::write(&out, format!("{header}{doc}"))
        .map_err(|e| format!("writing {}: {e}", out.display()))?;
    Ok(out)
}

/// The variables `pds init` set in an existing `wrangler.deploy.toml` (for `--refresh`).
pub fn deploy_vars(dir: &Path) -> Result<Vec<(&'static str, String)>, String> {
    let path = dir.join(DEPLOY_CONFIG);
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let found = [vars::HOSTNAME, vars::DID, vars::HANDLE, vars::PLC_URL]
        .into_iter()
        .filter_map(|name| {
            let value = doc.get("vars")?.get(name)?.as_str()?;
            Some((name, value.to_owned()))
        })
        .collect::<Vec<_>>();
    if found.iter().any(|(name, _)| *name == vars::DID) {
        Ok(found)
    } else {
        Err(format!("{} names no {}", path.display(), vars::DID))
    }
}

/// Writes the secrets to `.dev.vars` in `dir` (readable by its owner only).
pub fn write_local_secrets(
    dir: &Path,
    secrets: &[(&'static str, String)],
) -> Result<PathBuf, String> {
    let text = crate::dev_account::dotenv(
        "Secrets of the deployment `pds init --local` made. Never commit.",
        secrets,
    );
    let path = dir.join(LOCAL_SECRETS);
    write_private(&path, &text)?;
    Ok(path)
}

/// Writes a backup of the keys (and the rest of the secrets) to `path`, readable by its owner
/// only.
pub fn write_key_backup(path: &Path, deployment: &Deployment) -> Result<(), String> {
    let mut backup = secrets_json(&deployment.vars);
    backup["did"] = deployment.did.clone().into();
    for (name, value) in &deployment.secrets {
        backup[*name] = value.clone().into();
    }
    let text = serde_json::to_string_pretty(&backup).map_err(|e| e.to_string())?;
    write_private(path, &text)
}

/// Named values as a JSON object (what `wrangler secret bulk` and `--secrets-file` read).
fn secrets_json(values: &[(&'static str, String)]) -> serde_json::Value {
    values
        .iter()
        .map(|(name, value)| ((*name).to_owned(), serde_json::Value::from(value.as_str())))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// Writes `text` to a new file at `path` that only its owner may read.
fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options
        .open(path)
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    // An existing file keeps its mode when opened: set it too.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    file.write_all(text.as_bytes())
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Sends the secrets to Cloudflare: `npx wrangler secret bulk` with the deployment's
/// configuration, the values on its standard input (never in a file or an argument).
pub fn put_secrets_with_wrangler(
    dir: &Path,
    secrets: &[(&'static str, String)],
) -> Result<(), String> {
    use std::io::Write;
    let json = secrets_json(secrets);
    let mut child = std::process::Command::new("npx")
        .args(["wrangler", "secret", "bulk", "--config", DEPLOY_CONFIG])
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("running npx wrangler: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(json.to_string().as_bytes())
            .map_err(|e| format!("npx wrangler secret bulk: {e}"))?;
    }
    let status = child
        .wait()
        .map_err(|e| format!("npx wrangler secret bulk: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err("npx wrangler secret bulk failed (signed in? `npx wrangler login`)".into())
    }
}

/// Where the secrets wait when wrangler could not store them (a Worker not deployed yet): for
/// `wrangler deploy --secrets-file`, then to delete.
pub const PENDING_SECRETS: &str = ".deploy.secrets.json";

/// Writes the secrets to [`PENDING_SECRETS`] in `dir`, readable by its owner only.
pub fn write_pending_secrets(
    dir: &Path,
    secrets: &[(&'static str, String)],
) -> Result<PathBuf, String> {
    let json = secrets_json(secrets);
    let path = dir.join(PENDING_SECRETS);
    write_private(&path, &json.to_string())?;
    Ok(path)
}

/// What to do next, for the deployment `deployment` of `opts`.
pub fn next_steps(opts: &InitOptions, deployment: &Deployment) -> String {
    let host = &opts.hostname;
    let handle = &opts.handle;
    let did = &deployment.did;
    let mut steps = Vec::new();
    if opts.local {
        steps.push(format!(
            "Run it locally: npx wrangler dev --config {DEPLOY_CONFIG}"
        ));
    } else {
        steps.push("Create the blob bucket once: npx wrangler r2 bucket create pds-blobs".into());
        steps.push(format!(
            "Deploy: npx wrangler deploy --config {DEPLOY_CONFIG}"
        ));
        steps.push(format!(
            "DNS: {host} must be a zone (or in a zone) of your Cloudflare account; the deploy \
             makes {host} the Worker's custom domain, with its DNS record and certificate."
        ));
    }
    match &opts.kind {
        AccountKind::Web => steps.push(format!(
            "Your DID is {did}: this PDS serves its document at https://{host}/.well-known/did.json."
        )),
        AccountKind::Plc { .. } => steps.push(format!(
            "Your DID is {did}, registered with {}; it starts deactivated: once deployed, \
             `pds activate --url https://{host} --identifier {did}`.",
            opts.plc_url
        )),
        AccountKind::Migrate { .. } => steps.push(format!(
            "The deployment waits, deactivated, for {did}: once deployed, \
             `pds migrate --from {did} --url https://{host}`."
        )),
    }
    if handle != host && !matches!(opts.kind, AccountKind::Migrate { .. }) {
        steps.push(format!(
            "Handle: a DNS TXT record _atproto.{handle} with the value \"did={did}\" (or serve \
             {did} at https://{handle}/.well-known/atproto-did)."
        ));
    }
    steps
        .iter()
        .enumerate()
        .map(|(i, s)| format!("{}. {s}", i + 1))
        .collect::<Vec<_>>()
        .join("\n")
}
