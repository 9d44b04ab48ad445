//! The SQL port: the one way the server touches its database.
//!
//! Synchronous (Durable Object SQLite is synchronous) and free of `Send`
//! bounds (Durable Object handles are not `Send`). Implemented by
//! `platform::worker::sql::DurableSql` on Workers and by
//! `platform::native::NativeSql` natively.

use super::error::{Result, StorageError};

/// The largest integer a Durable Object can store exactly: integers cross
/// into JavaScript as `f64` numbers (2^53 - 1, `Number.MAX_SAFE_INTEGER`).
pub const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// Durable Object SQL accepts at most 100 bound parameters per statement;
/// batched statements stay under this.
pub const MAX_PARAMS: usize = 100;

/// A value bound to, or read from, a statement. Only the storage classes the
/// schema uses: no floats.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SqlValue {
    /// SQL NULL.
    Null,
    /// An integer within ±[`MAX_SAFE_INTEGER`].
    Integer(i64),
    /// UTF-8 text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

impl From<i64> for SqlValue {
    fn from(v: i64) -> Self {
        SqlValue::Integer(v)
    }
}
impl From<&str> for SqlValue {
    fn from(v: &str) -> Self {
        SqlValue::Text(v.to_owned())
    }
}
impl From<String> for SqlValue {
    fn from(v: String) -> Self {
        SqlValue::Text(v)
    }
}
impl From<Vec<u8>> for SqlValue {
    fn from(v: Vec<u8>) -> Self {
        SqlValue::Blob(v)
    }
}
impl From<&[u8]> for SqlValue {
    fn from(v: &[u8]) -> Self {
        SqlValue::Blob(v.to_vec())
    }
}
impl From<bool> for SqlValue {
    fn from(v: bool) -> Self {
        SqlValue::Integer(i64::from(v))
    }
}
impl<T: Into<SqlValue>> From<Option<T>> for SqlValue {
    fn from(v: Option<T>) -> Self {
        v.map_or(SqlValue::Null, Into::into)
    }
}

/// One result row, columns in `SELECT` order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Row(pub Vec<SqlValue>);

impl Row {
    fn column(&self, i: usize) -> Result<&SqlValue> {
        self.0
            .get(i)
            .ok_or_else(|| StorageError::Corrupt(format!("row has no column {i}")))
    }

    /// Column `i` as an integer (NULL is an error).
    pub fn integer(&self, i: usize) -> Result<i64> {
        match self.column(i)? {
            SqlValue::Integer(v) => Ok(*v),
            other => Err(StorageError::Corrupt(format!(
                "column {i}: expected integer, got {other:?}"
            ))),
        }
    }

    /// Column `i` as an integer, `None` for NULL.
    pub fn opt_integer(&self, i: usize) -> Result<Option<i64>> {
        match self.column(i)? {
            SqlValue::Null => Ok(None),
            _ => self.integer(i).map(Some),
        }
    }

    /// Column `i` as text (NULL is an error).
    pub fn text(&self, i: usize) -> Result<String> {
        match self.column(i)? {
            SqlValue::Text(v) => Ok(v.clone()),
            other => Err(StorageError::Corrupt(format!(
                "column {i}: expected text, got {other:?}"
            ))),
        }
    }

    /// Column `i` as text, `None` for NULL.
    pub fn opt_text(&self, i: usize) -> Result<Option<String>> {
        match self.column(i)? {
            SqlValue::Null => Ok(None),
            _ => self.text(i).map(Some),
        }
    }

    /// Column `i` as bytes (NULL is an error).
    pub fn blob(&self, i: usize) -> Result<Vec<u8>> {
        match self.column(i)? {
            SqlValue::Blob(v) => Ok(v.clone()),
            other => Err(StorageError::Corrupt(format!(
                "column {i}: expected blob, got {other:?}"
            ))),
        }
    }

