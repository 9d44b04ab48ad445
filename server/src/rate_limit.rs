//! Exact rate limits kept in the account's SQL: fixed windows of `points` per `window`, keyed by
//! what the limit is about (a login's identifier and client address). The account is one
//! single-threaded object, so a read-then-write of a counter is atomic without a transaction.
//!
//! A refused request gets 429 `RateLimitExceeded` with the reference's `RateLimit-*` headers
//! and `Retry-After`; an admitted one gets the `RateLimit-*` headers of its tightest limit.

use std::net::IpAddr;

use pds_api::runtime::xrpc::XrpcError;

use pds_api::com::atproto::server::{create_account, create_session};
use pds_api::dev::rustpds::identity::get_plc_operation_token;
use pds_api::dev::rustpds::server::change_password;

use crate::api::Api;
use crate::auth::Caller;
use crate::http::{HttpRequest, HttpResponse};
use crate::storage::{Sql, SqlExt, SqlValue, StorageError};

/// One limit: at most `points` per `window_secs`, under its own `name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Distinguishes the counters of limits that share a key.
    pub name: &'static str,
    /// Points a window holds.
    pub points: u32,
    /// The window's length, in seconds.
    pub window_secs: u64,
}

/// Logins per identifier and client address: the reference's 30 per 5 minutes and 300 per day.
/// Never per account alone: anyone could then lock the owner out.
pub const LOGIN: [Limit; 2] = [
    Limit {
        name: "login-5m",
        points: 30,
        window_secs: 5 * 60,
    },
    Limit {
        name: "login-day",
        points: 300,
        window_secs: 24 * 60 * 60,
    },
];

/// Admits a call: the limits that come before authentication (the login throttle, so that a
/// refused login hashes no password), the caller's credentials, then the limits of an
/// authenticated caller (the account's write budget, which no one else can spend). `Ok`: the
/// caller, and the limit status whose headers the answer carries; `Err`: the answer.
pub fn admit_call(
    api: &Api<'_>,
    nsid: &str,
    req: &HttpRequest,
) -> Result<(Caller, Option<Status>), HttpResponse> {
    let before = admit(api, nsid, req)?;
    let caller = api
        .authenticate(nsid, &crate::auth::Presented::of(req))
        .map_err(|e| -> HttpResponse { e.into_response().into() })?;
    let status = match before {
        Some(status) => Some(status),
        None => admit_caller(api, nsid, req)?,
    };
    Ok((caller, status))
}

/// Applies the limits a method has before it runs (the login throttle of the methods that
/// check or set a password: `createSession`, `changePassword` and `getPlcOperationToken`,
/// which check the account password, and `createAccount`):
/// `Ok` with the status whose headers the answer carries (none when the method has no limit),
/// or the answer that refuses it. A login is refused here, before any password is hashed.
fn admit(api: &Api<'_>, nsid: &str, req: &HttpRequest) -> Result<Option<Status>, HttpResponse> {
    let fail = |e: XrpcError| -> HttpResponse { e.into_response().into() };
    let subject = match nsid {
        create_session::NSID => {
            // An unreadable body counts under an empty identifier; the dispatcher then
            // refuses it.
            let identifier = crate::data::json::JsonObject::parse(&req.body)
                .and_then(|b| b.str("identifier"))
                .unwrap_or_default();
            api.with_auth(|auth| auth.login_subject(&identifier))
                .map_err(fail)?
        }
        // Each attempt may fetch the DID document and hashes a password.
        create_account::NSID => create_account::NSID.to_owned(),
        // Whoever calls, the password checked is the account's.
        change_password::NSID | get_plc_operation_token::NSID => api
            .with_auth(|auth| auth.login_subject(api.config.did.as_str()))
            .map_err(fail)?,
        _ => return Ok(None),
    };
    let key = format!("{subject}@{}", address_key(req.client_ip));
    let now_ms = api.account.clock.now_millis();
    match consume(api.account.sql.as_ref(), &LOGIN, &key, now_ms, 1) {
        Ok(Ok(status)) => Ok(Some(status)),
        Ok(Err(exceeded)) => Err(exceeded.into_response()),
        Err(e) => Err(fail(e.into())),
    }
}

