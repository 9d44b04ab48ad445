//! What the status page reads (schema version 12): records per collection and commits per day,
//! kept by triggers, and the stored outcome of the background checks.

use super::error::Result;
use super::sql::{Sql, SqlExt, SqlValue};
use crate::first_error::FirstError;

/// A UTC day, as days since the Unix epoch.
pub const DAY_MS: i64 = 86_400_000;

/// Records per collection, largest first (then by name).
pub fn collection_counts(db: &dyn Sql) -> Result<Vec<(String, i64)>> {
    db.execute(
        "SELECT collection, records FROM collection_tally WHERE records > 0 \
         ORDER BY records DESC, collection",
        &[],
    )?
    .iter()
    .map(|row| Ok((row.text(0)?, row.integer(1)?)))
    .collect()
}

/// Commits per UTC day (days since the epoch) from `from_day` on, oldest first; days without
/// commits are absent.
pub fn commits_per_day(db: &dyn Sql, from_day: i64) -> Result<Vec<(i64, i64)>> {
    db.execute(
        "SELECT day, commits FROM commit_day WHERE day >= ? ORDER BY day",
        &[SqlValue::Integer(from_day)],
    )?
    .iter()
    .map(|row| Ok((row.integer(0)?, row.integer(1)?)))
    .collect()
}

/// The stored outcome of one background check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    /// Which check (`handle`, `didDocument`, `relay:<base URL>`).
    pub name: String,
    /// `ok`, `note` or `problem`.
    pub level: String,
    /// What was found.
    pub summary: String,
    /// What to do about a problem.
    pub fix: Option<String>,
    /// When it was checked, ms since the epoch.
    pub checked_ms: i64,
}

/// Replaces the stored outcomes with `outcomes` (a check no longer run, such as a relay taken
/// out of the configuration, disappears).
pub fn save_checks(db: &dyn Sql, outcomes: &[CheckOutcome]) -> Result<()> {
    db.transaction(|| {
        db.execute("DELETE FROM status_check", &[])?;
        for o in outcomes {
            db.execute(
                "INSERT INTO status_check (name, level, summary, fix, checked_ms) \
                 VALUES (?, ?, ?, ?, ?)",
                &[
                    SqlValue::from(o.name.as_str()),
                    SqlValue::from(o.level.as_str()),
                    SqlValue::from(o.summary.as_str()),
                    o.fix.as_deref().map_or(SqlValue::Null, SqlValue::from),
                    SqlValue::Integer(o.checked_ms),
                ],
            )?;
        }
        Ok(())
    })
}

/// The stored outcomes, by name.
pub fn load_checks(db: &dyn Sql) -> Result<Vec<CheckOutcome>> {
    db.execute(
        "SELECT name, level, summary, fix, checked_ms FROM status_check ORDER BY name",
        &[],
    )?
    .iter()
    .map(|row| {
        let mut e = FirstError::new();
        let v = CheckOutcome {
            name: e.keep(row.text(0)),
            level: e.keep(row.text(1)),
            summary: e.keep(row.text(2)),
            fix: e.keep(row.opt_text(3)),
            checked_ms: e.keep(row.integer(4)),
        };
        e.finish(v)
    })
    .collect()
}
