//! `pds`: the command line of the PDS. `pds --help` lists the commands; each has `--help`.
//!
//! Running the PDS: `serve`, `dev-init`, `hash-password`. Looking after a running one, as an
//! atproto client of it (`--url` and `--identifier`, or `PDS_URL` and `PDS_IDENTIFIER`; the
//! account password from `PDS_PASSWORD` or a prompt, never an argument): `change-password`,
//! `app-password create|list|revoke`, `activate`, `deactivate`, `plc-token`, `handle set`,
//! and `status` (public reads only, no password). Setting up a deployment: `init`. Moving an
//! account here: `migrate`.

#[cfg(not(target_arch = "wasm32"))]
use clap::{Args, Parser, Subcommand};

/// The command line of the PDS.
#[cfg(not(target_arch = "wasm32"))]
#[derive(Parser)]
#[command(
    name = "pds",
    version,
    about = "The command line of the Rust atproto PDS"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[cfg(not(target_arch = "wasm32"))]
#[derive(Subcommand)]
enum Command {
    /// Serves the PDS natively, configured from the environment with the same variables as the
    /// Worker (see the README); the repository and blobs live in PDS_DATA_DIR (./pds-data).
    Serve {
        /// The address to listen on.
        #[arg(default_value = "127.0.0.1:2583")]
        addr: String,
    },
    /// Writes a fresh local development account to a vars file, unless it exists.
    /// PDS_DEV_HANDLE and PDS_DEV_PASSWORD preset the handle and password; otherwise the
    /// password is random and printed once.
    DevInit {
        /// The local port the account's hostname names.
        #[arg(long, default_value_t = 2583)]
        port: u16,
        /// The vars file to write.
        #[arg(long, default_value = ".dev.vars")]
        out: std::path::PathBuf,
    },
    /// Reads a password from standard input and prints its argon2id PHC string (for the
    /// PDS_PASSWORD_HASH secret).
    HashPassword,
    /// Changes the account password on a running PDS, ending every session. The new password
    /// comes from PDS_NEW_PASSWORD or a prompt.
    ChangePassword {
        #[command(flatten)]
        account: AccountArgs,
    },
    /// Creates, lists or revokes app passwords.
    AppPassword {
        #[command(subcommand)]
        action: AppPasswordAction,
    },
    /// Adds, lists or removes passkeys (they approve apps on the sign-in page).
    Passkey {
        #[command(subcommand)]
        action: PasskeyAction,
    },
    /// Lists the apps signed in with OAuth, or signs them out.
    Oauth {
        #[command(subcommand)]
        action: OAuthAction,
    },
    /// Activates the account: it is served to the network again.
    Activate {
        #[command(flatten)]
        account: AccountArgs,
    },
    /// Deactivates the account (as before moving it to another PDS): its repository is no
    /// longer served to the public. Nothing is deleted.
    Deactivate {
        #[command(flatten)]
        account: AccountArgs,
    },
    /// Checks a deployment as the network sees it, with public reads only: the PDS answers,
    /// the account is active, its handle resolves, its DID document names this PDS, the
    /// repository's head verifies with the document's key, its blobs, and how the relays see
    /// the host. Lists each problem with its fix; exits 1 when there is one.
    Status {
        #[command(flatten)]
        account: AccountArgs,
        /// A relay to ask how it sees this host (repeatable).
        #[arg(long = "relay", default_value = "https://bsky.network")]
        relays: Vec<String>,
    },
    /// Backs the account up into a folder: the repository (checked against the DID
    /// document's key), every blob (checked against its CID), the preferences, a manifest.
    /// Again into the same folder, it fetches only what changed.
    Export {
        /// The backup folder.
        dir: std::path::PathBuf,
        #[command(flatten)]
        account: AccountArgs,
    },
    /// Restores a backup folder (`pds export`) onto a fresh deployment of the same account.
    ImportBackup {
        /// The backup folder.
        dir: std::path::PathBuf,
        #[command(flatten)]
        account: AccountArgs,
    },
    /// Sets the account's handle (it must resolve to the account's DID first).
    Handle {
        #[command(subcommand)]
        action: HandleAction,
    },
    /// Sets up a deployment for one account: its keys and secrets, its DID (did:web of the
    /// hostname; with --plc a new did:plc; with --migrate the did:plc of an account that will
    /// move here), wrangler.deploy.toml (git-ignored: wrangler.toml with this account's values)
    /// and the secrets, sent to Cloudflare with wrangler (or, with --local, written to
    /// .dev.vars). Asks for what the flags do not give, unless --yes. The password comes from
    /// PDS_PASSWORD or a prompt, else is generated and shown once.
    Init(InitArgs),
    /// Moves an account from its current PDS onto this one: creates it here, imports its
    /// repository, transfers its blobs and preferences, moves its identity, activates it here
    /// and (asked first) deactivates it there. Running it again goes on where it stopped.
    /// Passwords come from PDS_OLD_PASSWORD (the old PDS) and PDS_PASSWORD (this one; default:
    /// the same), or prompts; the PLC token from PDS_PLC_TOKEN or a prompt.
    Migrate {
        /// The account's handle or DID.
        #[arg(long)]
        from: String,
        /// This PDS's URL, e.g. https://pds.example.com.
        #[arg(long, env = "PDS_URL")]
        url: String,
        /// The old PDS's URL, if not the one the account's DID document names.
        #[arg(long)]
        old_pds: Option<String>,
        /// The PLC directory.
        #[arg(long, env = "PDS_PLC_URL", default_value = "https://plc.directory")]
        plc_url: String,
        /// How many blobs to transfer at once.
        #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u16).range(1..=16))]
        parallel: u16,
        /// Only report what would move.
        #[arg(long)]
        dry_run: bool,
        /// Deactivate the account on the old PDS at the end without asking.
        #[arg(long, conflicts_with = "keep_old")]
        deactivate_old: bool,
        /// Leave the account active on the old PDS without asking.
        #[arg(long)]
        keep_old: bool,
        /// The email for the account on the new PDS, if it wants one.
        #[arg(long)]
        email: Option<String>,
    },
    /// Moves the account from this PDS to another one: `pds migrate` the other way, this PDS
    /// being the old one (the PLC token it would email is read directly). The password here
    /// comes from PDS_PASSWORD, the one on the new PDS from PDS_NEW_PASSWORD (default: the
    /// same), or prompts.
    MigrateOut {
        #[command(flatten)]
        account: AccountArgs,
        /// The new PDS's URL.
        #[arg(long)]
        to: String,
        /// The email for the account on the new PDS (the reference PDS wants one).
        #[arg(long)]
        email: Option<String>,
        /// The PLC directory.
        #[arg(long, env = "PDS_PLC_URL", default_value = "https://plc.directory")]
        plc_url: String,
        /// How many blobs to transfer at once.
        #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u16).range(1..=16))]
        parallel: u16,
        /// Deactivate the account here at the end without asking.
        #[arg(long, conflicts_with = "keep_old")]
        deactivate_old: bool,
        /// Leave the account active here without asking.
        #[arg(long)]
        keep_old: bool,
    },
    /// Prints a token for signing a PLC operation of the account (what other PDSes email):
    /// single-use, valid 15 minutes, replacing any earlier one. Only the token goes to standard
    /// output, for scripts (e.g. goat's --plc-token).
    PlcToken {
        #[command(flatten)]
        account: AccountArgs,
    },
}

