//! A memo of small reads in front of the account's database.
//!
//! A request reads the account row, the repository head and the maintenance state several
//! times, from code that has no reason to know of the other reads, and every request reads
//! the account row and its session again; on Workers each statement is a crossing into the
//! runtime's SQL (0.1 to 0.2 ms each under local workerd). [`MemoSql`] answers a read it
//! answered before, as long as nothing was written since to a table the read mentions. It is
//! only sound because the account's database has one writer, this connection: the Durable
//! Object on Workers, the one server process natively.

use std::cell::RefCell;

use super::error::Result;
use super::sql::{Row, Sql, SqlValue};

/// How many answers are kept (the oldest goes first).
const ENTRIES: usize = 16;
/// The largest answer kept: at most one row of at most this many bytes of text and blobs.
const MAX_ROW_BYTES: usize = 1024;

/// Another [`Sql`] whose answers to recent single-row reads are kept until something may have
/// changed them: a write to a table the read mentions, or to a table whose triggers write one
/// it mentions; a statement that is neither a plain read nor a plain write (schema changes and
/// the rest), and a rolled-back transaction, forget every answer.
pub struct MemoSql {
    inner: Box<dyn Sql>,
    answers: RefCell<Vec<Answer>>,
    /// The schema's tables and what writing each one writes, read from the database when first
    /// needed and again after a schema change.
    schema: RefCell<Option<Schema>>,
}

struct Answer {
    sql: String,
    params: Vec<SqlValue>,
    rows: Vec<Row>,
    /// The tables the read mentions (every word of it that names one).
    tables: Vec<String>,
}

/// The tables, and for each table whose writes fire triggers, the tables those triggers write.
#[derive(Debug, Default)]
struct Schema {
    tables: Vec<String>,
    triggers: Vec<(String, Vec<String>)>,
}

impl Schema {
    fn read(db: &dyn Sql) -> Result<Schema> {
        let mut schema = Schema::default();
        for row in db.execute(
            "SELECT type, tbl_name, sql FROM sqlite_master WHERE type IN ('table', 'trigger')",
            &[],
        )? {
            let table = row.text(1)?.to_ascii_lowercase();
            let sql = row.opt_text(2)?.unwrap_or_default();
            if row.text(0)? == "table" {
                // A foreign key's actions change this table when its parent is written.
                let words = words(&sql);
                for at in 0..words.len() {
                    if words[at] == "references" {
                        if let Some(parent) = words.get(at + 1) {
                            schema.triggers.push((parent.clone(), vec![table.clone()]));
                        }
                    }
                }
                schema.tables.push(table);
            } else {
                // The body's writes: the table after each INSERT/REPLACE ... INTO, UPDATE [OR
                // x] and DELETE FROM.
                let words = words(&sql);
                let body = words
                    .iter()
                    .position(|w| w == "begin")
                    .unwrap_or(words.len());
                let mut written = Vec::new();
                for at in body..words.len() {
                    if let Some(target) = write_target(&words[at..]) {
                        written.push(target.to_owned());
                    }
                }
                schema.triggers.push((table, written));
            }
        }
        Ok(schema)
    }

    /// The tables a write to `table` changes: itself and, transitively, what its triggers write.
    fn changed_by(&self, table: &str) -> Vec<String> {
        let mut changed = vec![table.to_owned()];
        let mut at = 0;
        while at < changed.len() {
            for (on, writes) in &self.triggers {
                if *on == changed[at] {
                    for w in writes {
                        if !changed.contains(w) {
                            changed.push(w.clone());
                        }
                    }
                }
            }
            at += 1;
        }
        changed
    }
}

/// The statement's words: runs of letters, digits and `_`.
fn word_iter(sql: &str) -> impl Iterator<Item = &str> {
    sql.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
}

/// The statement's words, lowercased.
fn words(sql: &str) -> Vec<String> {
    word_iter(sql).map(str::to_ascii_lowercase).collect()
}

/// The table a statement starting with `words` writes, if it is a plain INSERT, REPLACE,
/// UPDATE or DELETE.
fn write_target(words: &[String]) -> Option<&str> {
    let word = |i: usize| words.get(i).map(String::as_str);
    match word(0)? {
        "insert" | "replace" => {
            let into = words.iter().take(4).position(|w| w == "into")?;
            word(into + 1)
        }
        "update" if word(1) == Some("or") => word(3),
        "update" => word(1),
        "delete" if word(1) == Some("from") => word(2),
        _ => None,
    }
}

impl MemoSql {
    /// `inner` behind a memo that knows nothing yet.
    pub fn new(inner: Box<dyn Sql>) -> Self {
        MemoSql {
            inner,
            answers: RefCell::new(Vec::new()),
            schema: RefCell::new(None),
        }
    }

    fn forget(&self) {
        self.answers.borrow_mut().clear();
    }

