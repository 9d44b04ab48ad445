//! A memo of small reads in front of the account's database.
//!
//! A request reads the account row, the repository head and the maintenance state several
//! times, from code that has no reason to know of the other reads; on Workers each statement
//! is a crossing into the runtime's SQL (about 45 µs measured from JavaScript). [`MemoSql`]
//! answers a read it answered before, as long as nothing was written in between. It is only
//! sound because the account's database has one writer, this connection: the Durable Object
//! on Workers, the one server process natively.

use std::cell::RefCell;

use super::error::Result;
use super::sql::{Row, Sql, SqlValue};

/// How many answers are kept (the oldest goes first).
const ENTRIES: usize = 16;
/// The largest answer kept: at most one row of at most this many bytes of text and blobs.
const MAX_ROW_BYTES: usize = 1024;

/// Another [`Sql`] whose answers to recent single-row reads are kept until anything else runs:
/// any statement that is not a `SELECT`, and the start and end of every transaction (a rollback
/// undoes writes a kept answer may have seen), forget every answer.
pub struct MemoSql {
    inner: Box<dyn Sql>,
    answers: RefCell<Vec<Answer>>,
}

struct Answer {
    sql: String,
    params: Vec<SqlValue>,
    rows: Vec<Row>,
}

impl MemoSql {
    /// `inner` behind a memo that knows nothing yet.
    pub fn new(inner: Box<dyn Sql>) -> Self {
        MemoSql {
            inner,
            answers: RefCell::new(Vec::new()),
        }
    }

    fn forget(&self) {
        self.answers.borrow_mut().clear();
    }
}

/// Whether `sql` only reads: a plain `SELECT` (a `WITH`, a `PRAGMA` and the rest count as writes).
fn reads_only(sql: &str) -> bool {
    sql.trim_start()
        .get(..6)
        .is_some_and(|word| word.eq_ignore_ascii_case("select"))
}

/// Whether an answer is small enough to keep.
fn keepable(rows: &[Row]) -> bool {
    match rows {
        [] => true,
        [row] => {
            let bytes: usize = row
                .0
                .iter()
                .map(|v| match v {
                    SqlValue::Text(s) => s.len(),
                    SqlValue::Blob(b) => b.len(),
                    SqlValue::Null | SqlValue::Integer(_) => 8,
                })
                .sum();
            bytes <= MAX_ROW_BYTES
        }
        _ => false,
    }
}

impl Sql for MemoSql {
    fn execute(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<Row>> {
        if !reads_only(sql) {
            self.forget();
            return self.inner.execute(sql, params);
        }
        let kept = self
            .answers
            .borrow()
            .iter()
            .find(|a| a.sql == sql && a.params == params)
            .map(|a| a.rows.clone());
        if let Some(rows) = kept {
            return Ok(rows);
        }
        let rows = self.inner.execute(sql, params)?;
        if keepable(&rows) {
            let mut answers = self.answers.borrow_mut();
            if answers.len() == ENTRIES {
                answers.remove(0);
            }
            answers.push(Answer {
                sql: sql.to_owned(),
                params: params.to_vec(),
                rows: rows.clone(),
            });
        }
        Ok(rows)
    }

    fn transaction_dyn(&self, body: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        self.forget();
        let outcome = self.inner.transaction_dyn(body);
        self.forget();
        outcome
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::platform::native::NativeSql;
    use crate::storage::error::StorageError;
    use crate::storage::sql::SqlExt;
    use std::cell::Cell;
    use std::rc::Rc;

    /// Counts the statements that reach the database.
    struct Counting {
        inner: NativeSql,
        statements: Rc<Cell<usize>>,
    }

    impl Sql for Counting {
        fn execute(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<Row>> {
            self.statements.set(self.statements.get() + 1);
            self.inner.execute(sql, params)
        }
        fn transaction_dyn(&self, body: &mut dyn FnMut() -> Result<()>) -> Result<()> {
            self.inner.transaction_dyn(body)
        }
    }

    /// A memo over a table of two rows, and the count of statements that reached it.
    fn memo() -> (MemoSql, Rc<Cell<usize>>) {
        let inner = NativeSql::open_in_memory().unwrap();
        inner
            .execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)", &[])
            .unwrap();
        inner
            .execute("INSERT INTO t (id, v) VALUES (1, 'one'), (2, 'two')", &[])
            .unwrap();
        let statements = Rc::new(Cell::new(0));
        let counting = Counting {
            inner,
            statements: statements.clone(),
        };
        (MemoSql::new(Box::new(counting)), statements)
    }

    fn value(db: &dyn Sql, id: i64) -> Option<String> {
        db.query_opt("SELECT v FROM t WHERE id = ?", &[SqlValue::Integer(id)])
            .unwrap()
            .map(|row| row.text(0).unwrap())
    }

    #[test]
    fn a_read_again_is_answered_from_the_memo_until_a_write() {
        let (db, statements) = memo();
        assert_eq!(value(&db, 1).as_deref(), Some("one"));
        assert_eq!(value(&db, 1).as_deref(), Some("one"));
        assert_eq!(value(&db, 3), None);
        assert_eq!(value(&db, 3), None);
        assert_eq!(statements.get(), 2, "one statement per distinct read");
        db.execute("UPDATE t SET v = 'uno' WHERE id = 1", &[])
            .unwrap();
        db.execute("INSERT INTO t (id, v) VALUES (3, 'three')", &[])
            .unwrap();
        assert_eq!(value(&db, 1).as_deref(), Some("uno"));
        assert_eq!(value(&db, 3).as_deref(), Some("three"));
        assert_eq!(statements.get(), 6);
    }

    #[test]
    fn a_rolled_back_write_is_not_remembered() {
        let (db, _) = memo();
        let failed: std::result::Result<(), StorageError> = db.transaction(|| {
            db.execute("UPDATE t SET v = 'uno' WHERE id = 1", &[])?;
            assert_eq!(
                value(&db, 1).as_deref(),
                Some("uno"),
                "inside, the write shows"
            );
            Err(StorageError::Sql("undo".into()))
        });
        assert!(failed.is_err());
        assert_eq!(
            value(&db, 1).as_deref(),
            Some("one"),
            "after the rollback, the old value"
        );
    }

    #[test]
    fn only_small_single_row_answers_are_kept() {
        let (db, statements) = memo();
        let all = "SELECT v FROM t ORDER BY id";
        db.execute(all, &[]).unwrap();
        db.execute(all, &[]).unwrap();
        assert_eq!(statements.get(), 2, "two rows: not kept");
        let big = "x".repeat(MAX_ROW_BYTES + 1);
        db.execute(
            "UPDATE t SET v = ? WHERE id = 2",
            &[SqlValue::from(big.as_str())],
        )
        .unwrap();
        assert_eq!(value(&db, 2), Some(big.clone()));
        assert_eq!(value(&db, 2), Some(big));
        assert_eq!(statements.get(), 5, "a large row: not kept");
        // More distinct reads than it keeps: the oldest is asked again.
        for id in 0..=ENTRIES as i64 {
            value(&db, 100 + id);
        }
        let before = statements.get();
        value(&db, 100);
        assert_eq!(statements.get(), before + 1);
    }

    #[test]
    fn only_plain_selects_count_as_reads() {
        assert!(reads_only("SELECT 1"));
        assert!(reads_only("  select did FROM account"));
        assert!(!reads_only("INSERT INTO t VALUES (1) RETURNING id"));
        assert!(!reads_only("WITH x AS (SELECT 1) DELETE FROM t"));
        assert!(!reads_only("PRAGMA user_version"));
        assert!(!reads_only("SEL"));
    }
}
