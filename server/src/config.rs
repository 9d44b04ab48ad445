//! Deployment configuration: read from the platform's variables (wrangler vars and secrets on
//! Workers, the environment natively). Every problem names its variable; nothing panics.

use std::fmt;

use pds_api::runtime::syntax::{Did, Handle};

use crate::crypto::{KeyAlgorithm, SigningKey};

/// Variable names, documented in the README.
pub mod vars {
    /// The public hostname this PDS answers on, e.g. `pds.example.com` (a port is allowed locally).
    pub const HOSTNAME: &str = "PDS_HOSTNAME";
    /// The account's DID (`did:plc:...` or `did:web:...`).
    pub const DID: &str = "PDS_DID";
    /// The account's handle, e.g. `alice.example.com`.
    pub const HANDLE: &str = "PDS_HANDLE";
    /// Secret: the repository signing key, secp256k1, 32 bytes as hex.
    pub const SIGNING_KEY: &str = "PDS_SIGNING_KEY";
    /// Secret: the PLC rotation key, secp256k1, 32 bytes as hex: signs the did:plc operations of
    /// the account (never commits or tokens). Optional for a did:web account.
    pub const PLC_ROTATION_KEY: &str = "PDS_PLC_ROTATION_KEY";
    /// Secret: the account password as an argon2id PHC string (`pds hash-password` makes one).
    pub const PASSWORD_HASH: &str = "PDS_PASSWORD_HASH";
    /// Secret: at least 32 random bytes as hex, keying the session tokens.
    pub const JWT_SECRET: &str = "PDS_JWT_SECRET";
    /// Optional: the largest blob uploadBlob accepts, in bytes (default 100 MiB, room for video).
    pub const BLOB_UPLOAD_LIMIT: &str = "PDS_BLOB_UPLOAD_LIMIT";
    /// Optional: how long firehose events are kept, in seconds (default 7 days, at least 1 hour).
    pub const EVENT_RETENTION_SECONDS: &str = "PDS_EVENT_RETENTION_SECONDS";
    /// Optional: keep at most this many newest firehose events (at least 1000; unset: no cap).
    pub const EVENT_RETENTION_COUNT: &str = "PDS_EVENT_RETENTION_COUNT";
    /// Optional: relays to ask to crawl this PDS, comma-separated hostnames or https URLs.
    pub const RELAYS: &str = "PDS_RELAYS";
    /// Optional: after a crawl request, commits within this many seconds send none (default 1200).
    pub const CRAWL_QUIET_SECONDS: &str = "PDS_CRAWL_QUIET_SECONDS";
    /// Optional: how often background maintenance checks the handle, the DID document and the
    /// relays for the status page, in seconds (default 3600; 0: never).
    pub const STATUS_CHECK_SECONDS: &str = "PDS_STATUS_CHECK_SECONDS";
    /// Optional: the PLC directory that resolves did:plc (default `https://plc.directory`).
    pub const PLC_URL: &str = "PDS_PLC_URL";
    /// Optional: the DNS-over-HTTPS JSON endpoint for handle TXT records
    /// (default `https://cloudflare-dns.com/dns-query`).
    pub const DOH_URL: &str = "PDS_DOH_URL";
    /// Optional: the AppView that answers `app.bsky.*` reads (default `https://api.bsky.app`).
    pub const APPVIEW_URL: &str = "PDS_APPVIEW_URL";
    /// Optional: the AppView's DID, the audience of its service tokens
    /// (default `did:web:api.bsky.app`).
    pub const APPVIEW_DID: &str = "PDS_APPVIEW_DID";
    /// Optional: the chat service for `chat.bsky.*` (default `https://api.bsky.chat`).
    pub const CHAT_URL: &str = "PDS_CHAT_URL";
    /// Optional: the chat service's DID (default `did:web:api.bsky.chat`).
    pub const CHAT_DID: &str = "PDS_CHAT_DID";
    /// Optional: the moderation service that receives reports (default `https://mod.bsky.app`).
    pub const REPORT_SERVICE_URL: &str = "PDS_REPORT_SERVICE_URL";
    /// Optional: the moderation service's DID (default `did:plc:ar7c4by46qjdydhdevvrndac`).
    pub const REPORT_SERVICE_DID: &str = "PDS_REPORT_SERVICE_DID";
    /// Optional: where the account's images are shown from in patched AppView answers
    /// (read-after-write): a URL with three `%s`, filled with the kind (`avatar`, `banner`,
    /// `feed_thumbnail`, `feed_fullsize`), the DID and the blob CID, e.g.
    /// `https://cdn.bsky.app/img/%s/plain/%s/%s@jpeg` (default: the blob from this PDS).
    pub const APPVIEW_CDN_URL_PATTERN: &str = "PDS_APPVIEW_CDN_URL_PATTERN";
    /// Optional: how long a proxied call may take, in seconds (default 30).
    pub const PROXY_TIMEOUT_SECONDS: &str = "PDS_PROXY_TIMEOUT_SECONDS";
    /// Optional: how long a signed-in session lasts at most, however often it is refreshed,
    /// in days (default 365).
    pub const SESSION_LIFETIME_DAYS: &str = "PDS_SESSION_LIFETIME_DAYS";
    /// Optional: OAuth clients whose declared name and logo the sign-in page shows as their own,
    /// comma-separated `https://` client_ids (default none: every app is named by its host).
    pub const OAUTH_TRUSTED_CLIENTS: &str = "PDS_OAUTH_TRUSTED_CLIENTS";
    /// Optional: repository write points per hour (a create costs 3, an update 2, a delete 1;
    /// default 5000, as the reference).
    pub const WRITE_POINTS_PER_HOUR: &str = "PDS_WRITE_POINTS_PER_HOUR";
    /// Optional: repository write points per day (default 35000, as the reference).
    pub const WRITE_POINTS_PER_DAY: &str = "PDS_WRITE_POINTS_PER_DAY";
    /// Optional: how long a blob no record references is still served and kept, in seconds
    /// (default 86400: an upload not yet used, a record just deleted).
    pub const BLOB_GRACE_SECONDS: &str = "PDS_BLOB_GRACE_SECONDS";
    /// Optional: bytes the account may upload per day (default 10 GiB, as Bluesky's video
    /// service allows a day); not counted while the account is deactivated.
    pub const UPLOAD_BYTES_PER_DAY: &str = "PDS_UPLOAD_BYTES_PER_DAY";
    /// Optional: how long the Worker keeps a public read by CID (getBlob, sync.getBlocks) in
    /// Cloudflare's cache, in seconds (default 300; 0: no cache). Also the longest such a read
    /// is still served after its blob is collected or the account deactivated.
    pub const EDGE_CACHE_SECONDS: &str = "PDS_EDGE_CACHE_SECONDS";
    /// Optional: firehose subscribers at once (default 100).
    pub const FIREHOSE_MAX_SUBSCRIBERS: &str = "PDS_FIREHOSE_MAX_SUBSCRIBERS";
    /// Optional: firehose subscribers at once from one client address (default 10).
    pub const FIREHOSE_MAX_SUBSCRIBERS_PER_ADDRESS: &str =
        "PDS_FIREHOSE_MAX_SUBSCRIBERS_PER_ADDRESS";
}