    /// Before a statement that is not a plain read runs: forgets the answers it may change.
    fn before_write(&self, sql: &str) {
        // The target is within the first five words (`INSERT OR REPLACE INTO t`).
        let words: Vec<String> = word_iter(sql)
            .take(5)
            .map(str::to_ascii_lowercase)
            .collect();
        let Some(target) = write_target(&words).filter(|_| plain(sql)) else {
            // A schema change, or a statement this does not read: the schema is read again
            // when next needed.
            self.forget();
            self.schema.borrow_mut().take();
            return;
        };
        if self.answers.borrow().is_empty() {
            return;
        }
        let schema = self.schema();
        let Some(schema) = schema
            .as_ref()
            .filter(|s| s.tables.iter().any(|t| t == target))
        else {
            // An unknown table, or no schema to tell: nothing kept is trusted.
            return self.forget();
        };
        let changed = schema.changed_by(target);
        self.answers
            .borrow_mut()
            .retain(|a| !a.tables.iter().any(|t| changed.contains(t)));
    }

    /// The schema, read from the database if it is not known; `None` when it cannot be read.
    fn schema(&self) -> std::cell::Ref<'_, Option<Schema>> {
        if self.schema.borrow().is_none() {
            let read = Schema::read(self.inner.as_ref()).ok();
            *self.schema.borrow_mut() = read;
        }
        self.schema.borrow()
    }

    /// The known tables `sql` mentions; `None` when the schema cannot be read (keep nothing).
    fn tables_of(&self, sql: &str) -> Option<Vec<String>> {
        let schema = self.schema();
        let tables = &schema.as_ref()?.tables;
        let mut mentioned: Vec<String> = Vec::new();
        for word in word_iter(sql) {
            if let Some(table) = tables.iter().find(|t| t.eq_ignore_ascii_case(word)) {
                if !mentioned.contains(table) {
                    mentioned.push(table.clone());
                }
            }
        }
        Some(mentioned)
    }
}

/// Whether `sql` only reads: a plain `SELECT` (a `WITH`, a `PRAGMA` and the rest count as writes).
fn reads_only(sql: &str) -> bool {
    plain(sql)
        && sql
            .trim_start()
            .get(..6)
            .is_some_and(|word| word.eq_ignore_ascii_case("select"))
}

