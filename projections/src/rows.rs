//! Read-model rows moved between Rust and PostgreSQL as JSON, a batch at a
//! time: `to_jsonb(row)` to load, `jsonb_populate_recordset` to store. A row
//! struct's fields are exactly its table's columns.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::PgConnection;
use sqlx::types::Json;
use uuid::Uuid;

use crate::runtime::{ProjectionError, SourcedEvent, Written};

/// The key of an event's read-model row: its aggregate id, a uuid.
pub(crate) fn aggregate_uuid(event: &SourcedEvent) -> Result<Uuid, ProjectionError> {
    Uuid::parse_str(&event.envelope.aggregate_id)
        .map_err(|e| event.reject(format!("aggregate id is not a uuid: {e}")))
}

/// The rows of `changed`, in key order (what a batch upserts).
pub(crate) fn changed_rows<'a, T>(
    rows: &'a BTreeMap<Uuid, T>,
    changed: &BTreeSet<Uuid>,
) -> Vec<&'a T> {
    changed.iter().filter_map(|k| rows.get(k)).collect()
}

/// A read-model table keyed by one uuid column.
pub(crate) struct Table {
    pub name: &'static str,
    pub key: &'static str,
    pub columns: &'static [&'static str],
}

impl Table {
    /// Rows whose key is in `keys` (in a bulk fill, only the keys it has
    /// written are looked up: no other row is there).
    pub(crate) async fn load<T: DeserializeOwned + Send + Unpin + 'static>(
        &self,
        tx: &mut PgConnection,
        keys: &[Uuid],
        store: &Store<'_>,
    ) -> Result<Vec<T>, sqlx::Error> {
        let held: Vec<Uuid>;
        let keys = match store {
            Store::Guarded => keys,
            Store::Bulk(written) => {
                held = keys
                    .iter()
                    .filter(|k| written.holds(self.name, k))
                    .copied()
                    .collect();
                &held
            }
        };
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

    /// Rows whose key is in `keys`, by their key (`key` reads it from a row).
    pub(crate) async fn load_by_key<T, C>(
        &self,
        tx: &mut PgConnection,
        keys: &[Uuid],
        key: fn(&T) -> Uuid,
        store: &Store<'_>,
    ) -> Result<C, sqlx::Error>
    where
        T: DeserializeOwned + Send + Unpin + 'static,
        C: FromIterator<(Uuid, T)>,
    {
        let rows = self.load::<T>(tx, keys, store).await?;
        Ok(rows.into_iter().map(|r| (key(&r), r)).collect())
    }

    /// Insert or fully overwrite `rows` (sorted by key); in a bulk fill the
    /// rows new to the shadow are copied ([`CopyRow`]).
    pub(crate) async fn upsert_in<T: Serialize + Sync + CopyRow>(
        &self,
        tx: &mut PgConnection,
        rows: &[&T],
        store: &mut Store<'_>,
    ) -> Result<(), sqlx::Error> {
        self.store(tx, rows, store, true).await
    }

    /// Insert `rows`, ignoring any whose key exists; in a bulk fill the rows
    /// new to the shadow are copied ([`CopyRow`]).
    pub(crate) async fn insert_new_in<T: Serialize + Sync + CopyRow>(
        &self,
        tx: &mut PgConnection,
        rows: &[&T],
        store: &mut Store<'_>,
    ) -> Result<(), sqlx::Error> {
        self.store(tx, rows, store, false).await
    }

    async fn store<T: Serialize + Sync + CopyRow>(
        &self,
        tx: &mut PgConnection,
        rows: &[&T],
        store: &mut Store<'_>,
        overwrite: bool,
    ) -> Result<(), sqlx::Error> {
        let (new, existing): (Vec<&T>, Vec<&T>) = match store {
            Store::Guarded => (Vec::new(), rows.to_vec()),
            Store::Bulk(written) => rows
                .iter()
                .partition(|r| !written.holds(self.name, &r.key())),
        };
        if overwrite {
            self.upsert(tx, &existing).await?;
        } else {
            self.insert_new(tx, &existing).await?;
        }
        if let (Store::Bulk(written), false) = (store, new.is_empty()) {
            let mut copy = CopyRows::new(self.name, self.columns);
            for r in &new {
                r.copy_rest(copy.row().uuid(r.key()));
                written.record(self.name, r.key());
            }
            copy.copy(tx).await?;
        }
        Ok(())
    }

    /// Insert or fully overwrite `rows` (which must be sorted by key so that
    /// concurrent writers lock rows in the same order).
    pub(crate) async fn upsert<T: Serialize + Sync>(
        &self,
        tx: &mut PgConnection,
        rows: &[T],
    ) -> Result<(), sqlx::Error> {
        let set: Vec<String> = self
            .columns
            .iter()
            .filter(|c| **c != self.key)
            .map(|c| format!("{c} = EXCLUDED.{c}"))
            .collect();
        let on_conflict = format!("DO UPDATE SET {}", set.join(", "));
        self.insert(tx, rows, &on_conflict).await
    }

    /// Insert `rows`, ignoring any whose key exists.
    pub(crate) async fn insert_new<T: Serialize + Sync>(
        &self,
        tx: &mut PgConnection,
        rows: &[T],
    ) -> Result<(), sqlx::Error> {
        self.insert(tx, rows, "DO NOTHING").await
    }

    /// Insert `rows`; a row whose key exists gets `on_conflict`.
    async fn insert<T: Serialize + Sync>(
        &self,
        tx: &mut PgConnection,
        rows: &[T],
        on_conflict: &str,
    ) -> Result<(), sqlx::Error> {
        if rows.is_empty() {
            return Ok(());
        }
        let cols = self.columns.join(", ");
        let sql = format!(
            "INSERT INTO {name} ({cols}) SELECT {cols} FROM jsonb_populate_recordset(NULL::{name}, $1)
             ON CONFLICT ({key}) {on_conflict}",
            name = self.name,
            key = self.key,
        );
        sqlx::query(&sql).bind(Json(rows)).execute(&mut *tx).await?;
        Ok(())
    }
}