/// How many repository write points the account may spend (see [`vars::WRITE_POINTS_PER_HOUR`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteLimits {
    /// Per hour.
    pub points_per_hour: u32,
    /// Per day.
    pub points_per_day: u32,
}

impl Default for WriteLimits {
    fn default() -> Self {
        WriteLimits {
            points_per_hour: 5000,
            points_per_day: 35000,
        }
    }
}

/// How many firehose subscribers are served at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirehoseLimits {
    /// In total.
    pub subscribers: u64,
    /// From one client address (an IPv6 address counted by its /64).
    pub subscribers_per_address: u64,
}

impl Default for FirehoseLimits {
    fn default() -> Self {
        FirehoseLimits {
            subscribers: 100,
            subscribers_per_address: 10,
        }
    }
}

/// The default of `PDS_SESSION_LIFETIME_DAYS`.
pub const DEFAULT_SESSION_LIFETIME_DAYS: u64 = 365;

/// How long an unreferenced blob is kept when `PDS_BLOB_GRACE_SECONDS` is not set: a day.
pub const DEFAULT_BLOB_GRACE_SECONDS: u64 = 24 * 60 * 60;
/// How long reads by CID stay in the Worker's cache when `PDS_EDGE_CACHE_SECONDS` is not set.
pub const DEFAULT_EDGE_CACHE_SECONDS: u64 = 300;
/// The daily upload quota when `PDS_UPLOAD_BYTES_PER_DAY` is not set: 10 GiB.
pub const DEFAULT_UPLOAD_BYTES_PER_DAY: u64 = 10 * 1024 * 1024 * 1024;