#[cfg(not(target_arch = "wasm32"))]
#[derive(Subcommand)]
enum HandleAction {
    /// Sets the handle: verified by the PDS (DNS TXT `_atproto.<handle>` or
    /// `https://<handle>/.well-known/atproto-did`), then announced.
    Set {
        /// The new handle.
        handle: String,
        #[command(flatten)]
        account: AccountArgs,
    },
}

#[cfg(not(target_arch = "wasm32"))]
#[derive(Subcommand)]
enum AppPasswordAction {
    /// Creates an app password and prints it (shown once).
    Create {
        /// Its name, e.g. the app or device it is for.
        name: String,
        /// Lets it reach direct messages (chat) and privileged methods.
        #[arg(long)]
        privileged: bool,
        #[command(flatten)]
        account: AccountArgs,
    },
    /// Lists the app passwords: name, creation time, privileged or not.
    List {
        #[command(flatten)]
        account: AccountArgs,
    },
    /// Revokes an app password and ends the sessions it opened.
    Revoke {
        /// Its name.
        name: String,
        #[command(flatten)]
        account: AccountArgs,
    },
}

#[cfg(not(target_arch = "wasm32"))]
#[derive(Subcommand)]
enum PasskeyAction {
    /// Prints a one-time link (valid 10 minutes): open it in the browser that should hold the
    /// passkey, and confirm there.
    Add {
        /// What the passkey is, e.g. the device holding it.
        #[arg(long, default_value = "passkey")]
        name: String,
        #[command(flatten)]
        account: AccountArgs,
    },
    /// Lists the passkeys: id, name, algorithm, when added, when last used.
    List {
        #[command(flatten)]
        account: AccountArgs,
    },
    /// Removes a passkey (by the id `pds passkey list` shows).
    Revoke {
        /// Ids are base64url, so one may begin with `-`.
        #[arg(allow_hyphen_values = true)]
        id: String,
        #[command(flatten)]
        account: AccountArgs,
    },
}