    /// Consumes the row and takes column `i` as bytes without copying, `None` for NULL.
    pub fn into_opt_blob(self, i: usize) -> Result<Option<Vec<u8>>> {
        match self.column(i)? {
            SqlValue::Null => Ok(None),
            _ => self.into_blob(i).map(Some),
        }
    }

    /// Consumes the row and takes column `i` as bytes without copying.
    pub fn into_blob(mut self, i: usize) -> Result<Vec<u8>> {
        match self.0.get_mut(i) {
            Some(SqlValue::Blob(v)) => Ok(std::mem::take(v)),
            other => Err(StorageError::Corrupt(format!(
                "column {i}: expected blob, got {other:?}"
            ))),
        }
    }
}

/// A synchronous SQL database (see the module documentation).
///
/// Statements use positional `?` parameters. Implementations refuse integers
/// outside ±[`MAX_SAFE_INTEGER`] on both platforms, so a value that would be
/// silently rounded on Workers fails natively in tests too.
pub trait Sql {
    /// Runs one statement and returns its rows (none for writes).
    fn execute(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<Row>>;

    /// Runs `body` in a transaction: committed when it returns `Ok`, rolled
    /// back when it returns `Err` (or panics). Calls nest (savepoints). This
    /// is the object-safe primitive; callers use [`SqlExt::transaction`].
    fn transaction_dyn(&self, body: &mut dyn FnMut() -> Result<()>) -> Result<()>;
}

/// Conveniences over any [`Sql`], including `dyn Sql`.
pub trait SqlExt: Sql {
    /// Runs `body` all-or-nothing: commit on `Ok`, roll back on `Err`. The
    /// closure's own error type passes through unchanged.
    fn transaction<T, E: From<StorageError>>(
        &self,
        body: impl FnOnce() -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let mut body = Some(body);
        let mut outcome: Option<std::result::Result<T, E>> = None;
        let ran = self.transaction_dyn(&mut || {
            let Some(body) = body.take() else {
                return Err(StorageError::Sql("transaction body ran twice".into()));
            };
            match body() {
                Ok(value) => {
                    outcome = Some(Ok(value));
                    Ok(())
                }
                Err(e) => {
                    outcome = Some(Err(e));
                    // Any error makes the platform roll back; the caller's
                    // own error is returned below.
                    Err(StorageError::RolledBack)
                }
            }
        });
        match (ran, outcome) {
            // The body failed: its error, whatever the rollback said.
            (_, Some(Err(e))) => Err(e),
            (Ok(()), Some(Ok(value))) => Ok(value),
            // The body succeeded but the commit failed.
            (Err(e), _) => Err(e.into()),
            (Ok(()), None) => Err(StorageError::Sql("transaction body did not run".into()).into()),
        }
    }

    /// Runs a query and returns its only row, or `None`; more rows is an error.
    fn query_opt(&self, sql: &str, params: &[SqlValue]) -> Result<Option<Row>> {
        let mut rows = self.execute(sql, params)?;
        match rows.len() {
            0 => Ok(None),
            1 => Ok(rows.pop()),
            n => Err(StorageError::Corrupt(format!(
                "expected at most one row, got {n}"
            ))),
        }
    }
}

impl<S: Sql + ?Sized> SqlExt for S {}

/// Checks what every implementation must refuse before binding.
pub fn check_params(params: &[SqlValue]) -> Result<()> {
    if params.len() > MAX_PARAMS {
        return Err(StorageError::Sql(format!(
            "{} parameters (Durable Object SQL allows {MAX_PARAMS})",
            params.len()
        )));
    }
    for p in params {
        if let SqlValue::Integer(v) = p {
            if !(-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(v) {
                return Err(StorageError::IntegerOutOfRange(*v));
            }
        }
    }
    Ok(())
}

/// `?, ?, ?` for `n` parameters (IN lists, multi-row inserts).
pub fn placeholders(n: usize) -> String {
    let mut s = String::with_capacity(n * 3);
    for i in 0..n {
        if i > 0 {
            s.push_str(", ");
        }
        s.push('?');
    }
    s
}