/// The upload limit when `PDS_BLOB_UPLOAD_LIMIT` is not set: 100 MiB, as Bluesky's videos need.
pub const DEFAULT_BLOB_UPLOAD_LIMIT: u64 = 100 * 1024 * 1024;

/// The default of `PDS_EVENT_RETENTION_SECONDS`: 7 days.
pub const DEFAULT_EVENT_RETENTION_SECONDS: u64 = 7 * 24 * 3600;
/// The shortest retention accepted: subscribers reconnecting after a short outage must be able
/// to resume.
pub const MIN_EVENT_RETENTION_SECONDS: u64 = 3600;
/// The smallest count cap accepted for `PDS_EVENT_RETENTION_COUNT`.
pub const MIN_EVENT_RETENTION_COUNT: u64 = 1000;
/// The default of `PDS_CRAWL_QUIET_SECONDS`: the reference PDS's 20-minute crawl threshold.
pub const DEFAULT_CRAWL_QUIET_SECONDS: u64 = 1200;
/// The default of `PDS_STATUS_CHECK_SECONDS`: hourly.
pub const DEFAULT_STATUS_CHECK_SECONDS: u64 = 3600;

/// The default of `PDS_PLC_URL`.
pub const DEFAULT_PLC_URL: &str = "https://plc.directory";
/// The default of `PDS_DOH_URL`: Cloudflare's DNS-over-HTTPS JSON API.
pub const DEFAULT_DOH_URL: &str = "https://cloudflare-dns.com/dns-query";

/// The services identity resolution asks (optional variables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// The PLC directory's base URL, without a trailing slash.
    pub plc_url: String,
    /// The DNS-over-HTTPS endpoint (JSON API, `application/dns-json`).
    pub doh_url: String,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            plc_url: DEFAULT_PLC_URL.to_owned(),
            doh_url: DEFAULT_DOH_URL.to_owned(),
        }
    }
}

/// A service this PDS forwards calls to: where it answers, and the DID its tokens are for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRef {
    /// Base URL, without a trailing slash.
    pub url: String,
    /// The service's DID: the `aud` of the tokens minted for it.
    pub did: String,
}

/// The services calls are proxied to when no `atproto-proxy` header names one (all optional
/// variables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// `app.bsky.*` and anything else without a more specific service.
    pub appview: ServiceRef,
    /// `chat.bsky.*`.
    pub chat: ServiceRef,
    /// `com.atproto.moderation.createReport`.
    pub report: ServiceRef,
    /// The time limit of one proxied exchange, whole body included, in seconds.
    pub timeout_seconds: u64,
    /// Image URLs in patched answers: `%s` three times (kind, DID, CID); `None`: this PDS's blobs.
    pub cdn_url_pattern: Option<String>,
}

/// The default of `PDS_PROXY_TIMEOUT_SECONDS`.
pub const DEFAULT_PROXY_TIMEOUT_SECONDS: u64 = 30;

impl Default for ProxyConfig {
    fn default() -> Self {
        let service = |url: &str, did: &str| ServiceRef {
            url: url.to_owned(),
            did: did.to_owned(),
        };
        ProxyConfig {
            appview: service("https://api.bsky.app", "did:web:api.bsky.app"),
            chat: service("https://api.bsky.chat", "did:web:api.bsky.chat"),
            report: service("https://mod.bsky.app", "did:plc:ar7c4by46qjdydhdevvrndac"),
            timeout_seconds: DEFAULT_PROXY_TIMEOUT_SECONDS,
            cdn_url_pattern: None,
        }
    }
}

/// Firehose retention and relay notification (all optional variables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenanceConfig {
    /// Events older than this many seconds are pruned.
    pub event_retention_seconds: u64,
    /// At most this many newest events are kept (`None`: no count cap).
    pub event_retention_count: Option<u64>,
    /// Base URLs of the relays to notify (`https://host`, or `http://...` when so given), without
    /// a trailing slash.
    pub relays: Vec<String>,
    /// After a crawl request, further commits send none for this many seconds.
    pub crawl_quiet_seconds: u64,
    /// How often the status page's checks run, in seconds (0: never).
    pub status_check_seconds: u64,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        MaintenanceConfig {
            event_retention_seconds: DEFAULT_EVENT_RETENTION_SECONDS,
            event_retention_count: None,
            relays: Vec::new(),
            crawl_quiet_seconds: DEFAULT_CRAWL_QUIET_SECONDS,
            status_check_seconds: DEFAULT_STATUS_CHECK_SECONDS,
        }
    }
}