/// The account's repository writes, however authenticated: by default the reference's
/// per-account 5000 points an hour and 35000 a day, a created record costing 3 points, an
/// updated one 2 and a deleted one 1. Suspended while the account is deactivated (an inbound
/// migration).
pub fn write_limits(config: &crate::config::WriteLimits) -> [Limit; 2] {
    [
        Limit {
            name: "write-hour",
            points: config.points_per_hour,
            window_secs: 60 * 60,
        },
        Limit {
            name: "write-day",
            points: config.points_per_day,
            window_secs: 24 * 60 * 60,
        },
    ]
}

/// The write points a call of `nsid` with `body` costs (none: not a repository write).
fn write_points(nsid: &str, body: &[u8]) -> Option<u32> {
    #[derive(serde::Deserialize)]
    struct Writes {
        writes: Vec<Write>,
    }
    #[derive(serde::Deserialize)]
    struct Write {
        #[serde(rename = "$type", default)]
        kind: String,
    }
    match nsid {
        "com.atproto.repo.createRecord" => Some(3),
        "com.atproto.repo.putRecord" => Some(2),
        "com.atproto.repo.deleteRecord" => Some(1),
        "com.atproto.repo.applyWrites" => {
            // An unreadable body costs one point; the dispatcher refuses it.
            let writes = serde_json::from_slice::<Writes>(body).map_or(Vec::new(), |w| w.writes);
            let points = writes
                .iter()
                .map(|w| match w.kind.rsplit('#').next() {
                    Some("create") => 3u32,
                    Some("update") => 2,
                    _ => 1,
                })
                .fold(0u32, u32::saturating_add);
            Some(points.max(1))
        }
        _ => None,
    }
}

/// Applies the limits an authenticated call has (the account's repository writes), after
/// authentication, so that no one else can spend the owner's budget: like [`admit`].
fn admit_caller(
    api: &Api<'_>,
    nsid: &str,
    req: &HttpRequest,
) -> Result<Option<Status>, HttpResponse> {
    let Some(points) = write_points(nsid, &req.body) else {
        return Ok(None);
    };
    let fail = |e: XrpcError| -> HttpResponse { e.into_response().into() };
    if suspended(api).map_err(fail)? {
        return Ok(None);
    }
    let now_ms = api.account.clock.now_millis();
    let limits = write_limits(&api.config.writes);
    let held = &api.account.held_write_points;
    // Checked now and held, not stored: the points go into storage with the repository commit
    // the call makes, in its transaction ([`store_held_writes_in`]), or after the call when it
    // made none ([`store_held_writes`]). Stored here, they cost every write a transaction and
    // a statement of its own.
    match count_in(
        api.account.sql.as_ref(),
        &limits,
        ACCOUNT_KEY,
        now_ms,
        points,
        Count::Check { held: held.get() },
    ) {
        Ok(Ok(status)) => {
            held.set(held.get().saturating_add(points));
            Ok(Some(status))
        }
        Ok(Err(exceeded)) => Err(exceeded.into_response()),
        Err(e) => Err(fail(e.into())),
    }
}

/// Stores the account's held write points (see [`admit_call`]) in the transaction the caller
/// has open, added to each write limit's counter whatever the limits say now (they were
/// admitted): answers how many, to be released from the hold with [`release_held_writes`]
/// once that transaction committed. One statement, no read: a counter whose window ended
/// starts the next one.
pub fn store_held_writes_in(
    db: &dyn Sql,
    config: &crate::config::Config,
    account: &crate::account::Account,
) -> crate::storage::Result<u32> {
    let held = account.held_write_points.get();
    if held == 0 {
        return Ok(0);
    }
    let now = ms(account.clock.now_millis());
    let [hour, day] = write_limits(&config.writes);
    let counter = |limit: Limit| {
        [
            SqlValue::Text(counter_key(&limit, ACCOUNT_KEY)),
            SqlValue::Integer(i64::from(held)),
            SqlValue::Integer(now.saturating_add(ms(limit.window_secs * 1000))),
        ]
    };
    let mut params = vec![SqlValue::Integer(now)];
    params.extend(counter(hour));
    params.extend(counter(day));
    // ?1 is now; then each limit's key, points and the end of a new window.
    db.execute(
        "INSERT INTO rate_limit (key, used, window_end_ms) VALUES (?2, ?3, ?4), (?5, ?6, ?7) \
         ON CONFLICT (key) DO UPDATE SET \
         used = CASE WHEN window_end_ms > ?1 THEN used + excluded.used ELSE excluded.used END, \
         window_end_ms = CASE WHEN window_end_ms > ?1 THEN window_end_ms \
         ELSE excluded.window_end_ms END",
        &params,
    )?;
    Ok(held)
}

