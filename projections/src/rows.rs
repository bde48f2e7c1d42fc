//! Read-model rows moved between Rust and PostgreSQL as JSON, a batch at a
//! time: `to_jsonb(row)` to load, `jsonb_populate_recordset` to store. A row
//! struct's fields are exactly its table's columns.

use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::PgConnection;
use sqlx::types::Json;
use uuid::Uuid;

/// A read-model table keyed by one uuid column.
pub(crate) struct Table {
    pub name: &'static str,
    pub key: &'static str,
    pub columns: &'static [&'static str],
}

impl Table {
    /// Rows whose key is in `keys`.
    pub(crate) async fn load<T: DeserializeOwned + Send + Unpin + 'static>(
        &self,
        tx: &mut PgConnection,
        keys: &[Uuid],
    ) -> Result<Vec<T>, sqlx::Error> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT to_jsonb(r) FROM {} r WHERE r.{} = ANY($1)",
            self.name, self.key
        );
        let rows: Vec<(Json<T>,)> = sqlx::query_as(&sql).bind(keys).fetch_all(&mut *tx).await?;
        Ok(rows.into_iter().map(|(Json(r),)| r).collect())
    }

    /// Insert or fully overwrite `rows` (which must be sorted by key so that
    /// concurrent writers lock rows in the same order).
    pub(crate) async fn upsert<T: Serialize + Sync>(
        &self,
        tx: &mut PgConnection,
        rows: &[T],
    ) -> Result<(), sqlx::Error> {
        if rows.is_empty() {
            return Ok(());
        }
        let set: Vec<String> = self
            .columns
            .iter()
            .filter(|c| **c != self.key)
            .map(|c| format!("{c} = EXCLUDED.{c}"))
            .collect();
        let cols = self.columns.join(", ");
        let sql = format!(
            "INSERT INTO {name} ({cols}) SELECT {cols} FROM jsonb_populate_recordset(NULL::{name}, $1)
             ON CONFLICT ({key}) DO UPDATE SET {set}",
            name = self.name,
            key = self.key,
            set = set.join(", ")
        );
        sqlx::query(&sql).bind(Json(rows)).execute(&mut *tx).await?;
        Ok(())
    }

    /// Insert `rows`, ignoring any whose key exists.
    pub(crate) async fn insert_new<T: Serialize + Sync>(
        &self,
        tx: &mut PgConnection,
        rows: &[T],
    ) -> Result<(), sqlx::Error> {
        if rows.is_empty() {
            return Ok(());
        }
        let cols = self.columns.join(", ");
        let sql = format!(
            "INSERT INTO {name} ({cols}) SELECT {cols} FROM jsonb_populate_recordset(NULL::{name}, $1)
             ON CONFLICT ({key}) DO NOTHING",
            name = self.name,
            key = self.key,
        );
        sqlx::query(&sql).bind(Json(rows)).execute(&mut *tx).await?;
        Ok(())
    }
}