/// What one deployment is configured with.
#[derive(Clone)]
pub struct Config {
    /// The public hostname (no scheme, no path).
    pub hostname: String,
    /// The one account this PDS hosts.
    pub did: Did,
    pub handle: Handle,
    /// The key that signs the repository's commits.
    pub signing_key: SigningKey,
    /// The key that signs the account's PLC operations, if the deployment has one.
    pub plc_rotation_key: Option<SigningKey>,
    /// argon2id PHC string of the account password.
    pub password_hash: String,
    /// Key material for session tokens.
    pub jwt_secret: Vec<u8>,
    /// The largest blob uploadBlob accepts, in bytes.
    pub blob_upload_limit: u64,
    /// How long a blob no record references is still served and kept, in seconds.
    pub blob_grace_seconds: u64,
    /// Bytes the account may upload per day.
    pub upload_bytes_per_day: u64,
    /// How long the Worker caches a public read by CID, in seconds (0: not at all).
    pub edge_cache_seconds: u64,
    /// The longest a legacy session lasts from sign-in, refreshes included, in days.
    pub session_lifetime_days: u64,
    /// Caps on firehose subscribers.
    pub firehose: FirehoseLimits,
    /// The account's repository write budget.
    pub writes: WriteLimits,
    /// Firehose retention and relay notification.
    pub maintenance: MaintenanceConfig,
    /// The PLC directory and DNS-over-HTTPS endpoint.
    pub network: NetworkConfig,
    /// The AppView, chat and moderation services calls are proxied to.
    pub proxy: ProxyConfig,
    /// OAuth client_ids whose declared name and logo the sign-in page shows as their own.
    pub oauth_trusted_clients: Vec<String>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secrets are never printed.
        f.debug_struct("Config")
            .field("hostname", &self.hostname)
            .field("did", &self.did.as_str())
            .field("handle", &self.handle.as_str())
            .finish_non_exhaustive()
    }
}