/// Takes `stored` points, now in storage, off the account's hold.
pub fn release_held_writes(account: &crate::account::Account, stored: u32) {
    let held = &account.held_write_points;
    held.set(held.get().saturating_sub(stored));
}

/// After a call: stores the write points still held, those of a call that made no commit (it
/// failed), in a transaction of their own. A failure is logged and the points stay held, for
/// the next commit.
pub fn store_held_writes(api: &Api<'_>) {
    if api.account.held_write_points.get() == 0 {
        return;
    }
    let db = api.account.sql.as_ref();
    match db.transaction(|| store_held_writes_in(db, api.config, api.account)) {
        Ok(stored) => release_held_writes(api.account, stored),
        Err(e) => crate::log::error(&format!("storing write points: {e}")),
    }
}

/// The account's daily upload quota, counted in KiB (counters hold 32-bit points).
pub fn upload_limit(config: &crate::config::Config) -> Limit {
    Limit {
        name: "upload-day",
        points: u32::try_from(config.upload_bytes_per_day.div_ceil(1024)).unwrap_or(u32::MAX),
        window_secs: 24 * 60 * 60,
    }
}

/// The key of the account's own counters.
const ACCOUNT_KEY: &str = "account";

/// The stored counter of `limit` for what `key` names (`write-hour:account`).
fn counter_key(limit: &Limit, key: &str) -> String {
    format!("{}:{key}", limit.name)
}

/// Whether the account's own limits (writes, uploads) are suspended: while it is deactivated,
/// which is how it is during an inbound migration.
fn suspended(api: &Api<'_>) -> Result<bool, XrpcError> {
    let status = crate::storage::account::get_account(api.account.sql.as_ref())
        .map_err(|e| XrpcError::internal_message(e.to_string()))?
        .map(|a| a.status);
    Ok(status == Some(crate::storage::account::AccountStatus::Deactivated))
}

/// What [`reserve_upload`] took of today's upload quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserved {
    /// The quota is suspended (see [`suspended`]): nothing counted.
    Unlimited,
    /// Bytes taken (0: nothing could be).
    Bytes(u64),
}