#[cfg(not(target_arch = "wasm32"))]
#[derive(Subcommand)]
enum OAuthAction {
    /// Lists the OAuth sessions: id, app, how it signed in, when, until when, scopes.
    Sessions {
        #[command(flatten)]
        account: AccountArgs,
    },
    /// Signs an app out at once: one session (by id), or every session of an app (by its
    /// client_id, a URL).
    Revoke {
        /// A session id from `pds oauth sessions`, or an app's client_id (ids may begin
        /// with `-`).
        #[arg(allow_hyphen_values = true)]
        target: String,
        #[command(flatten)]
        account: AccountArgs,
    },
}

/// Which PDS and account a command talks to.
#[cfg(not(target_arch = "wasm32"))]
#[derive(Args)]
struct AccountArgs {
    /// The PDS's URL, e.g. https://pds.example.com.
    #[arg(long, env = "PDS_URL")]
    url: String,
    /// The account's handle or DID.
    #[arg(long, env = "PDS_IDENTIFIER")]
    identifier: String,
}

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    let result = match Cli::parse().command {
        Command::Serve { addr } => serve(&addr),
        Command::DevInit { port, out } => dev_init(port, &out),
        Command::HashPassword => hash_password(),
        Command::ChangePassword { account } => change_password(&account),
        Command::AppPassword { action } => app_password(action),
        Command::Oauth { action } => oauth(action),
        Command::Passkey { action } => passkey(action),
        Command::Activate { account } => set_active(&account, true),
        Command::Deactivate { account } => set_active(&account, false),
        Command::PlcToken { account } => plc_token(&account),
        Command::Status { account, relays } => status(&account, &relays),
        Command::Export { dir, account } => export(&account, &dir),
        Command::ImportBackup { dir, account } => import_backup(&account, &dir),
        Command::Handle {
            action: HandleAction::Set { handle, account },
        } => set_handle(&account, &handle),
        Command::Init(args) => init(args),
        Command::Migrate {
            from,
            url,
            old_pds,
            plc_url,
            parallel,
            dry_run,
            deactivate_old,
            keep_old,
            email,
        } => migrate(pds::cli::migrate::MigrateOptions {
            from,
            url,
            old_pds,
            plc_url,
            parallel: usize::from(parallel),
            dry_run,
            deactivate_old: answer_of(deactivate_old, keep_old),
            email,
            old_password: env_secret("PDS_OLD_PASSWORD"),
            new_password: env_secret("PDS_PASSWORD"),
        }),
        Command::MigrateOut {
            account,
            to,
            email,
            plc_url,
            parallel,
            deactivate_old,
            keep_old,
        } => migrate(pds::cli::migrate::MigrateOptions {
            from: account.identifier,
            url: to,
            old_pds: Some(account.url),
            plc_url,
            parallel: usize::from(parallel),
            dry_run: false,
            deactivate_old: answer_of(deactivate_old, keep_old),
            email,
            old_password: env_secret("PDS_PASSWORD"),
            new_password: env_secret("PDS_NEW_PASSWORD"),
        }),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("pds: {message}");
            std::process::ExitCode::from(2)
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn serve(addr: &str) -> Result<(), String> {
    let addr: std::net::SocketAddr = addr
        .parse()
        .map_err(|e| format!("bad address {addr:?}: {e}"))?;
    let config = pds::config::Config::from_lookup(|name| std::env::var(name).ok())
        .map_err(|e| e.to_string())?;
    let data_dir = std::env::var_os("PDS_DATA_DIR")
        .map_or_else(|| "pds-data".into(), std::path::PathBuf::from);
    let server = pds::platform::native::spawn_stoppable(addr, Ok(config), data_dir)
        .map_err(|e| e.to_string())?;
    println!("Serving on http://{}", server.addr);
    // A server that stopped serving must not leave a process that looks alive.
    server.wait();
    Err("the server stopped".into())
}

#[cfg(not(target_arch = "wasm32"))]
fn dev_init(port: u16, out: &std::path::Path) -> Result<(), String> {
    if out.exists() {
        println!("{} exists: keeping its account", out.display());
        return Ok(());
    }
    let handle = std::env::var("PDS_DEV_HANDLE")
        .ok()
        .filter(|s| !s.is_empty());
    let preset = std::env::var("PDS_DEV_PASSWORD")
        .ok()
        .filter(|s| !s.is_empty());
    let account =
        pds::dev_account::DevAccount::generate(port, handle.as_deref(), preset.as_deref())?;
    std::fs::write(out, account.to_dotenv())
        .map_err(|e| format!("writing {}: {e}", out.display()))?;
    let get = |name: &str| {
        account
            .vars
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    println!(
        "Created the local development account in {}:",
        out.display()
    );
    println!("  handle:   {}", get(pds::config::vars::HANDLE));
    println!("  DID:      {}", get(pds::config::vars::DID));
    if preset.is_some() {
        println!("  password: (as given in PDS_DEV_PASSWORD)");
    } else {
        println!(
            "  password: {}   <- shown once; it is stored only as a hash",
            account.password
        );
    }
    Ok(())
}

#[cfg(not(target_arch = "wasm32"))]
fn hash_password() -> Result<(), String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.len() < 8 {
        return Err("the password must have at least 8 characters".into());
    }
    println!("{}", pds::password::hash(password)?);
    Ok(())
}

/// A password from the environment variable `var`, else asked for on the terminal.
#[cfg(not(target_arch = "wasm32"))]
fn password_from(var: &str, prompt: &str) -> Result<String, String> {
    match std::env::var(var).ok().filter(|p| !p.is_empty()) {
        Some(p) => Ok(p),
        None => ask_password(prompt),
    }
}

/// A password typed on the terminal, not echoed.
#[cfg(not(target_arch = "wasm32"))]
fn ask_password(prompt: &str) -> Result<String, String> {
    rpassword::prompt_password(prompt).map_err(|e| format!("reading the password: {e}"))
}

/// The account password, from PDS_PASSWORD or a prompt.
#[cfg(not(target_arch = "wasm32"))]
fn account_password() -> Result<String, String> {
    password_from("PDS_PASSWORD", "Account password: ")
}

/// Runs `work` against the PDS of `account`, signed in with `password`.
#[cfg(not(target_arch = "wasm32"))]
fn signed_in<T>(
    account: &AccountArgs,
    password: &str,
    work: impl AsyncFnOnce(&pds::cli::Pds) -> Result<T, String>,
) -> Result<T, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let pds = pds::cli::Pds::new(&account.url)?;
        pds.sign_in(&account.identifier, password).await?;
        let result = work(&pds).await;
        // The session opened for this command ends with it (after a password change, or a
        // failure that ended it, there is none left to end).
        let _ = pds.sign_out().await;
        result
    })
}