/// How a projector stores a batch's rows.
pub(crate) enum Store<'w> {
    /// Under the guard (the live path, catch-up, a rebuild's tail).
    Guarded,
    /// A rebuild's bulk fill (see `Projector::apply_bulk`): every event new,
    /// the shadow written by this fill alone, which remembers the keys it
    /// wrote. Rows it never wrote are not loaded, and are copied
    /// ([`CopyRows`]) rather than upserted; insert-only tables are copied.
    Bulk(&'w mut Written),
}

impl Store<'_> {
    pub(crate) fn is_bulk(&self) -> bool {
        matches!(self, Store::Bulk(_))
    }
}

/// A row that a bulk fill copies: its key, its table's first column, then
/// the rest of its fields in column order.
pub(crate) trait CopyRow {
    fn key(&self) -> Uuid;
    /// The fields after the key.
    fn copy_rest(&self, row: &mut CopyRows);
}

/// `copy_row! { Row, key, fn copy_rest(..) { .. } }`: [`CopyRow`] for a row
/// whose field `key` is the key.
macro_rules! copy_row {
    ($type:ty, $key:ident, $($copy_rest:tt)+) => {
        impl $crate::rows::CopyRow for $type {
            fn key(&self) -> ::uuid::Uuid {
                self.$key
            }

            $($copy_rest)+
        }
    };
}
pub(crate) use copy_row;

