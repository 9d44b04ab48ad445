//! The SQL port on a SQLite file (native builds: tests and self-hosting).

use crate::storage::sql::{check_params, Row, Sql, SqlValue};
use crate::storage::{Result, StorageError};
use rusqlite::types::{Value, ValueRef};
use rusqlite::Connection;
use std::cell::Cell;
use std::path::Path;
use std::time::Duration;

/// A SQLite database file behind the [`Sql`] port.
///
/// Opened in WAL mode with `synchronous = FULL`: every commit is fsynced
/// before it returns. NORMAL would also survive a killed process (the WAL is
/// only ever appended), but could lose the last commits on power loss after
/// they were announced on the firehose, leaving relays ahead of the
/// repository; commits are rare enough for the fsync to be cheap.
pub struct NativeSql {
    conn: Connection,
    /// Open transactions: 0 outside, 1 in the outermost, >1 in savepoints.
    depth: Cell<u32>,
}

fn sql_err(e: rusqlite::Error) -> StorageError {
    StorageError::Sql(e.to_string())
}

impl NativeSql {
    /// Opens (creating if needed) the database file at `path`.
    pub fn open(path: &Path) -> Result<NativeSql> {
        let conn = Connection::open(path).map_err(sql_err)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(sql_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StorageError::Sql(format!(
                "could not enable WAL (journal_mode is {mode})"
            )));
        }
        Self::configure(conn)
    }

    /// A private in-memory database (tests).
    pub fn open_in_memory() -> Result<NativeSql> {
        Self::configure(Connection::open_in_memory().map_err(sql_err)?)
    }

    fn configure(conn: Connection) -> Result<NativeSql> {
        conn.execute_batch("PRAGMA synchronous = FULL")
            .map_err(sql_err)?;
        // Another process (a CLI next to the server) may hold the write lock
        // briefly; wait instead of failing at once.
        conn.busy_timeout(Duration::from_secs(5)).map_err(sql_err)?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(NativeSql {
            conn,
            depth: Cell::new(0),
        })
    }

    fn finish(&self, depth: u32, ok: bool) -> Result<()> {
        let sql = match (depth, ok) {
            (1, true) => "COMMIT".to_owned(),
            (1, false) => "ROLLBACK".to_owned(),
            (d, true) => format!("RELEASE sp{d}"),
            (d, false) => format!("ROLLBACK TO sp{d}; RELEASE sp{d}"),
        };
        self.conn.execute_batch(&sql).map_err(sql_err)
    }
}

/// Rolls back if the body panics, so the connection is never left inside a
/// transaction.
struct Open<'a> {
    sql: &'a NativeSql,
    depth: u32,
    finished: bool,
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.sql.finish(self.depth, false);
        }
        self.sql.depth.set(self.depth - 1);
    }
}

impl Sql for NativeSql {
    fn execute(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<Row>> {
        check_params(params)?;
        let mut stmt = self.conn.prepare_cached(sql).map_err(sql_err)?;
        let columns = stmt.column_count();
        let bound = params.iter().map(|p| match p {
            SqlValue::Null => Value::Null,
            SqlValue::Integer(v) => Value::Integer(*v),
            SqlValue::Text(s) => Value::Text(s.clone()),
            SqlValue::Blob(b) => Value::Blob(b.clone()),
        });
        let mut rows = stmt
            .query(rusqlite::params_from_iter(bound))
            .map_err(sql_err)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(sql_err)? {
            let mut values = Vec::with_capacity(columns);
            for i in 0..columns {
                values.push(match row.get_ref(i).map_err(sql_err)? {
                    ValueRef::Null => SqlValue::Null,
                    ValueRef::Integer(v) => SqlValue::Integer(v),
                    ValueRef::Text(t) => SqlValue::Text(
                        String::from_utf8(t.to_vec())
                            .map_err(|_| StorageError::Corrupt("text is not UTF-8".into()))?,
                    ),
                    ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
                    ValueRef::Real(v) => {
                        return Err(StorageError::Corrupt(format!(
                            "column {i}: unexpected float {v}"
                        )))
                    }
                });
            }
            out.push(Row(values));
        }
        Ok(out)
    }

    fn transaction_dyn(&self, body: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        let depth = self.depth.get() + 1;
        // IMMEDIATE takes the write lock up front: no deadlock-prone upgrade
        // from a read transaction when another process also writes.
        let begin = if depth == 1 {
            "BEGIN IMMEDIATE".to_owned()
        } else {
            format!("SAVEPOINT sp{depth}")
        };
        self.conn.execute_batch(&begin).map_err(sql_err)?;
        self.depth.set(depth);
        let mut open = Open {
            sql: self,
            depth,
            finished: false,
        };
        let result = body();
        open.finished = true;
        match result {
            Ok(()) => match self.finish(depth, true) {
                Ok(()) => Ok(()),
                Err(e) => {
                    let _ = self.finish(depth, false);
                    Err(e)
                }
            },
            Err(e) => {
                self.finish(depth, false)?;
                Err(e)
            }
        }
    }
}