/// Reserves `want` bytes of today's upload quota for an upload about to start, or, when
/// `partial`, as much of it as is left. Taken at once, so that parallel uploads share what is
/// left; [`settle_upload`] gives back what the upload did not use. An upload that fails keeps its
/// reservation until the window ends.
pub fn reserve_upload(api: &Api<'_>, want: u64, partial: bool) -> Result<Reserved, XrpcError> {
    if suspended(api)? {
        return Ok(Reserved::Unlimited);
    }
    let want_kib = u32::try_from(want.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
    let (before, after) = update_upload_counter(api, |used, points| {
        let left = points.saturating_sub(used);
        let take = match (want_kib <= left, partial) {
            (true, _) => want_kib,
            (false, true) => left,
            (false, false) => 0,
        };
        used.saturating_add(take)
    })?;
    Ok(Reserved::Bytes(
        u64::from(after.saturating_sub(before)).saturating_mul(1024),
    ))
}

/// After an upload of `size` bytes for which `reserved` bytes were taken: gives back what it
/// did not use.
pub fn settle_upload(api: &Api<'_>, reserved: u64, size: u64) -> Result<(), XrpcError> {
    let unused_kib = reserved.div_ceil(1024).saturating_sub(size.div_ceil(1024));
    if unused_kib == 0 {
        return Ok(());
    }
    let unused_kib = u32::try_from(unused_kib).unwrap_or(u32::MAX);
    update_upload_counter(api, |used, _| used.saturating_sub(unused_kib)).map(drop)
}

/// Sets the upload counter of the current window to `change(used, points)`, in one
/// transaction; answers (used before, used after).
fn update_upload_counter(
    api: &Api<'_>,
    change: impl FnOnce(u32, u32) -> u32,
) -> Result<(u32, u32), XrpcError> {
    let limit = upload_limit(api.config);
    let now_ms = api.account.clock.now_millis();
    let db = api.account.sql.as_ref();
    db.transaction(|| {
        // A zero-cost check reads the live window (starting a new one if it ended).
        let status = match consume_in(db, &[limit], ACCOUNT_KEY, now_ms, 0)? {
            Ok(status) | Err(Exceeded { status, .. }) => status,
        };
        let used = limit.points.saturating_sub(status.remaining);
        let after = change(used, limit.points);
        db.execute(
            "INSERT INTO rate_limit (key, used, window_end_ms) VALUES (?, ?, ?)
             ON CONFLICT (key) DO UPDATE SET used = excluded.used, \
             window_end_ms = excluded.window_end_ms",
            &[
                SqlValue::Text(counter_key(&limit, ACCOUNT_KEY)),
                SqlValue::Integer(i64::from(after)),
                SqlValue::Integer(ms(status.reset_ms)),
            ],
        )?;
        Ok::<_, CheckError>((used, after))
    })
    .map_err(XrpcError::from)
}

/// Expensive reads per client address ([`crate::routes::Route::is_expensive_read`]),
/// counted at the edge before the account is asked, whoever calls (credentials on public reads
/// are not checked there, so they cannot buy an exemption). On Workers Cloudflare's
/// rate-limiting binding counts them (approximate, per location; `[[ratelimits]]` in
/// `wrangler.toml` must say the same numbers); natively [`WindowCounter`] does.
pub const EXPENSIVE_READS: Limit = Limit {
    name: "expensive-reads",
    points: 300,
    window_secs: 60,
};

/// The answer to an expensive read over [`EXPENSIVE_READS`]: a 429 with the limit's policy and
/// `Retry-After` (the edge knows no exact remaining count or reset).
pub fn expensive_read_refused() -> HttpResponse {
    let limit = EXPENSIVE_READS;
    let mut res: HttpResponse = XrpcError::rate_limit_exceeded("Rate Limit Exceeded")
        .into_response()
        .into();
    res.headers.extend([
        ("ratelimit-limit".into(), limit.points.to_string()),
        ("ratelimit-remaining".into(), "0".into()),
        (
            "ratelimit-policy".into(),
            format!("{};w={}", limit.points, limit.window_secs),
        ),
        ("retry-after".into(), limit.window_secs.to_string()),
    ]);
    crate::routes::with_cors(res)
}

/// Fixed-window counters in memory, for the native shell's edge limits: one window per key,
/// forgotten once it ended (the map is swept when it grows).
#[derive(Debug, Default)]
pub struct WindowCounter {
    windows: std::cell::RefCell<std::collections::HashMap<String, (u64, u32)>>,
}

impl WindowCounter {
    /// Counts one request under `key` against `limit` at `now_ms`: whether it is allowed.
    pub fn allow(&self, limit: &Limit, key: &str, now_ms: u64) -> bool {
        let window_ms = limit.window_secs.saturating_mul(1000);
        let mut windows = self.windows.borrow_mut();
        if windows.len() > 10_000 {
            windows.retain(|_, (start, _)| now_ms < start.saturating_add(window_ms));
        }
        let entry = windows.entry(key.to_owned()).or_insert((now_ms, 0));
        if now_ms >= entry.0.saturating_add(window_ms) {
            *entry = (now_ms, 0);
        }
        if entry.1 >= limit.points {
            return false;
        }
        entry.1 += 1;
        true
    }
}

/// Where a limit stands after a request was counted (or refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// The limit this is about.
    pub limit: Limit,
    /// Points left in the window.
    pub remaining: u32,
    /// When the window ends, in ms since the epoch.
    pub reset_ms: u64,
}

