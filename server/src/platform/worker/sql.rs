//! The SQL port on the Durable Object's SQLite.
//!
//! Durable Object SQL rejects `BEGIN`/`COMMIT`/`SAVEPOINT`; transactions go
//! through the storage object's `transactionSync(callback)`, which commits
//! when the callback returns and rolls back when it throws (nested calls nest
//! savepoints). workers-rs 0.8.7 does not bind it, hence the binding below.

use crate::storage::sql::{check_params, Row, Sql, SqlValue};
use crate::storage::{Result, StorageError};
use wasm_bindgen::{JsCast, JsValue};
use worker::{js_sys, SqlStorage, SqlStorageValue, State, Storage};

mod ffi {
    use wasm_bindgen::prelude::*;

    #[wasm_bindgen]
    extern "C" {
        /// `DurableObjectStorage`, seen through the method workers-rs lacks.
        pub type TransactionalStorage;

        /// Runs `callback` in a transaction; rethrows what it throws.
        #[wasm_bindgen(method, catch, js_name = transactionSync)]
        pub fn transaction_sync(
            this: &TransactionalStorage,
            callback: &mut dyn FnMut() -> Result<JsValue, JsValue>,
        ) -> Result<JsValue, JsValue>;
    }
}

/// The Durable Object's SQLite behind the [`Sql`] port.
pub struct DurableSql {
    storage: Storage,
    sql: SqlStorage,
}

impl DurableSql {
    /// The SQL database of the Durable Object whose state this is.
    pub fn new(state: &State) -> DurableSql {
        let storage = state.storage();
        let sql = storage.sql();
        DurableSql { storage, sql }
    }
}

fn to_do(value: &SqlValue) -> SqlStorageValue {
    match value {
        SqlValue::Null => SqlStorageValue::Null,
        SqlValue::Integer(v) => SqlStorageValue::Integer(*v),
        SqlValue::Text(s) => SqlStorageValue::String(s.clone()),
        SqlValue::Blob(b) => SqlStorageValue::Blob(b.clone()),
    }
}

fn from_do(value: SqlStorageValue) -> Result<SqlValue> {
    Ok(match value {
        SqlStorageValue::Null => SqlValue::Null,
        SqlStorageValue::Boolean(b) => SqlValue::Integer(i64::from(b)),
        SqlStorageValue::Integer(v) => SqlValue::Integer(v),
        SqlStorageValue::String(s) => SqlValue::Text(s),
        SqlStorageValue::Blob(b) => SqlValue::Blob(b),
        // workers-rs reports a number that is not a safe integer as a float:
        // the schema stores none.
        SqlStorageValue::Float(f) => {
            return Err(StorageError::Corrupt(format!(
                "unexpected non-integer number {f}"
            )))
        }
    })
}

impl Sql for DurableSql {
    fn execute(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<Row>> {
        check_params(params)?;
        let bindings: Vec<SqlStorageValue> = params.iter().map(to_do).collect();
        let cursor = self
            .sql
            .exec(sql, bindings)
            .map_err(|e| StorageError::Sql(e.to_string()))?;
        let mut rows = Vec::new();
        for raw in cursor.raw() {
            let values = raw.map_err(|e| StorageError::Sql(e.to_string()))?;
            rows.push(Row(values
                .into_iter()
                .map(from_do)
                .collect::<Result<Vec<_>>>()?));
        }
        Ok(rows)
    }

    fn transaction_dyn(&self, body: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        let mut failure: Option<StorageError> = None;
        let outcome = {
            let mut callback = || -> std::result::Result<JsValue, JsValue> {
                match body() {
                    Ok(()) => Ok(JsValue::UNDEFINED),
                    Err(e) => {
                        let message = e.to_string();
                        failure = Some(e);
                        // Throwing is what makes transactionSync roll back.
                        Err(js_sys::Error::new(&message).into())
                    }
                }
            };
            let storage: &ffi::TransactionalStorage = self.storage.as_raw().unchecked_ref();
            storage.transaction_sync(&mut callback)
        };
        match outcome {
            Ok(_) => Ok(()),
            Err(thrown) => Err(failure.unwrap_or_else(|| {
                StorageError::Sql(
                    thrown
                        .dyn_ref::<js_sys::Error>()
                        .map(|e| String::from(e.message()))
                        .unwrap_or_else(|| format!("{thrown:?}")),
                )
            })),
        }
    }
}
