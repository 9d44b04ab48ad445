//! `pds`: the command line of the PDS.
//!
//! - `pds serve [ADDR]`: the native server on ADDR (default 127.0.0.1:2583), configured from the
//!   environment with the same variables as the Worker (see README); the repository and blobs
//!   live in `PDS_DATA_DIR` (default `./pds-data`).
//! - `pds dev-init [--port N] [--out FILE]`: writes a fresh local development account to FILE
//!   (default `.dev.vars`) unless it exists. `PDS_DEV_HANDLE` and `PDS_DEV_PASSWORD` preset the
//!   handle and password; otherwise the password is random and printed once.
//! - `pds hash-password`: reads a password from standard input, prints its argon2id PHC string
//!   (for the `PDS_PASSWORD_HASH` secret).
//! - `pds change-password [--url URL] [--identifier HANDLE_OR_DID]`: changes the account
//!   password on a running PDS (`PDS_URL` and `PDS_IDENTIFIER` give the same values), ending
//!   every session. The current and new passwords come from `PDS_PASSWORD` and
//!   `PDS_NEW_PASSWORD` or from prompts, never from arguments (other users can read those).

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("serve") => serve(args.get(1).map(String::as_str)),
        Some("dev-init") => dev_init(&args[1..]),
        Some("hash-password") => hash_password(),
        Some("change-password") => change_password(&args[1..]),
        _ => Err(
            "usage: pds serve [ADDR] | pds dev-init [--port N] [--out FILE] \
                  | pds hash-password | pds change-password [--url URL] [--identifier ID]"
                .into(),
        ),
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
fn serve(addr: Option<&str>) -> Result<(), String> {
    let addr = addr.unwrap_or("127.0.0.1:2583");
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
fn dev_init(args: &[String]) -> Result<(), String> {
    let mut port: u16 = 2583;
    let mut out = std::path::PathBuf::from(".dev.vars");
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let value = it.next().ok_or_else(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--port" => port = value.parse().map_err(|_| format!("bad port {value:?}"))?,
            "--out" => out = value.into(),
            _ => return Err(format!("unknown option {arg}")),
        }
    }
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
    std::fs::write(&out, account.to_dotenv())
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

/// The value of `--name` in `args`, else of the environment variable `var`.
#[cfg(not(target_arch = "wasm32"))]
fn option_or_env(args: &[String], name: &str, var: &str) -> Result<String, String> {
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == name {
            return it
                .next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"));
        }
    }
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("give {name} or set {var}"))
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

#[cfg(not(target_arch = "wasm32"))]
fn change_password(args: &[String]) -> Result<(), String> {
    for (i, arg) in args.iter().enumerate() {
        let is_value = i % 2 == 1;
        if !is_value && arg != "--url" && arg != "--identifier" {
            return Err(format!("unknown option {arg}"));
        }
    }
    let url = option_or_env(args, "--url", "PDS_URL")?;
    let identifier = option_or_env(args, "--identifier", "PDS_IDENTIFIER")?;
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
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let pds = pds::cli::Pds::new(&url)?;
        pds.sign_in(&identifier, &current).await?;
        pds.procedure(
            "dev.rustpds.server.changePassword",
            serde_json::json!({ "currentPassword": current, "newPassword": new }),
        )
        .await
    })?;
    println!("Password changed. Every session has ended: sign in again with the new password.");
    Ok(())
}

#[cfg(target_arch = "wasm32")]
fn main() {}