/// Whether `sql` is one statement without comments, so that its first words say what it does
/// (a Durable Object runs every statement of a text; a comment could hide a table's name).
fn plain(sql: &str) -> bool {
    !(sql.contains(';') || sql.contains("--") || sql.contains("/*"))
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
            self.before_write(sql);
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
            if let Some(tables) = self.tables_of(sql) {
                let mut answers = self.answers.borrow_mut();
                if answers.len() == ENTRIES {
                    answers.remove(0);
                }
                answers.push(Answer {
                    sql: sql.to_owned(),
                    params: params.to_vec(),
                    rows: rows.clone(),
                    tables,
                });
            }
        }
        Ok(rows)
    }

    fn transaction_dyn(&self, body: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        // What was kept before is what the transaction starts from; writes inside forget what
        // they change as they run. A rollback undoes writes a kept answer may have seen, and
        // schema changes a schema read inside may have seen: unless the transaction commits
        // (a failure, or a panic unwinding through here), everything is forgotten.
        struct UnlessCommitted<'a>(&'a MemoSql, bool);
        impl Drop for UnlessCommitted<'_> {
            fn drop(&mut self) {
                if !self.1 {
                    self.0.forget();
                    self.0.schema.borrow_mut().take();
                }
            }
        }
        let mut guard = UnlessCommitted(self, false);
        let outcome = self.inner.transaction_dyn(body);
        guard.1 = outcome.is_ok();
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
        // Another table, a tally that a trigger keeps of t's rows, and a table of the tally.
        for ddl in [
            "CREATE TABLE other (id INTEGER PRIMARY KEY, v TEXT)",
            "CREATE TABLE tally (id INTEGER PRIMARY KEY, n INTEGER)",
            "INSERT INTO tally (id, n) VALUES (1, 2)",
            "CREATE TABLE tally_log (id INTEGER PRIMARY KEY, n INTEGER)",
            "CREATE TRIGGER t_added AFTER INSERT ON t BEGIN \
             UPDATE tally SET n = n + 1 WHERE id = 1; END",
            "CREATE TRIGGER tally_changed AFTER UPDATE ON tally BEGIN \
             INSERT OR REPLACE INTO tally_log (id, n) VALUES (1, new.n); END",
        ] {
            inner.execute(ddl, &[]).unwrap();
        }
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
        // The schema is read once, to know which tables a read mentions.
        assert_eq!(statements.get(), 3, "one statement per distinct read");
        db.execute("UPDATE t SET v = 'uno' WHERE id = 1", &[])
            .unwrap();
        db.execute("INSERT INTO t (id, v) VALUES (3, 'three')", &[])
            .unwrap();
        assert_eq!(value(&db, 1).as_deref(), Some("uno"));
        assert_eq!(value(&db, 3).as_deref(), Some("three"));
        assert_eq!(statements.get(), 7);
    }

    fn tally(db: &dyn Sql, table: &str) -> i64 {
        db.query_opt(&format!("SELECT n FROM {table} WHERE id = 1"), &[])
            .unwrap()
            .map_or(-1, |row| row.integer(0).unwrap())
    }

    #[test]
    fn a_write_forgets_what_it_and_its_triggers_change_only() {
        let (db, statements) = memo();
        assert_eq!(value(&db, 1).as_deref(), Some("one"));
        assert_eq!(tally(&db, "tally"), 2);
        assert_eq!(tally(&db, "tally_log"), -1);
        let before = statements.get();
        // Another table: everything kept.
        db.execute("INSERT INTO other (id, v) VALUES (1, 'x')", &[])
            .unwrap();
        assert_eq!(value(&db, 1).as_deref(), Some("one"));
        assert_eq!(tally(&db, "tally"), 2);
        assert_eq!(statements.get(), before + 1, "only the write ran");
        // t's trigger writes tally, whose trigger writes tally_log: all three forgotten.
        db.execute("INSERT INTO t (id, v) VALUES (3, 'three')", &[])
            .unwrap();
        assert_eq!(tally(&db, "tally"), 3);
        assert_eq!(tally(&db, "tally_log"), 3);
        assert_eq!(value(&db, 1).as_deref(), Some("one"));
        assert_eq!(statements.get(), before + 5);
        // A schema change forgets everything, and the schema is read again.
        db.execute("CREATE TABLE later (id INTEGER PRIMARY KEY)", &[])
            .unwrap();
        assert_eq!(tally(&db, "tally"), 3);
        assert_eq!(statements.get(), before + 8);
        // A comment could name another table where the target is read: everything forgotten.
        assert_eq!(value(&db, 1).as_deref(), Some("one"));
        db.execute("UPDATE /* other */ t SET v = 'uno' WHERE id = 1", &[])
            .unwrap();
        assert_eq!(value(&db, 1).as_deref(), Some("uno"));
    }

    #[test]
    fn write_targets_are_read_from_the_statement() {
        let target = |sql: &str| write_target(&words(sql)).map(str::to_owned);
        assert_eq!(target("INSERT INTO a (x) VALUES (1)").as_deref(), Some("a"));
        assert_eq!(
            target("insert or ignore into b values (1)").as_deref(),
            Some("b")
        );
        assert_eq!(
            target("INSERT OR REPLACE INTO c VALUES (1)").as_deref(),
            Some("c")
        );
        assert_eq!(target("REPLACE INTO d VALUES (1)").as_deref(), Some("d"));
        assert_eq!(target("UPDATE e SET x = 1").as_deref(), Some("e"));
        assert_eq!(target("UPDATE OR IGNORE f SET x = 1").as_deref(), Some("f"));
        assert_eq!(
            target("DELETE FROM g WHERE x IN (SELECT 1 FROM h)").as_deref(),
            Some("g")
        );
        assert_eq!(target("WITH x AS (SELECT 1) DELETE FROM g"), None);
        assert_eq!(target("CREATE TABLE t (x)"), None);
        assert_eq!(target("PRAGMA user_version = 3"), None);
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
    fn a_transaction_keeps_what_was_kept_and_a_rollback_forgets() {
        let (db, statements) = memo();
        assert_eq!(value(&db, 1).as_deref(), Some("one"));
        db.transaction(|| {
            assert_eq!(value(&db, 1).as_deref(), Some("one"));
            // The read, and the schema read once.
            assert_eq!(statements.get(), 2, "answered from the memo inside");
            assert_eq!(value(&db, 2).as_deref(), Some("two"));
            Ok::<_, StorageError>(())
        })
        .unwrap();
        assert_eq!(value(&db, 2).as_deref(), Some("two"));
        assert_eq!(statements.get(), 3, "kept after a commit");
        // A rollback of a savepoint inside a transaction forgets what it saw.
        db.transaction(|| {
            let undone: std::result::Result<(), StorageError> = db.transaction(|| {
                db.execute("UPDATE t SET v = 'uno' WHERE id = 1", &[])?;
                assert_eq!(value(&db, 1).as_deref(), Some("uno"));
                Err(StorageError::Sql("undo".into()))
            });
            assert!(undone.is_err());
            assert_eq!(value(&db, 1).as_deref(), Some("one"));
            Ok::<_, StorageError>(())
        })
        .unwrap();
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
        assert!(!reads_only("SELECT 1; DELETE FROM t"));
        assert!(!reads_only("SELECT v FROM t -- WHERE id = 1"));
    }
}