impl Status {
    /// The reference's headers: `RateLimit-Limit`, `-Remaining`, `-Reset` (epoch seconds) and
    /// `-Policy` (`points;w=seconds`).
    pub fn headers(&self) -> Vec<(String, String)> {
        vec![
            ("ratelimit-limit".into(), self.limit.points.to_string()),
            ("ratelimit-remaining".into(), self.remaining.to_string()),
            ("ratelimit-reset".into(), (self.reset_ms / 1000).to_string()),
            (
                "ratelimit-policy".into(),
                format!("{};w={}", self.limit.points, self.limit.window_secs),
            ),
        ]
    }

    /// Adds this status's headers to `res`.
    pub fn apply(&self, res: &mut HttpResponse) {
        res.headers.extend(self.headers());
    }
}

/// A request refused by a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exceeded {
    /// The limit that refused it, with nothing remaining.
    pub status: Status,
    /// Seconds until the limit takes requests again.
    pub retry_after_secs: u64,
}

impl Exceeded {
    /// The 429 answer, with the limit's headers and `Retry-After`.
    pub fn into_response(self) -> HttpResponse {
        let mut res: HttpResponse = XrpcError::rate_limit_exceeded("Rate Limit Exceeded")
            .into_response()
            .into();
        self.status.apply(&mut res);
        res.headers
            .push(("retry-after".into(), self.retry_after_secs.to_string()));
        res
    }
}

/// Why a limit could not be checked.
#[derive(Debug)]
pub struct CheckError(StorageError);

impl std::fmt::Display for CheckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rate limit: {}", self.0)
    }
}

impl From<StorageError> for CheckError {
    fn from(e: StorageError) -> Self {
        CheckError(e)
    }
}

impl From<CheckError> for XrpcError {
    fn from(e: CheckError) -> Self {
        XrpcError::internal_message(e.to_string())
    }
}

/// Counts a request costing `cost` points against every limit in `limits` under `key`, unless
/// one of them has fewer points left: then nothing is counted and the request is refused. `Ok`
/// carries the status of the limit with the fewest points left, for the answer's headers.
pub fn consume(
    db: &dyn Sql,
    limits: &[Limit],
    key: &str,
    now_ms: u64,
    cost: u32,
) -> Result<Result<Status, Exceeded>, CheckError> {
    // One transaction: one commit to storage for all the statements.
    db.transaction(|| consume_in(db, limits, key, now_ms, cost))
}

fn consume_in(
    db: &dyn Sql,
    limits: &[Limit],
    key: &str,
    now_ms: u64,
    cost: u32,
) -> Result<Result<Status, Exceeded>, CheckError> {
    count_in(db, limits, key, now_ms, cost, Count::Consume)
}

/// What [`count_in`] does with a request's cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Count {
    /// Refuses it over a limit; else stores the new count.
    Consume,
    /// Refuses it over a limit, with `held` points admitted earlier counted as used; stores
    /// nothing.
    Check {
        /// Points admitted and not yet stored.
        held: u32,
    },
}