/// A configuration problem, naming the variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "configuration variable {} {}",
            self.variable, self.problem
        )
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads the configuration through `lookup(name) -> value`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |variable: &'static str| -> Result<String, ConfigError> {
            match lookup(variable) {
                Some(v) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
                _ => Err(ConfigError {
                    variable,
                    problem: "is not set".into(),
                }),
            }
        };
        let bad = |variable: &'static str, problem: String| ConfigError { variable, problem };

        let hostname = get(vars::HOSTNAME)?;
        if !is_hostname(&hostname) {
            return Err(bad(
                vars::HOSTNAME,
                format!("is not a hostname (like pds.example.com): {hostname:?}"),
            ));
        }
        let did =
            Did::new(get(vars::DID)?).map_err(|e| bad(vars::DID, format!("is not a DID: {e}")))?;
        if !matches!(did.method(), "plc" | "web") {
            return Err(bad(
                vars::DID,
                format!("must be a did:plc or did:web, not did:{}", did.method()),
            ));
        }
        let handle = Handle::new(get(vars::HANDLE)?)
            .map_err(|e| bad(vars::HANDLE, format!("is not a handle: {e}")))?;
        let signing_key = SigningKey::from_hex(KeyAlgorithm::K256, &get(vars::SIGNING_KEY)?)
            .map_err(|e| {
                bad(
                    vars::SIGNING_KEY,
                    format!("is not a secp256k1 private key in hex: {e}"),
                )
            })?;
        let plc_rotation_key = match lookup(vars::PLC_ROTATION_KEY) {
            Some(hex) if !hex.trim().is_empty() => Some(
                SigningKey::from_hex(KeyAlgorithm::K256, hex.trim()).map_err(|e| {
                    bad(
                        vars::PLC_ROTATION_KEY,
                        format!("is not a secp256k1 private key in hex: {e}"),
                    )
                })?,
            ),
            _ => None,
        };
        if plc_rotation_key
            .as_ref()
            .is_some_and(|k| k.to_bytes() == signing_key.to_bytes())
        {
            // The repository key signs every commit and token; identity control stays apart.
            return Err(bad(
                vars::PLC_ROTATION_KEY,
                format!("must differ from {}", vars::SIGNING_KEY),
            ));
        }
        let password_hash = get(vars::PASSWORD_HASH)?;
        if !password_hash.starts_with("$argon2id$") {
            return Err(bad(
                vars::PASSWORD_HASH,
                "must be an argon2id PHC string ($argon2id$...)".into(),
            ));
        }
        crate::password::check_cost(&password_hash).map_err(|e| bad(vars::PASSWORD_HASH, e))?;
        let jwt_secret = crate::hex::decode(&get(vars::JWT_SECRET)?)
            .filter(|b| b.len() >= 32)
            .ok_or_else(|| bad(vars::JWT_SECRET, "must be at least 32 bytes as hex".into()))?;
        let blob_upload_limit = optional_number(&lookup, vars::BLOB_UPLOAD_LIMIT, 1, "bytes")?
            .unwrap_or(DEFAULT_BLOB_UPLOAD_LIMIT);
        let blob_grace_seconds = optional_number(&lookup, vars::BLOB_GRACE_SECONDS, 1, "seconds")?
            .unwrap_or(DEFAULT_BLOB_GRACE_SECONDS);
        let upload_bytes_per_day =
            optional_number(&lookup, vars::UPLOAD_BYTES_PER_DAY, 1, "bytes")?
                .unwrap_or(DEFAULT_UPLOAD_BYTES_PER_DAY);
        let edge_cache_seconds = optional_number(&lookup, vars::EDGE_CACHE_SECONDS, 0, "seconds")?
            .unwrap_or(DEFAULT_EDGE_CACHE_SECONDS);
        let session_lifetime_days =
            optional_number(&lookup, vars::SESSION_LIFETIME_DAYS, 1, "days")?
                .unwrap_or(DEFAULT_SESSION_LIFETIME_DAYS);
        let maintenance = read_maintenance(&lookup)?;
        let defaults = FirehoseLimits::default();
        let firehose = FirehoseLimits {
            subscribers: optional_number(
                &lookup,
                vars::FIREHOSE_MAX_SUBSCRIBERS,
                1,
                "subscribers",
            )?
            .unwrap_or(defaults.subscribers),
            subscribers_per_address: optional_number(
                &lookup,
                vars::FIREHOSE_MAX_SUBSCRIBERS_PER_ADDRESS,
                1,
                "subscribers",
            )?
            .unwrap_or(defaults.subscribers_per_address),
        };
        let write_defaults = WriteLimits::default();
        let points = |variable, default: u32| -> Result<u32, ConfigError> {
            Ok(optional_number(&lookup, variable, 1, "points")?
                .map_or(default, |n| u32::try_from(n).unwrap_or(u32::MAX)))
        };
        let writes = WriteLimits {
            points_per_hour: points(vars::WRITE_POINTS_PER_HOUR, write_defaults.points_per_hour)?,
            points_per_day: points(vars::WRITE_POINTS_PER_DAY, write_defaults.points_per_day)?,
        };
        let network = NetworkConfig {
            plc_url: optional_url(&lookup, vars::PLC_URL)?
                .unwrap_or_else(|| DEFAULT_PLC_URL.into()),
            doh_url: optional_url(&lookup, vars::DOH_URL)?
                .unwrap_or_else(|| DEFAULT_DOH_URL.into()),
        };
        let proxy = read_proxy(&lookup)?;
        let oauth_trusted_clients = read_trusted_clients(&lookup)?;
        Ok(Config {
            oauth_trusted_clients,
            maintenance,
            network,
            proxy,
            hostname,
            did,
            handle,
            signing_key,
            plc_rotation_key,
            password_hash,
            jwt_secret,
            blob_upload_limit,
            blob_grace_seconds,
            upload_bytes_per_day,
            edge_cache_seconds,
            session_lifetime_days,
            firehose,
            writes,
        })
    }

    /// [`Config::blob_grace_seconds`] in milliseconds.
    pub fn blob_grace_ms(&self) -> i64 {
        i64::try_from(self.blob_grace_seconds)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000)
    }

    /// The server's own DID: `did:web` of its hostname (a port is percent-encoded).
    pub fn service_did(&self) -> String {
        format!("did:web:{}", self.hostname.replace(':', "%3A"))
    }

    /// Whether `subject` (a DID or a handle, as a client wrote it) names the account.
    pub fn names_account(&self, subject: &str) -> bool {
        subject == self.did.as_str() || subject.eq_ignore_ascii_case(self.handle.as_str())
    }

    /// Whether this is a local development deployment (a loopback hostname): only then do
    /// services on loopback and plain http count as services.
    pub fn is_local_development(&self) -> bool {
        let host = self.hostname.split(':').next().unwrap_or("");
        host == "localhost" || host == "127.0.0.1"
    }

    /// The public URL of this PDS. `http` only for loopback development hosts.
    pub fn public_url(&self) -> String {
        let scheme = if self.is_local_development() {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{}", self.hostname)
    }
}