/// `apply` and `apply_bulk` of a projector whose `$apply_batch(tx, batch,
/// store)` serves both: under the guard ([`Store::Guarded`]) and in a
/// rebuild's bulk fill ([`Store::Bulk`]).
macro_rules! apply_by_store {
    ($apply_batch:ident) => {
        $crate::rows::apply_by_store!(|_this, tx, batch, store| $apply_batch(tx, batch, store));
    };
    (|$this:ident, $tx:ident, $batch:ident, $store:ident| $call:expr) => {
        async fn apply(
            &self,
            $tx: &mut PgConnection,
            $batch: &[SourcedEvent],
        ) -> Result<(), ProjectionError> {
            let ($this, $store) = (self, Store::Guarded);
            $call.await
        }

        async fn apply_bulk(
            &self,
            $tx: &mut PgConnection,
            $batch: &[SourcedEvent],
            written: &mut Written,
        ) -> Result<(), ProjectionError> {
            let ($this, $store) = (self, Store::Bulk(written));
            $call.await
        }
    };
}
pub(crate) use apply_by_store;

/// Rows for `COPY … FROM STDIN (FORMAT binary)`: the insert-only tables of a
/// rebuild's bulk fill, which start empty in the shadow, are written this way
/// (one multi-row insert per batch, no conflict checks, values not parsed
/// from text except JSON).
pub(crate) struct CopyRows {
    table: &'static str,
    columns: &'static [&'static str],
    buf: Vec<u8>,
}

/// Microseconds / days between the Unix epoch and PostgreSQL's (2000-01-01).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
const PG_EPOCH_DAYS: i32 = 10_957;