fn count_in(
    db: &dyn Sql,
    limits: &[Limit],
    key: &str,
    now_ms: u64,
    cost: u32,
    mode: Count,
) -> Result<Result<Status, Exceeded>, CheckError> {
    let now = ms(now_ms);
    let held = match mode {
        Count::Check { held } => held,
        Count::Consume => 0,
    };
    // Every limit's live counter in one statement, and every new count in one: each statement
    // is a crossing into the runtime's SQL on Workers. An ended window reads as none, and the
    // new count starts the next one; maintenance drops ended rows ([`prune_ended`]).
    let counter_keys: Vec<String> = limits.iter().map(|limit| counter_key(limit, key)).collect();
    let placeholders = crate::storage::sql::placeholders(counter_keys.len());
    let keys: Vec<SqlValue> = counter_keys
        .iter()
        .map(|k| SqlValue::from(k.as_str()))
        .chain([SqlValue::Integer(now)])
        .collect();
    let rows = db.execute(
        &format!(
            "SELECT key, used, window_end_ms FROM rate_limit \
             WHERE key IN ({placeholders}) AND window_end_ms > ?"
        ),
        &keys,
    )?;
    let mut statuses = Vec::with_capacity(limits.len());
    for (limit, counter_key) in limits.iter().zip(&counter_keys) {
        let mut stored = None;
        for row in &rows {
            if row.text(0)? == *counter_key {
                stored = Some((row.integer(1)?, row.integer(2)?));
            }
        }
        let (used, end_ms) =
            stored.unwrap_or((0, now.saturating_add(ms(limit.window_secs * 1000))));
        let used = u32::try_from(used).unwrap_or(u32::MAX);
        let reset_ms = u64::try_from(end_ms).unwrap_or(0);
        if used.saturating_add(held).saturating_add(cost) > limit.points {
            let status = Status {
                limit: *limit,
                remaining: limit.points.saturating_sub(used.saturating_add(held)),
                reset_ms,
            };
            return Ok(Err(Exceeded {
                status,
                retry_after_secs: reset_ms.saturating_sub(now_ms).div_ceil(1000),
            }));
        }
        statuses.push((
            counter_key,
            used.saturating_add(held),
            end_ms,
            *limit,
            reset_ms,
        ));
    }
    let mut counts = Vec::with_capacity(statuses.len() * 3);
    let mut tightest: Option<Status> = None;
    for (counter_key, used, end_ms, limit, reset_ms) in statuses {
        counts.extend([
            SqlValue::from(counter_key.as_str()),
            SqlValue::Integer(i64::from(used) + i64::from(cost)),
            SqlValue::Integer(end_ms),
        ]);
        let status = Status {
            limit,
            remaining: limit.points.saturating_sub(used).saturating_sub(cost),
            reset_ms,
        };
        if tightest.is_none_or(|t| status.remaining < t.remaining) {
            tightest = Some(status);
        }
    }
    if !matches!(mode, Count::Check { .. }) && !counts.is_empty() {
        let values = vec!["(?, ?, ?)"; counts.len() / 3].join(", ");
        db.execute(
            &format!(
                "INSERT INTO rate_limit (key, used, window_end_ms) VALUES {values}
                 ON CONFLICT (key) DO UPDATE SET used = excluded.used, \
                 window_end_ms = excluded.window_end_ms"
            ),
            &counts,
        )?;
    }
    tightest.map(Ok).ok_or_else(|| {
        CheckError(StorageError::Sql(
            "a rate limit check needs at least one limit".into(),
        ))
    })
}

/// Drops the counters whose window ended by `now_ms` (maintenance, hourly): [`consume`] ignores
/// them but leaves them, so that a request costs one statement fewer.
pub fn prune_ended(db: &dyn Sql, now_ms: i64) -> crate::storage::Result<()> {
    db.execute(
        "DELETE FROM rate_limit WHERE window_end_ms <= ?",
        &[SqlValue::Integer(now_ms)],
    )
    .map(|_| ())
}

fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// How a client address is keyed: an IPv4 address whole, an IPv6 address by its /64 (one
/// subscriber usually holds a whole /64), an unknown one as `unknown`.
pub fn address_key(ip: Option<IpAddr>) -> String {
    match ip {
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        None => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::native::NativeSql;
    use crate::storage::schema;

    fn db() -> NativeSql {
        let db = NativeSql::open_in_memory().unwrap();
        schema::migrate(&db).unwrap();
        db
    }

    #[test]
    fn windows_count_refuse_and_reset() {
        let db = db();
        let limits = [
            Limit {
                name: "short",
                points: 3,
                window_secs: 10,
            },
            Limit {
                name: "long",
                points: 5,
                window_secs: 100,
            },
        ];
        let t0 = 1_000_000;
        let remaining: Vec<u32> = (0..3)
            .map(|i| {
                consume(&db, &limits, "k", t0 + i, 1)
                    .unwrap()
                    .unwrap()
                    .remaining
            })
            .collect();
        assert_eq!(remaining, [2, 1, 0]);
        let refused = consume(&db, &limits, "k", t0 + 5, 1).unwrap().unwrap_err();
        assert_eq!(refused.status.limit.name, "short");
        assert_eq!(refused.status.reset_ms, t0 + 10_000);
        assert_eq!(refused.retry_after_secs, 10);
        // Another key has its own counters.
        assert!(consume(&db, &limits, "other", t0 + 5, 1).unwrap().is_ok());
        // The short window ends; the long one still counts (3 of 5 used, the refusal counted
        // nothing), and is now the tighter.
        let after = consume(&db, &limits, "k", t0 + 10_000, 1).unwrap().unwrap();
        assert_eq!((after.limit.name, after.remaining), ("long", 1));
        let after = consume(&db, &limits, "k", t0 + 10_001, 1).unwrap().unwrap();
        assert_eq!((after.limit.name, after.remaining), ("long", 0));
        let refused = consume(&db, &limits, "k", t0 + 10_002, 1)
            .unwrap()
            .unwrap_err();
        assert_eq!(refused.status.limit.name, "long");

        let res = refused.into_response();
        assert_eq!(res.status, 429);
        let header = |n: &str| {
            res.headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(header("ratelimit-limit").as_deref(), Some("5"));
        assert_eq!(header("ratelimit-remaining").as_deref(), Some("0"));
        assert_eq!(header("ratelimit-policy").as_deref(), Some("5;w=100"));
        assert_eq!(header("ratelimit-reset").as_deref(), Some("1100"));
        assert_eq!(header("retry-after").as_deref(), Some("90"));

        // Maintenance drops the counters whose window ended; live ones stay.
        let keys = |db: &NativeSql| -> Vec<String> {
            db.execute("SELECT key FROM rate_limit ORDER BY key", &[])
                .unwrap()
                .iter()
                .map(|row| row.text(0).unwrap())
                .collect()
        };
        assert_eq!(
            keys(&db),
            ["long:k", "long:other", "short:k", "short:other"]
        );
        prune_ended(&db, (t0 + 10_005) as i64).unwrap();
        assert_eq!(keys(&db), ["long:k", "long:other", "short:k"]);
    }

    #[test]
    fn costly_requests_take_several_points() {
        let db = db();
        let limits = [Limit {
            name: "w",
            points: 10,
            window_secs: 60,
        }];
        assert_eq!(
            consume(&db, &limits, "a", 0, 3).unwrap().unwrap().remaining,
            7
        );
        assert_eq!(
            consume(&db, &limits, "a", 1, 6).unwrap().unwrap().remaining,
            1
        );
        // Two points do not fit in one: refused, and nothing is spent.
        let refused = consume(&db, &limits, "a", 2, 2).unwrap().unwrap_err();
        assert_eq!(refused.status.remaining, 1);
        assert_eq!(
            consume(&db, &limits, "a", 3, 1).unwrap().unwrap().remaining,
            0
        );
        let body = br#"{"repo":"x","writes":[{"$type":"com.atproto.repo.applyWrites#create"},
            {"$type":"com.atproto.repo.applyWrites#update"},{"$type":"com.atproto.repo.applyWrites#delete"}]}"#;
        assert_eq!(write_points("com.atproto.repo.applyWrites", body), Some(6));
        assert_eq!(write_points("com.atproto.repo.createRecord", b""), Some(3));
        assert_eq!(write_points("com.atproto.repo.getRecord", b""), None);
    }

    #[test]
    fn window_counters_allow_then_refuse_then_reset() {
        let counter = WindowCounter::default();
        let limit = Limit {
            name: "r",
            points: 2,
            window_secs: 10,
        };
        assert!(counter.allow(&limit, "a", 0));
        assert!(counter.allow(&limit, "a", 1));
        assert!(!counter.allow(&limit, "a", 2));
        assert!(counter.allow(&limit, "b", 2));
        assert!(counter.allow(&limit, "a", 10_000));
        let res = expensive_read_refused();
        assert_eq!(res.status, 429);
        assert!(res
            .headers
            .iter()
            .any(|(k, v)| k == "retry-after" && v == "60"));
    }

    #[test]
    fn addresses_key_by_host_or_slash_64() {
        let key = |s: &str| address_key(Some(s.parse().unwrap()));
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
        assert_eq!(key("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:ffff::1"), key("2001:db8:1:2::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(address_key(None), "unknown");
    }
}