/// An optional whole number: `None` when unset or blank.
fn optional_number(
    lookup: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    min: u64,
    unit: &str,
) -> Result<Option<u64>, ConfigError> {
    let Some(v) = lookup(variable).filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    v.trim()
        .parse::<u64>()
        .ok()
        .filter(|n| *n >= min)
        .map(Some)
        .ok_or_else(|| ConfigError {
            variable,
            problem: format!("must be a whole number of {unit}, at least {min}, not {v:?}"),
        })
}

/// An optional service URL: `https://host[:port][/path]`, or `http://` for local services;
/// no query, fragment or credentials. A trailing slash is dropped. `None` when unset or blank.
fn optional_url(
    lookup: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
) -> Result<Option<String>, ConfigError> {
    let Some(v) = lookup(variable).filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    let v = v.trim();
    let rest = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"));
    let ok = rest.is_some_and(|rest| {
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        is_hostname(host)
            && path
                .bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b'?' | b'#' | b'@'))
    });
    if !ok {
        return Err(ConfigError {
            variable,
            problem: format!("must be an https:// (or local http://) URL without query, not {v:?}"),
        });
    }
    Ok(Some(v.trim_end_matches('/').to_owned()))
}

fn read_trusted_clients(
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<Vec<String>, ConfigError> {
    let Some(list) = lookup(vars::OAUTH_TRUSTED_CLIENTS) else {
        return Ok(Vec::new());
    };
    list.split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(|id| {
            if id.starts_with("https://") && id.len() > 8 && !id.contains(char::is_whitespace) {
                Ok(id.to_owned())
            } else {
                Err(ConfigError {
                    variable: vars::OAUTH_TRUSTED_CLIENTS,
                    problem: format!("must list https:// client_ids, not {id:?}"),
                })
            }
        })
        .collect()
}

fn read_proxy(lookup: &impl Fn(&str) -> Option<String>) -> Result<ProxyConfig, ConfigError> {
    let defaults = ProxyConfig::default();
    let service = |url_var: &'static str,
                   did_var: &'static str,
                   default: ServiceRef|
     -> Result<ServiceRef, ConfigError> {
        let url = optional_url(lookup, url_var)?.unwrap_or(default.url);
        let did = match lookup(did_var).filter(|v| !v.trim().is_empty()) {
            None => default.did,
            Some(v) => Did::new(v.trim())
                .map_err(|e| ConfigError {
                    variable: did_var,
                    problem: format!("is not a DID: {e}"),
                })?
                .as_str()
                .to_owned(),
        };
        Ok(ServiceRef { url, did })
    };
    Ok(ProxyConfig {
        appview: service(vars::APPVIEW_URL, vars::APPVIEW_DID, defaults.appview)?,
        chat: service(vars::CHAT_URL, vars::CHAT_DID, defaults.chat)?,
        report: service(
            vars::REPORT_SERVICE_URL,
            vars::REPORT_SERVICE_DID,
            defaults.report,
        )?,
        timeout_seconds: optional_number(lookup, vars::PROXY_TIMEOUT_SECONDS, 1, "seconds")?
            .unwrap_or(defaults.timeout_seconds),
        cdn_url_pattern: match lookup(vars::APPVIEW_CDN_URL_PATTERN)
            .filter(|v| !v.trim().is_empty())
        {
            None => None,
            Some(v) if v.trim().starts_with("https://") && v.matches("%s").count() == 3 => {
                Some(v.trim().to_owned())
            }
            Some(v) => {
                return Err(ConfigError {
                    variable: vars::APPVIEW_CDN_URL_PATTERN,
                    problem: format!("must be an https:// URL with three %s, not {v:?}"),
                })
            }
        },
    })
}

fn read_maintenance(
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<MaintenanceConfig, ConfigError> {
    let defaults = MaintenanceConfig::default();
    let event_retention_seconds = optional_number(
        lookup,
        vars::EVENT_RETENTION_SECONDS,
        MIN_EVENT_RETENTION_SECONDS,
        "seconds",
    )?
    .unwrap_or(defaults.event_retention_seconds);
    let event_retention_count = optional_number(
        lookup,
        vars::EVENT_RETENTION_COUNT,
        MIN_EVENT_RETENTION_COUNT,
        "events",
    )?;
    let crawl_quiet_seconds = optional_number(lookup, vars::CRAWL_QUIET_SECONDS, 0, "seconds")?
        .unwrap_or(defaults.crawl_quiet_seconds);
    let status_check_seconds = optional_number(lookup, vars::STATUS_CHECK_SECONDS, 0, "seconds")?
        .unwrap_or(defaults.status_check_seconds);
    let relays = lookup(vars::RELAYS)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| {
            relay_url(r).ok_or_else(|| ConfigError {
                variable: vars::RELAYS,
                problem: format!(
                    "must list relay hostnames or https URLs separated by commas, not {r:?}"
                ),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(MaintenanceConfig {
        event_retention_seconds,
        event_retention_count,
        relays,
        crawl_quiet_seconds,
        status_check_seconds,
    })
}

/// A relay's base URL: a bare hostname means https; an explicit `http://` (local relays in
/// tests) or `https://` is kept. No path, query or credentials.
fn relay_url(relay: &str) -> Option<String> {
    let (scheme, rest) = match relay.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => ("https".to_owned(), relay),
    };
    let host = rest.strip_suffix('/').unwrap_or(rest);
    if !matches!(scheme.as_str(), "http" | "https") || !is_hostname(host) {
        return None;
    }
    Some(format!("{scheme}://{host}"))
}

/// Whether `s` is a DNS hostname (LDH labels), with an optional non-zero port.
pub(crate) fn is_hostname(s: &str) -> bool {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
    host_ok && port_ok
}

/// The required variables of a complete configuration, for unit tests.
#[cfg(test)]
pub(crate) fn test_vars() -> Vec<(&'static str, String)> {
    vec![
        (vars::HOSTNAME, "pds.example.com".into()),
        (vars::DID, "did:plc:ewvi7nxzyoun6zhxrhs64oiz".into()),
        (vars::HANDLE, "alice.example.com".into()),
        (
            vars::SIGNING_KEY,
            "9085d2bef69286a6cbb51623c8fa258629945cd55ca705cc4e66700396894e0c".into(),
        ),
        (
            vars::PASSWORD_HASH,
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into(),
        ),
        (vars::JWT_SECRET, "00".repeat(32)),
    ]
}

/// A configuration for unit tests: [`test_vars`], with `extra` added or replacing them.
#[cfg(test)]
pub(crate) fn test_config(extra: &[(&'static str, &str)]) -> Config {
    let mut vars = test_vars();
    vars.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    vars.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    match Config::from_lookup(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    }) {
        Ok(c) => c,
        Err(e) => panic!("test configuration: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(vars: &[(&'static str, String)]) -> Result<Config, ConfigError> {
        Config::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn complete_configuration_reads() {
        let c = read(&test_vars()).unwrap();
        assert_eq!(c.hostname, "pds.example.com");
        assert_eq!(c.service_did(), "did:web:pds.example.com");
        assert_eq!(c.public_url(), "https://pds.example.com");
        assert_eq!(c.handle.as_str(), "alice.example.com");
        assert_eq!(c.blob_upload_limit, DEFAULT_BLOB_UPLOAD_LIMIT);
        assert_eq!(c.maintenance, MaintenanceConfig::default());
        assert_eq!(c.network.plc_url, "https://plc.directory");
        assert_eq!(c.network.doh_url, "https://cloudflare-dns.com/dns-query");
        let mut limited = test_vars();
        limited.push((vars::BLOB_UPLOAD_LIMIT, "5242880".into()));
        assert_eq!(read(&limited).unwrap().blob_upload_limit, 5 * 1024 * 1024);
        assert_eq!(c.session_lifetime_days, DEFAULT_SESSION_LIFETIME_DAYS);
        assert_eq!(c.blob_grace_seconds, DEFAULT_BLOB_GRACE_SECONDS);
        assert_eq!(c.upload_bytes_per_day, DEFAULT_UPLOAD_BYTES_PER_DAY);
        limited.push((vars::SESSION_LIFETIME_DAYS, "30".into()));
        assert_eq!(read(&limited).unwrap().session_lifetime_days, 30);
        assert!(c.oauth_trusted_clients.is_empty());
        limited.push((
            vars::OAUTH_TRUSTED_CLIENTS,
            " https://a.example/c.json, ,https://b.example/m.json ".into(),
        ));
        assert_eq!(
            read(&limited).unwrap().oauth_trusted_clients,
            ["https://a.example/c.json", "https://b.example/m.json"]
        );
    }

    #[test]
    fn every_missing_variable_is_named() {
        for (name, _) in test_vars() {
            let vars: Vec<_> = test_vars()
                .into_iter()
                .filter(|(k, _)| *k != name)
                .collect();
            let err = read(&vars)
                .err()
                .unwrap_or_else(|| panic!("{name} missing was accepted"));
            assert_eq!(err.variable, name);
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn malformed_values_are_named() {
        let cases = [
            (vars::HOSTNAME, "https://pds.example.com/"),
            (
                vars::DID,
                "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme",
            ),
            (vars::DID, "not a did"),
            (vars::HANDLE, "alice"),
            (vars::SIGNING_KEY, "abcd"),
            (vars::PASSWORD_HASH, "hunter2"),
            (vars::JWT_SECRET, "00ff"),
            (vars::BLOB_UPLOAD_LIMIT, "5MB"),
            (vars::BLOB_UPLOAD_LIMIT, "0"),
            (vars::EVENT_RETENTION_SECONDS, "3599"),
            (vars::EVENT_RETENTION_SECONDS, "1w"),
            (vars::EVENT_RETENTION_COUNT, "999"),
            (vars::CRAWL_QUIET_SECONDS, "-1"),
            (vars::RELAYS, "bsky.network,ftp://relay.example"),
            (vars::RELAYS, "https://relay.example/xrpc"),
            (vars::PLC_URL, "plc.directory"),
            (vars::PLC_URL, "https://plc.directory/?x=1"),
            (vars::DOH_URL, "ftp://dns.example/dns-query"),
            (vars::DOH_URL, "https://user@dns.example/dns-query"),
            (vars::OAUTH_TRUSTED_CLIENTS, "http://localhost"),
            (
                vars::OAUTH_TRUSTED_CLIENTS,
                "https://a.example/c.json,app.example",
            ),
        ];
        for (name, value) in cases {
            // The case's value replaces the variable, or is added when it is optional.
            let mut vars: Vec<_> = test_vars()
                .into_iter()
                .filter(|(k, _)| *k != name)
                .collect();
            vars.push((name, value.to_owned()));
            let err = read(&vars)
                .err()
                .unwrap_or_else(|| panic!("{name}={value} was accepted"));
            assert_eq!(err.variable, name, "{value}");
        }
    }

    #[test]
    fn maintenance_variables_read() {
        let mut vars = test_vars();
        vars.push((vars::EVENT_RETENTION_SECONDS, "3600".into()));
        vars.push((vars::EVENT_RETENTION_COUNT, "5000".into()));
        vars.push((vars::CRAWL_QUIET_SECONDS, "0".into()));
        vars.push((vars::STATUS_CHECK_SECONDS, "600".into()));
        vars.push((
            vars::RELAYS,
            " bsky.network, https://relay.example.com/ ,http://127.0.0.1:8080,".into(),
        ));
        let m = read(&vars).unwrap().maintenance;
        assert_eq!(
            m,
            MaintenanceConfig {
                event_retention_seconds: 3600,
                event_retention_count: Some(5000),
                relays: vec![
                    "https://bsky.network".into(),
                    "https://relay.example.com".into(),
                    "http://127.0.0.1:8080".into(),
                ],
                crawl_quiet_seconds: 0,
                status_check_seconds: 600,
            }
        );
    }

    #[test]
    fn network_variables_read() {
        let mut vars = test_vars();
        vars.push((vars::PLC_URL, "http://127.0.0.1:2582/".into()));
        vars.push((vars::DOH_URL, " https://dns.google/resolve ".into()));
        let n = read(&vars).unwrap().network;
        assert_eq!(n.plc_url, "http://127.0.0.1:2582");
        assert_eq!(n.doh_url, "https://dns.google/resolve");
    }

    #[test]
    fn local_hosts_use_http() {
        let mut vars = test_vars();
        vars[0].1 = "localhost:2583".into();
        let c = read(&vars).unwrap();
        assert_eq!(c.public_url(), "http://localhost:2583");
        assert_eq!(c.service_did(), "did:web:localhost%3A2583");
    }
}