impl CopyRows {
    pub(crate) fn new(table: &'static str, columns: &'static [&'static str]) -> Self {
        let mut buf = Vec::with_capacity(64 * 1024);
        buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        buf.extend_from_slice(&0i32.to_be_bytes()); // flags
        buf.extend_from_slice(&0i32.to_be_bytes()); // header extension
        Self {
            table,
            columns,
            buf,
        }
    }

    /// Start a row; its fields follow, one call per column, in order.
    pub(crate) fn row(&mut self) -> &mut Self {
        self.buf
            .extend_from_slice(&(self.columns.len() as i16).to_be_bytes());
        self
    }

    fn field(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf
            .extend_from_slice(&(bytes.len() as i32).to_be_bytes());
        self.buf.extend_from_slice(bytes);
        self
    }

    pub(crate) fn uuid(&mut self, v: Uuid) -> &mut Self {
        self.field(v.as_bytes())
    }

    pub(crate) fn text(&mut self, v: &str) -> &mut Self {
        self.field(v.as_bytes())
    }

    pub(crate) fn int8(&mut self, v: i64) -> &mut Self {
        self.field(&v.to_be_bytes())
    }

    pub(crate) fn int4(&mut self, v: i32) -> &mut Self {
        self.field(&v.to_be_bytes())
    }

    pub(crate) fn float8(&mut self, v: f64) -> &mut Self {
        self.field(&v.to_be_bytes())
    }

    pub(crate) fn bool(&mut self, v: bool) -> &mut Self {
        self.field(&[u8::from(v)])
    }

    /// A `jsonb` field: format version 1, then the JSON text.
    pub(crate) fn jsonb(&mut self, v: &impl Serialize) -> &mut Self {
        let mut bytes = vec![1u8];
        // Serialising plain data into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut bytes, v);
        self.field(&bytes)
    }

    /// A nullable field: `field` writes it when there is a value.
    pub(crate) fn opt<V>(
        &mut self,
        v: Option<V>,
        field: fn(&mut Self, V) -> &mut Self,
    ) -> &mut Self {
        match v {
            Some(v) => field(self, v),
            None => self.null(),
        }
    }

    /// Rounded to microseconds exactly as PostgreSQL reads the JSON text
    /// of the live path (`rint(strtod("0.<fraction>") * 1e6)`), so rows
    /// written either way are equal.
    pub(crate) fn timestamptz(&mut self, v: DateTime<Utc>) -> &mut Self {
        self.int8(pg_micros(v) - PG_EPOCH_MICROS)
    }

    pub(crate) fn date(&mut self, v: Option<NaiveDate>) -> &mut Self {
        match v {
            None => self.null(),
            Some(d) => {
                let days = d.num_days_from_ce() - (PG_EPOCH_DAYS + 719_163);
                self.field(&days.to_be_bytes())
            }
        }
    }

    pub(crate) fn null(&mut self) -> &mut Self {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
        self
    }

    /// Send the rows in one `COPY`.
    pub(crate) async fn copy(mut self, tx: &mut PgConnection) -> Result<(), sqlx::Error> {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        let statement = format!(
            "COPY {} ({}) FROM STDIN (FORMAT binary)",
            self.table,
            self.columns.join(", ")
        );
        let mut copy = tx.copy_in_raw(&statement).await?;
        if let Err(e) = copy.send(self.buf).await {
            let _ = copy.abort("send failed").await;
            return Err(e);
        }
        copy.finish().await?;
        Ok(())
    }
}

/// Microseconds since the Unix epoch, rounded as PostgreSQL rounds the
/// fractional seconds of a timestamp it parses from text.
fn pg_micros(v: DateTime<Utc>) -> i64 {
    let nanos = v.timestamp_subsec_nanos();
    let micros = if nanos.is_multiple_of(1_000) {
        i64::from(nanos / 1_000)
    } else {
        let fraction: f64 = format!("0.{nanos:09}").parse().unwrap_or(0.0);
        (fraction * 1e6).round_ties_even() as i64
    };
    v.timestamp() * 1_000_000 + micros
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Times with sub-microsecond digits (ties included) copied in binary
    /// equal the same times read by PostgreSQL from their JSON text (the live
    /// path), so a bulk rebuild and the live model cannot differ by 1 µs.
    #[tokio::test]
    async fn copied_times_round_like_postgres_reading_json() {
        let db = ordertrail_testkit::pg::TestDatabase::new().await;
        let mut conn = db.pool.acquire().await.expect("connect");
        sqlx::query("CREATE TABLE times (i bigint, t timestamptz)")
            .execute(&mut *conn)
            .await
            .expect("table");
        let base = NaiveDate::from_ymd_opt(2026, 3, 1)
            .and_then(|d| d.and_hms_opt(23, 59, 59))
            .expect("time")
            .and_utc();
        let mut times = Vec::new();
        for micros in [0u32, 1, 2, 3, 122_999, 123_456, 999_999] {
            for sub in [0u32, 1, 499, 500, 501, 999] {
                times.push(base + chrono::Duration::nanoseconds(i64::from(micros * 1_000 + sub)));
            }
        }
        let mut copy = CopyRows::new("times", &["i", "t"]);
        for (i, t) in times.iter().enumerate() {
            copy.row().int8(i as i64).timestamptz(*t);
        }
        copy.copy(&mut conn).await.expect("copy");
        let json: Vec<serde_json::Value> = times
            .iter()
            .map(|t| serde_json::to_value(t).expect("json"))
            .collect();
        let differ: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM times c JOIN
               (SELECT ord - 1 AS i, (j #>> '{}')::timestamptz AS t
                FROM jsonb_array_elements($1) WITH ORDINALITY AS x(j, ord)) p USING (i)
             WHERE c.t IS DISTINCT FROM p.t",
        )
        .bind(Json(&json))
        .fetch_one(&mut *conn)
        .await
        .expect("compare");
        assert_eq!(differ, 0, "of {} times", times.len());
    }

    #[test]
    fn dates_and_times_count_from_the_postgres_epoch() {
        let mut rows = CopyRows::new("t", &["d", "t"]);
        let header = rows.buf.len();
        let epoch = NaiveDate::from_ymd_opt(2000, 1, 2).expect("date");
        rows.row()
            .date(Some(epoch))
            .timestamptz(epoch.and_hms_opt(0, 0, 1).expect("time").and_utc());
        let fields = &rows.buf[header + 2..];
        assert_eq!(fields[..8], [0, 0, 0, 4, 0, 0, 0, 1]);
        let micros = (86_400_000_000i64 + 1_000_000).to_be_bytes();
        assert_eq!(fields[8..12], [0, 0, 0, 8]);
        assert_eq!(fields[12..20], micros);
    }
}