#[cfg(not(target_arch = "wasm32"))]
fn change_password(account: &AccountArgs) -> Result<(), String> {
    let current = password_from("PDS_PASSWORD", "Current password: ")?;
    let new = match std::env::var("PDS_NEW_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty())
    {
        Some(p) => p,
        None => {
            let first = ask_password("New password: ")?;
            if ask_password("New password again: ")? != first {
                return Err("the two new passwords differ".into());
            }
            first
        }
    };
    signed_in(account, &current, async |pds| {
        let input = serde_json::json!({ "currentPassword": current, "newPassword": new });
        pds.procedure("dev.rustpds.server.changePassword", input)
            .await
            .map(drop)
    })?;
    println!("Password changed. Every session has ended: sign in again with the new password.");
    Ok(())
}

#[cfg(not(target_arch = "wasm32"))]
fn passkey(action: PasskeyAction) -> Result<(), String> {
    match action {
        PasskeyAction::Add { name, account } => {
            let out = signed_in(&account, &account_password()?, async |pds| {
                let input = serde_json::json!({ "name": name });
                pds.procedure("dev.rustpds.passkey.createRegistration", input)
                    .await
            })?;
            println!("{}", out["url"].as_str().unwrap_or_default());
            eprintln!(
                "Open this link in the browser that should hold the passkey (it works once, until {}).",
                out["expiresAt"].as_str().unwrap_or_default()
            );
            Ok(())
        }
        PasskeyAction::List { account } => {
            let listed = signed_in(&account, &account_password()?, async |pds| {
                pds.query("dev.rustpds.passkey.listPasskeys").await
            })?;
            let passkeys = listed["passkeys"].as_array().cloned().unwrap_or_default();
            if passkeys.is_empty() {
                eprintln!("No passkey yet: `pds passkey add` makes one.");
            }
            for p in passkeys {
                let text = |k: &str| p[k].as_str().unwrap_or_default().to_owned();
                let used = match p["lastUsedAt"].as_str() {
                    Some(t) => format!("last used {t}"),
                    None => "never used".to_owned(),
                };
                println!(
                    "{}\t{}\t{}\tadded {}\t{used}",
                    text("id"),
                    text("name"),
                    text("algorithm"),
                    text("createdAt")
                );
            }
            Ok(())
        }
        PasskeyAction::Revoke { id, account } => {
            signed_in(&account, &account_password()?, async |pds| {
                let input = serde_json::json!({ "id": id });
                pds.procedure("dev.rustpds.passkey.deletePasskey", input)
                    .await
                    .map(drop)
            })?;
            println!("Passkey removed: it no longer signs in.");
            Ok(())
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn oauth(action: OAuthAction) -> Result<(), String> {
    match action {
        OAuthAction::Sessions { account } => {
            let listed = signed_in(&account, &account_password()?, async |pds| {
                pds.query("dev.rustpds.oauth.listSessions").await
            })?;
            let sessions = listed["sessions"].as_array().cloned().unwrap_or_default();
            if sessions.is_empty() {
                eprintln!("No app is signed in with OAuth.");
            }
            for s in sessions {
                let text = |k: &str| s[k].as_str().unwrap_or_default().to_owned();
                let app = match s["clientName"].as_str() {
                    Some(name) => format!("{name} ({})", text("clientId")),
                    None => text("clientId"),
                };
                println!(
                    "{}\t{app}\tsigned in {} with {}\tuntil {}\t{}",
                    text("id"),
                    text("createdAt"),
                    text("authMethod"),
                    text("expiresAt"),
                    text("scope")
                );
            }
            Ok(())
        }
        OAuthAction::Revoke { target, account } => {
            let input = if target.contains("://") {
                serde_json::json!({ "clientId": target })
            } else {
                serde_json::json!({ "id": target })
            };
            let out = signed_in(&account, &account_password()?, async |pds| {
                pds.procedure("dev.rustpds.oauth.revokeSession", input)
                    .await
            })?;
            println!(
                "Signed out: {} session(s) ended; their tokens no longer work.",
                out["revoked"].as_i64().unwrap_or(0)
            );
            Ok(())
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn app_password(action: AppPasswordAction) -> Result<(), String> {
    match action {
        AppPasswordAction::Create {
            name,
            privileged,
            account,
        } => {
            let created = signed_in(&account, &account_password()?, async |pds| {
                let input = serde_json::json!({ "name": name, "privileged": privileged });
                pds.procedure("com.atproto.server.createAppPassword", input)
                    .await
            })?;
            let password = created["password"]
                .as_str()
                .ok_or("createAppPassword answered no password")?;
            println!("{password}");
            eprintln!("App password {name:?} created; it is shown only this once.");
            Ok(())
        }
        AppPasswordAction::List { account } => {
            let listed = signed_in(&account, &account_password()?, async |pds| {
                pds.query("com.atproto.server.listAppPasswords").await
            })?;
            for p in listed["passwords"].as_array().into_iter().flatten() {
                let privileged = if p["privileged"].as_bool() == Some(true) {
                    "\tprivileged"
                } else {
                    ""
                };
                println!(
                    "{}\t{}{privileged}",
                    p["name"].as_str().unwrap_or_default(),
                    p["createdAt"].as_str().unwrap_or_default()
                );
            }
            Ok(())
        }
        AppPasswordAction::Revoke { name, account } => {
            signed_in(&account, &account_password()?, async |pds| {
                // The method answers alike whether the name existed or not (as the
                // reference); the command says which.
                let listed = pds.query("com.atproto.server.listAppPasswords").await?;
                let known = listed["passwords"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| p["name"].as_str() == Some(name.as_str()));
                if !known {
                    return Err(format!("there is no app password named {name:?}"));
                }
                let input = serde_json::json!({ "name": name });
                pds.procedure("com.atproto.server.revokeAppPassword", input)
                    .await
                    .map(drop)
            })?;
            println!("App password {name:?} revoked; the sessions it opened have ended.");
            Ok(())
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn set_active(account: &AccountArgs, active: bool) -> Result<(), String> {
    signed_in(account, &account_password()?, async |pds| {
        if active {
            pds.procedure_without_input("com.atproto.server.activateAccount")
                .await
                .map(drop)
        } else {
            pds.procedure(
                "com.atproto.server.deactivateAccount",
                serde_json::json!({}),
            )
            .await
            .map(drop)
        }
    })?;
    println!(
        "The account is {}.",
        if active { "active" } else { "deactivated" }
    );
    Ok(())
}

#[cfg(not(target_arch = "wasm32"))]
fn plc_token(account: &AccountArgs) -> Result<(), String> {
    let password = account_password()?;
    let issued = signed_in(account, &password, async |pds| {
        let input = serde_json::json!({ "password": password });
        pds.procedure("dev.rustpds.identity.getPlcOperationToken", input)
            .await
    })?;
    let token = issued["token"]
        .as_str()
        .ok_or("getPlcOperationToken answered no token")?;
    println!("{token}");
    eprintln!(
        "Valid until {}, once; a new token replaces it.",
        issued["expiresAt"]
            .as_str()
            .unwrap_or("15 minutes from now")
    );
    Ok(())
}

#[cfg(not(target_arch = "wasm32"))]
fn status(account: &AccountArgs, relays: &[String]) -> Result<(), String> {
    use pds::cli::status::Level;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let found = runtime.block_on(pds::cli::status::status(
        &account.url,
        &account.identifier,
        relays,
    ));
    for finding in &found {
        println!("{}", finding.render());
    }
    let problems = found.iter().filter(|f| f.level == Level::Problem).count();
    if problems == 0 {
        println!("All is well.");
        Ok(())
    } else {
        eprintln!("pds status: {problems} problem(s)");
        std::process::exit(1)
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn export(account: &AccountArgs, dir: &std::path::Path) -> Result<(), String> {
    let done = signed_in(account, &account_password()?, async |pds| {
        pds::cli::backup::export(pds, &account.identifier, dir).await
    })?;
    println!(
        "Exported to {}: {} records (repository {}), {} blobs fetched, {} already there.",
        dir.display(),
        done.records,
        if done.repo { "written" } else { "unchanged" },
        done.blobs,
        done.blobs_kept
    );
    Ok(())
}

#[cfg(not(target_arch = "wasm32"))]
fn import_backup(account: &AccountArgs, dir: &std::path::Path) -> Result<(), String> {
    let done = signed_in(account, &account_password()?, async |pds| {
        pds::cli::backup::restore(pds, dir).await
    })?;
    println!(
        "Restored from {}: {} records, {} blobs; the account is active.",
        dir.display(),
        done.records,
        done.blobs
    );
    Ok(())
}

#[cfg(not(target_arch = "wasm32"))]
fn set_handle(account: &AccountArgs, handle: &str) -> Result<(), String> {
    signed_in(account, &account_password()?, async |pds| {
        pds.procedure(
            "com.atproto.identity.updateHandle",
            serde_json::json!({ "handle": handle }),
        )
        .await
        .map(drop)
    })?;
    println!("The handle is now {handle}.");
    Ok(())
}

/// A yes/no flag pair as an answer given in advance (`None`: ask).
#[cfg(not(target_arch = "wasm32"))]
fn answer_of(yes: bool, no: bool) -> Option<bool> {
    match (yes, no) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    }
}

/// A secret from the environment variable `var`, if it is set.
#[cfg(not(target_arch = "wasm32"))]
fn env_secret(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|p| !p.is_empty())
}

/// `pds init`'s flags.
#[cfg(not(target_arch = "wasm32"))]
#[derive(Args)]
struct InitArgs {
    /// The PDS's public hostname, e.g. pds.example.com.
    #[arg(long)]
    hostname: Option<String>,
    /// The account's handle (default: the hostname).
    #[arg(long)]
    handle: Option<String>,
    /// A new did:plc account, registered with the PLC directory, instead of a did:web one.
    #[arg(long, conflicts_with = "migrate")]
    plc: bool,
    /// Your own rotation key (a did:key) for the new did:plc, ranked above this PDS's.
    #[arg(long, requires = "plc")]
    recovery_key: Option<String>,
    /// The did:plc of an existing account that will move here (`pds migrate`).
    #[arg(long, value_name = "DID")]
    migrate: Option<String>,
    /// The PLC directory.
    #[arg(long, env = "PDS_PLC_URL", default_value = "https://plc.directory")]
    plc_url: String,
    /// Writes the secrets to .dev.vars (a local deployment) instead of Cloudflare.
    #[arg(long)]
    local: bool,
    /// Asks nothing: every answer comes from the flags.
    #[arg(long)]
    yes: bool,
    /// Replaces an existing deployment's keys: its repository would no longer verify
    /// against its DID document.
    #[arg(long)]
    force: bool,
    /// Writes a backup of the keys and secrets to this file (readable by you only).
    #[arg(long)]
    key_backup: Option<std::path::PathBuf>,
    /// Makes wrangler.deploy.toml again from the current wrangler.toml (after a `git
    /// pull`), keeping its values; touches nothing else.
    #[arg(long)]
    refresh: bool,
}

#[cfg(not(target_arch = "wasm32"))]
fn init(args: InitArgs) -> Result<(), String> {
    use pds::cli::init::{self, AccountKind};
    use pds::cli::migrate::Ask;
    let dir = std::env::current_dir().map_err(|e| e.to_string())?;
    if !dir.join("wrangler.toml").exists() {
        return Err("run pds init in the project's directory (where wrangler.toml is)".into());
    }
    if args.refresh {
        let vars = init::deploy_vars(&dir)?;
        let path = init::write_deploy_config(&dir, &vars)?;
        println!("{} made again from wrangler.toml.", path.display());
        return Ok(());
    }
    let ask = Terminal;
    let answer =
        |given: Option<String>, question: &str, flag: &str, default: Option<&str>| match given
            .filter(|v| !v.trim().is_empty())
        {
            Some(v) => Ok(v),
            None if args.yes => default
                .map(str::to_owned)
                .ok_or_else(|| format!("--yes needs {flag}")),
            None => {
                let prompt = match default {
                    Some(d) => format!("{question} [{d}]: "),
                    None => format!("{question}: "),
                };
                let line = ask.line(&prompt)?;
                match (line.is_empty(), default) {
                    (true, Some(d)) => Ok(d.to_owned()),
                    (true, None) => Err(format!("{question} is needed")),
                    (false, _) => Ok(line),
                }
            }
        };
    let hostname = answer(
        args.hostname.clone(),
        "The PDS's hostname (e.g. pds.example.com)",
        "--hostname",
        None,
    )?;
    let handle = answer(
        args.handle.clone(),
        "The account's handle",
        "--handle",
        Some(&hostname),
    )?;
    let kind = match (args.plc, args.migrate.clone()) {
        (true, _) => AccountKind::Plc {
            recovery_key: args.recovery_key.clone(),
        },
        (false, Some(did)) => AccountKind::Migrate { did },
        (false, None) if args.yes => AccountKind::Web,
        (false, None) => {
            let choice = ask.line(&format!(
                "The account: 1) a new did:web of {hostname}, 2) a new did:plc, \
                 3) an existing account moving here [1]: "
            ))?;
            match choice.as_str() {
                "" | "1" => AccountKind::Web,
                "2" => {
                    let key = ask.line("Your own recovery key (a did:key), if any: ")?;
                    AccountKind::Plc {
                        recovery_key: (!key.is_empty()).then_some(key),
                    }
                }
                "3" => AccountKind::Migrate {
                    did: ask.line("Its DID (did:plc:...): ")?,
                },
                other => return Err(format!("no choice {other:?}")),
            }
        }
    };
    let opts = init::InitOptions {
        dir: dir.clone(),
        local: args.local,
        force: args.force,
        hostname,
        handle,
        kind,
        plc_url: args.plc_url.clone(),
    };
    if let Some(existing) = init::existing_deployment(&opts) {
        if !opts.force {
            return Err(format!(
                "{} holds a deployment already: pds init would replace its keys, and the \
                 account's repository would no longer verify against its DID document. Use \
                 --force only if you mean that (or --refresh to remake the configuration).",
                existing.display()
            ));
        }
        eprintln!(
            "pds init: WARNING: replacing the deployment in {} (--force): new keys.",
            existing.display()
        );
    }
    let (password, generated) = match std::env::var("PDS_PASSWORD").ok().filter(|p| !p.is_empty()) {
        Some(p) => (p, false),
        None if args.yes => (pds::dev_account::random_password()?, true),
        None => {
            let first = ask_password("Account password (empty: generate one): ")?;
            if first.is_empty() {
                (pds::dev_account::random_password()?, true)
            } else if ask_password("Again: ")? != first {
                return Err("the two passwords differ".into());
            } else {
                (first, false)
            }
        }
    };
    let deployment = init::prepare(&opts, &password)?;
    if let Some(genesis) = &deployment.genesis {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(init::submit_genesis(
            &opts.plc_url,
            &deployment.did,
            genesis,
        ))?;
        eprintln!(
            "pds init: {} registered with {}",
            deployment.did, opts.plc_url
        );
    }
    let config = init::write_deploy_config(&dir, &deployment.vars)?;
    eprintln!("pds init: wrote {}", config.display());
    if opts.local {
        let path = init::write_local_secrets(&dir, &deployment.secrets)?;
        eprintln!("pds init: wrote the secrets to {}", path.display());
    } else if let Err(e) = init::put_secrets_with_wrangler(&dir, &deployment.secrets) {
        // Nothing is lost: the secrets wait in a private file for the first deploy.
        let path = init::write_pending_secrets(&dir, &deployment.secrets)?;
        eprintln!(
            "pds init: {e}\npds init: the secrets wait in {} (readable by you only): deploy with \
             `npx wrangler deploy --config {} --secrets-file {}`, then delete that file",
            path.display(),
            init::DEPLOY_CONFIG,
            init::PENDING_SECRETS
        );
    } else {
        eprintln!("pds init: the secrets are stored with Cloudflare");
    }
    match &args.key_backup {
        Some(path) => {
            init::write_key_backup(path, &deployment)?;
            eprintln!(
                "pds init: key backup written to {} (keep it safe, offline)",
                path.display()
            );
        }
        None if !args.yes
            && ask.confirm("Show the keys once now, to keep a copy somewhere safe? [y/N] ")? =>
        {
            for (name, value) in &deployment.secrets {
                println!("{name}={value}");
            }
        }
        None => {}
    }
    if generated {
        println!("Account password: {password}   <- shown once; only its hash is stored");
    }
    println!("{}", init::next_steps(&opts, &deployment));
    Ok(())
}

/// Prompts on the terminal: secrets without echo, lines and answers from standard input.
#[cfg(not(target_arch = "wasm32"))]
struct Terminal;

#[cfg(not(target_arch = "wasm32"))]
impl pds::cli::migrate::Ask for Terminal {
    fn secret(&self, prompt: &str) -> Result<String, String> {
        ask_password(prompt)
    }

    fn line(&self, prompt: &str) -> Result<String, String> {
        use std::io::Write;
        eprint!("{prompt}");
        std::io::stderr().flush().map_err(|e| e.to_string())?;
        let mut line = String::new();
        match std::io::stdin().read_line(&mut line) {
            Ok(0) => Err("no answer (standard input ended)".into()),
            Ok(_) => Ok(line.trim().to_owned()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn confirm(&self, prompt: &str) -> Result<bool, String> {
        let answer = self.line(prompt)?;
        Ok(matches!(answer.to_ascii_lowercase().as_str(), "y" | "yes"))
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn migrate(opts: pds::cli::migrate::MigrateOptions) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let started = std::time::Instant::now();
    let moved = runtime.block_on(pds::cli::migrate::migrate(&opts, &Terminal))?;
    if !opts.dry_run {
        println!(
            "Migrated in {:.1} s: {} records ({:.1} MiB of repository), {} blobs ({:.1} MiB) \
             transferred by this run.",
            started.elapsed().as_secs_f64(),
            moved.records,
            moved.repo_bytes as f64 / 1048576.0,
            moved.blobs,
            moved.blob_bytes as f64 / 1048576.0
        );
    }
    Ok(())
}

#[cfg(target_arch = "wasm32")]
fn main() {}
