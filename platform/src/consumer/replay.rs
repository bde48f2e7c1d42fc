//! Rebuild and verify a read model from the event store (DESIGN.md, "Replay,
//! audit, reconciliation").
//!
//! Both build the model into fresh shadow tables: a schema `replay_<name>`
//! holding a copy (`LIKE … INCLUDING ALL`) of each table of the read model,
//! of the sequence guard and of the consumer's row. The shadow is filled by
//! the same runtime code as the live model, on connections whose
//! `search_path` puts the shadow schema first, reading the store in commit
//! order. It never touches Kafka and never publishes.
//!
//! When the shadow has caught up, the live consumer is paused by locking its
//! `consumers` row FOR UPDATE (every live batch takes it FOR SHARE first),
//! the tail is applied to the shadow, and then:
//!
//! - **rebuild** swaps, in that same transaction: each live table is
//!   dropped and its shadow moved into the live schema (index names kept),
//!   the live guard and store position are replaced by the shadow's. The
//!   live consumer resumes on commit, from its Kafka positions, and the guard
//!   drops what the rebuild already applied.
//! - **verify** compares the shadow with the live model row by row (by
//!   primary key) and rolls back.
//!
//! A rebuild killed at any point leaves the live model as it was (the shadow
//! schema is all it wrote); the next run drops the shadow and starts again.

use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::watch;

use std::collections::HashMap;

use ordertrail_schemas::AggregateKind;

use super::batch::Batch;
use super::{Context, Failure, Handler, ReadModelTable, RuntimeConfig, Written, instances, store};
use crate::event_log::{self, Position, UnparsedEvent};

/// Why a rebuild or verify failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("database: {context}: {source}")]
    Database {
        context: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("{0}")]
    Apply(String),
    #[error("{0} has no read-model tables to rebuild")]
    NoTables(&'static str),
    #[error("another rebuild or verify of {0} is running")]
    Busy(&'static str),
}

/// One rebuild or verify per consumer at a time: a session advisory lock on
/// a connection of its own, released when the replay ends or its process
/// dies.
async fn exclusive(pool: &PgPool, name: &'static str) -> Result<PgConnection, ReplayError> {
    let mut conn = PgConnection::connect_with(pool.connect_options().as_ref())
        .await
        .map_err(db("connect"))?;
    let locked: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext('ordertrail replay ' || $1))")
            .bind(name)
            .fetch_one(&mut conn)
            .await
            .map_err(db("take the replay lock"))?;
    if !locked {
        return Err(ReplayError::Busy(name));
    }
    Ok(conn)
}

fn db(context: &'static str) -> impl FnOnce(sqlx::Error) -> ReplayError {
    move |source| ReplayError::Database { context, source }
}

/// Progress of the store read, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Events read so far.
    pub events: u64,
    /// Events of the consumer's types in the store when the replay started.
    pub total: u64,
    /// Where the read stands.
    pub position: Position,
}

/// What a rebuild did.
#[derive(Debug, Clone, Serialize)]
pub struct RebuildSummary {
    pub projector: &'static str,
    pub events: u64,
    pub seconds: f64,
    pub events_per_second: f64,
    /// Events applied by the bulk fill ([`Handler::apply_bulk`]); the rest
    /// went through the guarded path.
    pub bulk_events: u64,
    /// Events applied under the pause, after catching up.
    pub tail_events: u64,
    /// How long the live consumer was paused for the tail and the swap.
    pub paused_seconds: f64,
    pub rows: Vec<(String, i64)>,
}

/// One row that differs between the live model and a rebuild.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    pub table: String,
    /// The row's primary key.
    pub key: serde_json::Value,
    /// `missing_in_live`, `missing_in_rebuild` or `different`.
    pub kind: &'static str,
    /// Columns whose values differ, with both values.
    pub columns: Vec<ColumnDifference>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColumnDifference {
    pub column: String,
    pub live: serde_json::Value,
    pub rebuilt: serde_json::Value,
}

/// What verify found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub projector: &'static str,
    pub events: u64,
    pub seconds: f64,
    /// Rows compared per table (rebuilt side).
    pub rows: Vec<(String, i64)>,
    /// Differing rows in all.
    pub differences_total: u64,
    /// The first differences, at most the limit asked for.
    pub differences: Vec<Difference>,
    /// Aggregates whose applied sequence differs between live and rebuilt
    /// (the live consumer is behind or stalled) when the comparison ran.
    pub guard_differences: u64,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.differences_total == 0 && self.guard_differences == 0
    }
}

/// The schema the live tables are in (first on the search path).
async fn live_schema(conn: &mut PgConnection, table: &str) -> Result<String, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT n.nspname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.oid = to_regclass($1)",
    )
    .bind(table)
    .fetch_one(conn)
    .await
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// Tables copied into the shadow besides the read model's own.
const RUNTIME_TABLES: [&str; 2] = ["projector_sequences", "consumers"];

/// The shadow of one consumer's model.
struct Shadow {
    schema: String,
    live: String,
    pool: PgPool,
    /// Plain indexes of the read model, and the keys of the tables keyed
    /// after the fill, built once the bulk fill is done.
    deferred_indexes: Vec<String>,
}

impl Shadow {
    /// Drop any earlier shadow and create it afresh.
    ///
    /// The read model's shadow tables get only the indexes the apply path
    /// may need while they fill: primary keys, unique constraints and indexes
    /// (upserts infer their conflict target from them) and partial indexes
    /// (work queues such as settlements' pending entries). Plain indexes,
    /// which serve queries, are built in one pass after the bulk fill
    /// ([`Shadow::finish`]), and so are the keys of the tables in
    /// `keyed_after_fill` ([`Handler::keyed_after_fill`]). (UNLOGGED tables set LOGGED before the swap were
    /// measured slower: the table is written twice.) The copies of the guard
    /// and the consumer row are UNLOGGED: they are copied into the live
    /// tables at the swap, never swapped themselves.
    async fn create(
        pool: &PgPool,
        name: &str,
        tables: &[ReadModelTable],
        keyed_after_fill: &[&str],
    ) -> Result<Self, ReplayError> {
        let schema = format!("replay_{name}");
        let mut conn = pool.acquire().await.map_err(db("connect"))?;
        let live = live_schema(&mut conn, "projector_sequences")
            .await
            .map_err(db("find the live schema"))?;
        let mut tx = conn.begin().await.map_err(db("begin"))?;
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {} CASCADE", quote(&schema)))
            .execute(&mut *tx)
            .await
            .map_err(db("drop the previous shadow"))?;
        sqlx::query(&format!("CREATE SCHEMA {}", quote(&schema)))
            .execute(&mut *tx)
            .await
            .map_err(db("create the shadow schema"))?;
        let (s, l) = (quote(&schema), quote(&live));
        for t in RUNTIME_TABLES {
            sqlx::query(&format!(
                "CREATE UNLOGGED TABLE {s}.{t} (LIKE {l}.{t} INCLUDING ALL)",
                t = quote(t)
            ))
            .execute(&mut *tx)
            .await
            .map_err(db("create a shadow table"))?;
        }
        let mut deferred_indexes = Vec::new();
        for table in tables {
            let t = quote(table.name);
            sqlx::query(&format!(
                "CREATE TABLE {s}.{t} (LIKE {l}.{t} INCLUDING ALL EXCLUDING INDEXES)"
            ))
            .execute(&mut *tx)
            .await
            .map_err(db("create a shadow table"))?;
            // Primary keys and unique constraints, under their live names.
            let constraints: Vec<String> = sqlx::query_scalar(&format!(
                "SELECT format('ALTER TABLE {s}.{t} ADD CONSTRAINT %I %s', conname, pg_get_constraintdef(oid))
                 FROM pg_constraint WHERE conrelid = '{l}.{t}'::regclass AND contype IN ('p', 'u', 'x')
                 ORDER BY contype, conname"
            ))
            .fetch_all(&mut *tx)
            .await
            .map_err(db("read live constraints"))?;
            // Other indexes, under their live names, on the shadow table.
            let indexes: Vec<(String, bool)> = sqlx::query_as(&format!(
                "SELECT regexp_replace(pg_get_indexdef(i.indexrelid), ' ON \\S+ ', ' ON {s}.{t} '),
                        i.indisunique OR i.indpred IS NOT NULL
                 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                 WHERE i.indrelid = '{l}.{t}'::regclass
                   AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
                 ORDER BY c.relname"
            ))
            .fetch_all(&mut *tx)
            .await
            .map_err(db("read live indexes"))?;
            let keys_now = !keyed_after_fill.contains(&table.name);
            let (keys, deferred_keys) = if keys_now {
                (constraints, Vec::new())
            } else {
                (Vec::new(), constraints)
            };
            deferred_indexes.extend(deferred_keys);
            for sql in keys.iter().chain(
                indexes
                    .iter()
                    .filter(|(_, needed)| *needed)
                    .map(|(sql, _)| sql),
            ) {
                sqlx::query(sql)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("index a shadow table"))?;
            }
            deferred_indexes.extend(
                indexes
                    .into_iter()
                    .filter(|(_, needed)| !needed)
                    .map(|(sql, _)| sql),
            );
        }
        tx.commit().await.map_err(db("commit the shadow schema"))?;
        let options: PgConnectOptions = (*pool.connect_options()).clone().options([
            ("plan_cache_mode", "force_custom_plan".to_owned()),
            ("search_path", format!("{s},{l}")),
            // A crash loses only shadow progress, which a re-run redoes.
            ("synchronous_commit", "off".to_owned()),
        ]);
        let shadow_pool = crate::db::pool_options(3).connect_lazy_with(options);
        Ok(Self {
            schema,
            live,
            pool: shadow_pool,
            deferred_indexes,
        })
    }

    /// After the bulk fill: build the deferred indexes in one pass each,
    /// and give the planner statistics of the shadow's guard (written in one
    /// go, never analysed): without them, installing it at the swap probes
    /// the live guard's index once per row (1.55 s instead of 0.32 s for
    /// 240,000 aggregates).
    async fn finish(&mut self) -> Result<(), ReplayError> {
        let mut conn = self.pool.acquire().await.map_err(db("connect"))?;
        for sql in self.deferred_indexes.drain(..) {
            sqlx::query(&sql)
                .execute(&mut *conn)
                .await
                .map_err(db("build a deferred index"))?;
        }
        sqlx::query(&format!(
            "ANALYZE {}.projector_sequences",
            quote(&self.schema)
        ))
        .execute(&mut *conn)
        .await
        .map_err(db("analyse the shadow guard"))?;
        Ok(())
    }

    async fn drop_schema(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        sqlx::query(&format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            quote(&self.schema)
        ))
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Row count per table.
    async fn counts(
        &self,
        conn: &mut PgConnection,
        tables: &[ReadModelTable],
    ) -> Result<Vec<(String, i64)>, sqlx::Error> {
        let mut out = Vec::new();
        for t in tables {
            let n: i64 = sqlx::query_scalar(&format!(
                "SELECT count(*) FROM {}.{}",
                quote(&self.schema),
                quote(t.name)
            ))
            .fetch_one(&mut *conn)
            .await?;
            out.push((t.name.to_owned(), n));
        }
        Ok(out)
    }
}

/// Count the events of `types` in the store (for the progress bar).
async fn count_events(pool: &PgPool, types: &[&str]) -> Result<u64, sqlx::Error> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = ANY($1)")
        .bind(types)
        .fetch_one(pool)
        .await?;
    Ok(n.max(0) as u64)
}

/// Fill the shadow from the store until caught up.
async fn fill<H: Handler>(
    handler: &H,
    shadow: &Shadow,
    batch_size: usize,
    progress: &mut (dyn FnMut(Progress) + Send),
    total: u64,
) -> Result<u64, ReplayError> {
    let (_stop_tx, stop) = watch::channel(false);
    let mut config = RuntimeConfig::store_only(handler.name());
    config.store_batch_size = batch_size.max(1);
    let mut cx = Context {
        handler,
        types: handler.sources().iter().map(|k| k.as_str()).collect(),
        config,
        pool: shadow.pool.clone(),
        status: instances::Status::new(handler.name(), "replay"),
        stop,
        narrow: 0,
    };
    store::ensure_consumer(&cx.pool, handler.name())
        .await
        .map_err(db("create the shadow consumer"))?;
    let mut events = 0u64;
    let mut report = |n: usize, position: Position| {
        events += n as u64;
        progress(Progress {
            events,
            total,
            position,
        });
    };
    loop {
        match store::catch_up(&mut cx, Some(&mut report)).await {
            Ok(Ok(())) => break,
            Ok(Err(Failure::Narrow { .. })) => continue,
            Ok(Err(Failure::Stalled { event, reason })) => {
                return Err(ReplayError::Apply(format!(
                    "cannot apply {event}: {reason}"
                )));
            }
            Ok(Err(Failure::Unavailable(reason))) => return Err(ReplayError::Apply(reason)),
            Err(_stop) => return Err(ReplayError::Apply("stopped".into())),
        }
    }
    Ok(events)
}

/// Events read ahead of the apply loop while it works on a batch.
const READ_AHEAD: usize = 2;

/// Fill a fresh shadow from the store as fast as the database allows.
///
/// The store, read in commit order from its start, holds every aggregate's
/// events once and in sequence order, so the sequence guard has nothing to
/// drop or fill: the bulk fill skips it and records the guard once at the
/// end. Three stages run a batch apart: fetching (payload and metadata left
/// as JSON text), parsing and decoding (on the blocking pool), applying.
/// Each batch is applied by the handler's [`Handler::apply_bulk`] (its own
/// events→rows logic, stored the cheap way a fresh shadow allows, with the
/// keys written so far in [`Written`]), with the shadow's store position, in
/// one transaction.
///
/// A batch the handler cannot apply ends the bulk fill early (its
/// transaction rolled back, the guard written for what was applied); the
/// guarded [`fill`] then finds and names the event.
async fn bulk_fill<H: Handler>(
    handler: &H,
    shadow: &Shadow,
    batch_size: usize,
    progress: &mut (dyn FnMut(Progress) + Send),
    total: u64,
) -> Result<u64, ReplayError> {
    let name = handler.name();
    store::ensure_consumer(&shadow.pool, name)
        .await
        .map_err(db("create the shadow consumer"))?;
    let limit = batch_size.max(1);
    // Three stages, each a batch apart: fetch (the store's JSON left as
    // text), parse and decode (on the blocking pool), apply.
    let (tx_fetched, mut fetched) = tokio::sync::mpsc::channel::<(Vec<UnparsedEvent>, Position)>(1);
    let (tx_batches, mut batches) = tokio::sync::mpsc::channel(READ_AHEAD);
    let reader = {
        let pool = shadow.pool.clone();
        let types: Vec<&'static str> = handler.sources().iter().map(|k| k.as_str()).collect();
        tokio::spawn(async move {
            let mut position = Position::START;
            loop {
                let events =
                    event_log::read_after_of_types_unparsed(&pool, position, &types, limit as i64)
                        .await?;
                let read = events.len();
                let Some(last) = events.last().map(|e| e.position()) else {
                    return Ok::<(), sqlx::Error>(());
                };
                if tx_fetched.send((events, last)).await.is_err() || read < limit {
                    return Ok(());
                }
                position = last;
            }
        })
    };
    let parser = tokio::spawn(async move {
        while let Some((events, last)) = fetched.recv().await {
            let batch = tokio::task::spawn_blocking(move || parse_batch(events))
                .await
                .ok()
                .flatten();
            if tx_batches.send((batch, last)).await.is_err() {
                return;
            }
        }
    });
    let mut applied = 0u64;
    let mut guard: HashMap<(AggregateKind, String), i64> = HashMap::new();
    let mut written = Written::default();
    while let Some((batch, last)) = batches.recv().await {
        let Some(batch) = batch else { break };
        let events = batch.into_events();
        let mut tx = shadow.pool.begin().await.map_err(db("begin"))?;
        if let Err(e) = handler.apply_bulk(&mut tx, &events, &mut written).await {
            tracing::info!(consumer = name, error = %e, "bulk fill stopped; the guarded fill takes over");
            break;
        }
        store::advance(&mut *tx, name, last)
            .await
            .map_err(db("advance the shadow position"))?;
        tx.commit().await.map_err(db("commit a shadow batch"))?;
        for e in &events {
            let env = &e.envelope;
            guard.insert((env.aggregate_type, env.aggregate_id.clone()), env.sequence);
        }
        applied += events.len() as u64;
        progress(Progress {
            events: applied,
            total,
            position: last,
        });
    }
    drop(batches);
    let _ = parser.await;
    match reader.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            return Err(ReplayError::Database {
                context: "read the store",
                source: e,
            });
        }
        Err(e) => return Err(ReplayError::Apply(format!("store reader: {e}"))),
    }
    write_guard(&shadow.pool, name, guard).await?;
    Ok(applied)
}

/// Parse and decode a fetched batch; `None` if any event cannot be (the
/// guarded fill then finds and names it).
fn parse_batch(events: Vec<UnparsedEvent>) -> Option<Batch> {
    let events = events
        .into_iter()
        .map(UnparsedEvent::parse)
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    Batch::from_store(events).ok()
}

/// Record the shadow's sequence guard after a bulk fill.
async fn write_guard(
    pool: &PgPool,
    name: &str,
    guard: HashMap<(AggregateKind, String), i64>,
) -> Result<(), ReplayError> {
    let mut rows: Vec<((AggregateKind, String), i64)> = guard.into_iter().collect();
    rows.sort_unstable_by(|a, b| (a.0.0.as_str(), &a.0.1).cmp(&(b.0.0.as_str(), &b.0.1)));
    for chunk in rows.chunks(50_000) {
        let types: Vec<&str> = chunk.iter().map(|((k, _), _)| k.as_str()).collect();
        let ids: Vec<&str> = chunk.iter().map(|((_, i), _)| i.as_str()).collect();
        let seqs: Vec<i64> = chunk.iter().map(|(_, s)| *s).collect();
        sqlx::query(
            "INSERT INTO projector_sequences (projector, aggregate_type, aggregate_id, last_sequence)
             SELECT $1, t, i, s FROM unnest($2::text[], $3::text[], $4::bigint[]) AS x(t, i, s)",
        )
        .bind(name)
        .bind(&types)
        .bind(&ids)
        .bind(&seqs)
        .execute(pool)
        .await
        .map_err(db("write the shadow guard"))?;
    }
    Ok(())
}

/// Lock the live consumer's row: pauses the live consumer until commit or
/// rollback. The row is created if the consumer never ran.
async fn pause_live(tx: &mut PgConnection, live: &str, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO {}.consumers (consumer) VALUES ($1) ON CONFLICT DO NOTHING",
        quote(live)
    ))
    .bind(name)
    .execute(&mut *tx)
    .await?;
    sqlx::query(&format!(
        "SELECT 1 FROM {}.consumers WHERE consumer = $1 FOR UPDATE",
        quote(live)
    ))
    .bind(name)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// A replay with its shadow filled from the store up to now.
struct Prepared {
    name: &'static str,
    tables: &'static [ReadModelTable],
    /// The replay lock's connection: held until the replay ends.
    lock: PgConnection,
    started: Instant,
    total: u64,
    shadow: Shadow,
    events: u64,
    bulk_events: u64,
}

/// Take the replay lock, create the shadow and fill it from the store.
async fn prepare<H: Handler>(
    handler: &H,
    pool: &PgPool,
    batch_size: usize,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<Prepared, ReplayError> {
    let name = handler.name();
    let tables = handler.tables();
    if tables.is_empty() {
        return Err(ReplayError::NoTables(name));
    }
    let lock = exclusive(pool, name).await?;
    let started = Instant::now();
    let types: Vec<&str> = handler.sources().iter().map(|k| k.as_str()).collect();
    let total = count_events(pool, &types)
        .await
        .map_err(db("count events"))?;
    let mut shadow = Shadow::create(pool, name, tables, handler.keyed_after_fill()).await?;
    let bulk = bulk_fill(handler, &shadow, batch_size, progress, total).await?;
    shadow.finish().await?;
    let mut progress = |p: Progress| {
        progress(Progress {
            events: bulk + p.events,
            ..p
        })
    };
    let events = bulk + fill(handler, &shadow, batch_size, &mut progress, total).await?;
    Ok(Prepared {
        name,
        tables,
        lock,
        started,
        total,
        shadow,
        events,
        bulk_events: bulk,
    })
}

/// Rebuild `handler`'s read model from the store and swap it in.
pub async fn rebuild<H: Handler>(
    handler: H,
    pool: &PgPool,
    batch_size: usize,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<RebuildSummary, ReplayError> {
    let Prepared {
        name,
        tables,
        lock,
        started,
        total,
        shadow,
        events,
        bulk_events,
    } = prepare(&handler, pool, batch_size, progress).await?;

    // Pause the live consumer, apply the tail, swap.
    let mut conn = pool.acquire().await.map_err(db("connect"))?;
    let mut tx = conn.begin().await.map_err(db("begin the swap"))?;
    let paused = Instant::now();
    pause_live(&mut tx, &shadow.live, name)
        .await
        .map_err(db("pause the live consumer"))?;
    let tail_events = fill(&handler, &shadow, batch_size, &mut |_| {}, total).await?;
    for t in tables {
        swap_table(&mut tx, &shadow, t.name).await?;
    }
    install_guard(&mut tx, &shadow, name).await?;
    let (s, l) = (quote(&shadow.schema), quote(&shadow.live));
    sqlx::query(&format!(
        "UPDATE {l}.consumers c SET store_txid = r.store_txid, store_position = r.store_position, updated_at = now()
         FROM {s}.consumers r WHERE c.consumer = $1 AND r.consumer = $1"
    ))
    .bind(name)
    .execute(&mut *tx)
    .await
    .map_err(db("install the rebuilt store position"))?;
    let rows = counts_live(&mut tx, &shadow.live, tables)
        .await
        .map_err(db("count rows"))?;
    shadow
        .drop_schema(&mut tx)
        .await
        .map_err(db("drop the shadow schema"))?;
    tx.commit().await.map_err(db("commit the swap"))?;
    let _ = lock.close().await;
    let paused_seconds = paused.elapsed().as_secs_f64();
    let seconds = started.elapsed().as_secs_f64();
    let all = events + tail_events;
    Ok(RebuildSummary {
        projector: name,
        events: all,
        seconds,
        events_per_second: all as f64 / seconds.max(1e-6),
        bulk_events,
        tail_events,
        paused_seconds,
        rows,
    })
}

/// Make the live sequence guard of `name` equal to the rebuilt one, writing
/// only the rows that differ. A rebuild of a model the live consumer keeps
/// up to date finds the two guards almost equal (one row per aggregate):
/// deleting every live row and inserting every rebuilt one wrote twice the
/// guard, each insert checking its key against the deleted row, in the
/// paused window.
async fn install_guard(
    tx: &mut PgConnection,
    shadow: &Shadow,
    name: &str,
) -> Result<(), ReplayError> {
    let (s, l) = (quote(&shadow.schema), quote(&shadow.live));
    sqlx::query(&format!(
        "DELETE FROM {l}.projector_sequences p WHERE p.projector = $1 AND NOT EXISTS
           (SELECT 1 FROM {s}.projector_sequences r WHERE r.projector = $1
              AND r.aggregate_type = p.aggregate_type AND r.aggregate_id = p.aggregate_id)"
    ))
    .bind(name)
    .execute(&mut *tx)
    .await
    .map_err(db("clear the live guard"))?;
    sqlx::query(&format!(
        "INSERT INTO {l}.projector_sequences
         SELECT r.* FROM {s}.projector_sequences r
           LEFT JOIN {l}.projector_sequences q ON q.projector = $1
             AND q.aggregate_type = r.aggregate_type AND q.aggregate_id = r.aggregate_id
         WHERE r.projector = $1 AND q.last_sequence IS DISTINCT FROM r.last_sequence
         ORDER BY r.aggregate_type, r.aggregate_id
         ON CONFLICT (projector, aggregate_type, aggregate_id)
           DO UPDATE SET last_sequence = EXCLUDED.last_sequence"
    ))
    .bind(name)
    .execute(&mut *tx)
    .await
    .map_err(db("install the rebuilt guard"))?;
    Ok(())
}

async fn counts_live(
    conn: &mut PgConnection,
    live: &str,
    tables: &[ReadModelTable],
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let mut out = Vec::new();
    for t in tables {
        let n: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM {}.{}",
            quote(live),
            quote(t.name)
        ))
        .fetch_one(&mut *conn)
        .await?;
        out.push((t.name.to_owned(), n));
    }
    Ok(out)
}

/// Replace the live table by its shadow, keeping the live index names.
async fn swap_table(
    tx: &mut PgConnection,
    shadow: &Shadow,
    table: &str,
) -> Result<(), ReplayError> {
    let (s, l, t) = (quote(&shadow.schema), quote(&shadow.live), quote(table));
    // Index name -> definition without names, for the live table.
    let shape = "regexp_replace(pg_get_indexdef(i.indexrelid), '^CREATE (UNIQUE )?INDEX \\S+ ON \\S+ ', 'CREATE \\1INDEX ON ')";
    let live_indexes: Vec<(String, String)> = sqlx::query_as(&format!(
        "SELECT c.relname::text, {shape} FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
         WHERE i.indrelid = '{l}.{t}'::regclass"
    ))
    .fetch_all(&mut *tx)
    .await
    .map_err(db("read live indexes"))?;
    sqlx::query(&format!("DROP TABLE {l}.{t}"))
        .execute(&mut *tx)
        .await
        .map_err(db("drop the live table"))?;
    sqlx::query(&format!("ALTER TABLE {s}.{t} SET SCHEMA {l}"))
        .execute(&mut *tx)
        .await
        .map_err(db("move the rebuilt table"))?;
    let new_indexes: Vec<(String, String)> = sqlx::query_as(&format!(
        "SELECT c.relname::text, {shape} FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
         WHERE i.indrelid = '{l}.{t}'::regclass"
    ))
    .fetch_all(&mut *tx)
    .await
    .map_err(db("read rebuilt indexes"))?;
    for (new_name, def) in new_indexes {
        if let Some((old_name, _)) = live_indexes.iter().find(|(_, d)| *d == def)
            && *old_name != new_name
        {
            sqlx::query(&format!(
                "ALTER INDEX {l}.{} RENAME TO {}",
                quote(&new_name),
                quote(old_name)
            ))
            .execute(&mut *tx)
            .await
            .map_err(db("rename a rebuilt index"))?;
        }
    }
    Ok(())
}

/// How long verify waits for the live consumer to reach the rebuilt state.
const VERIFY_WAIT: Duration = Duration::from_secs(15);

/// Rebuild into shadow tables and compare with the live model row by row,
/// without swapping. At most `max_differences` differences are listed.
pub async fn verify<H: Handler>(
    handler: H,
    pool: &PgPool,
    batch_size: usize,
    max_differences: usize,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<VerifyReport, ReplayError> {
    let Prepared {
        name,
        tables,
        lock,
        started,
        total,
        shadow,
        mut events,
        ..
    } = prepare(&handler, pool, batch_size, progress).await?;
    let mut conn = pool.acquire().await.map_err(db("connect"))?;
    let deadline = Instant::now() + VERIFY_WAIT;
    let report = loop {
        let mut tx = conn.begin().await.map_err(db("begin"))?;
        pause_live(&mut tx, &shadow.live, name)
            .await
            .map_err(db("pause the live consumer"))?;
        events += fill(&handler, &shadow, batch_size, &mut |_| {}, total).await?;
        let guard_differences = guard_differences(&mut tx, &shadow, name)
            .await
            .map_err(db("compare guards"))?;
        if guard_differences > 0 && Instant::now() < deadline {
            // The live consumer is behind: let it catch up, then look again.
            tx.rollback()
                .await
                .map_err(db("resume the live consumer"))?;
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let mut differences = Vec::new();
        let mut differences_total = 0u64;
        for t in tables {
            let (n, mut listed) = compare_table(
                &mut tx,
                &shadow,
                t,
                max_differences.saturating_sub(differences.len()),
            )
            .await?;
            differences_total += n;
            differences.append(&mut listed);
        }
        let rows = shadow
            .counts(&mut tx, tables)
            .await
            .map_err(db("count rows"))?;
        tx.rollback()
            .await
            .map_err(db("resume the live consumer"))?;
        break VerifyReport {
            projector: name,
            events,
            seconds: 0.0,
            rows,
            differences_total,
            differences,
            guard_differences,
        };
    };
    shadow
        .drop_schema(&mut conn)
        .await
        .map_err(db("drop the shadow schema"))?;
    let _ = lock.close().await;
    Ok(VerifyReport {
        seconds: started.elapsed().as_secs_f64(),
        ..report
    })
}

/// Aggregates whose applied sequence differs between live and rebuilt.
async fn guard_differences(
    tx: &mut PgConnection,
    shadow: &Shadow,
    name: &str,
) -> Result<u64, sqlx::Error> {
    let (s, l) = (quote(&shadow.schema), quote(&shadow.live));
    let n: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM
           (SELECT aggregate_type, aggregate_id, last_sequence FROM {l}.projector_sequences WHERE projector = $1) a
           FULL JOIN
           (SELECT aggregate_type, aggregate_id, last_sequence FROM {s}.projector_sequences WHERE projector = $1) b
           USING (aggregate_type, aggregate_id)
         WHERE a.last_sequence IS DISTINCT FROM b.last_sequence
           -- A live row pruned by retention (`prune_guards`) stands for the
           -- aggregate's highest sequence up to the live store position.
           AND NOT (a.last_sequence IS NULL AND b.last_sequence =
                    (SELECT max(e.sequence) FROM events e, {l}.consumers c
                     WHERE c.consumer = $1 AND e.aggregate_type = b.aggregate_type
                       AND e.aggregate_id = b.aggregate_id
                       AND (e.transaction_id, e.global_position) <= (c.store_txid, c.store_position)))"
    ))
    .bind(name)
    .fetch_one(tx)
    .await?;
    Ok(n.max(0) as u64)
}

/// Differing rows of one table: how many, and the first `limit`.
async fn compare_table(
    tx: &mut PgConnection,
    shadow: &Shadow,
    table: &ReadModelTable,
    limit: usize,
) -> Result<(u64, Vec<Difference>), ReplayError> {
    let (s, l, t) = (
        quote(&shadow.schema),
        quote(&shadow.live),
        quote(table.name),
    );
    let key_columns: Vec<String> = sqlx::query_scalar(&format!(
        "SELECT a.attname::text FROM pg_index i
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
         WHERE i.indrelid = '{l}.{t}'::regclass AND i.indisprimary
         ORDER BY array_position(i.indkey::int2[], a.attnum)"
    ))
    .fetch_all(&mut *tx)
    .await
    .map_err(db("read the primary key"))?;
    if key_columns.is_empty() {
        return Err(ReplayError::Apply(format!(
            "table {} has no primary key to compare by",
            table.name
        )));
    }
    let columns: Vec<String> = sqlx::query_scalar(&format!(
        "SELECT attname::text FROM pg_attribute
         WHERE attrelid = '{l}.{t}'::regclass AND attnum > 0 AND NOT attisdropped
           AND NOT (attname::text = ANY($1))
         ORDER BY attnum"
    ))
    .bind(table.processing_time_columns)
    .fetch_all(&mut *tx)
    .await
    .map_err(db("read the columns"))?;
    let list = |alias: &str, names: &[String]| {
        names
            .iter()
            .map(|c| format!("{alias}.{}", quote(c)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let key = format!(
        "jsonb_build_object({})",
        key_columns
            .iter()
            .map(|c| format!(
                "'{}', coalesce(a.{q}, b.{q})",
                c.replace('\'', "''"),
                q = quote(c)
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let join = key_columns
        .iter()
        .map(|c| format!("a.{q} = b.{q}", q = quote(c)))
        .collect::<Vec<_>>()
        .join(" AND ");
    let first = quote(&key_columns[0]);
    // Rows are compared as row values; only the listed ones are turned into
    // JSON for the report.
    let sql = format!(
        "WITH d AS MATERIALIZED (
           SELECT {key} AS k, a.{first} IS NOT NULL AS in_live, b.{first} IS NOT NULL AS in_rebuilt, a AS live, b AS rebuilt
           FROM {l}.{t} a FULL JOIN {s}.{t} b ON {join}
           WHERE a.{first} IS NULL OR b.{first} IS NULL
              OR ROW({la}) IS DISTINCT FROM ROW({lb}))
         SELECT (SELECT count(*) FROM d), d.k,
                CASE WHEN d.in_live THEN to_jsonb(d.live) - $1::text[] END,
                CASE WHEN d.in_rebuilt THEN to_jsonb(d.rebuilt) - $1::text[] END
         FROM d ORDER BY d.k::text LIMIT $2",
        la = list("a", &columns),
        lb = list("b", &columns),
    );
    type Row = (
        i64,
        serde_json::Value,
        Option<serde_json::Value>,
        Option<serde_json::Value>,
    );
    let rows: Vec<Row> = sqlx::query_as(&sql)
        .bind(table.processing_time_columns)
        .bind(limit.max(1) as i64)
        .fetch_all(&mut *tx)
        .await
        .map_err(db("compare rows"))?;
    let total = rows.first().map_or(0, |r| r.0.max(0) as u64);
    let listed = rows
        .into_iter()
        .take(limit)
        .map(|(_, key, live, rebuilt)| difference(table.name, key, live, rebuilt))
        .collect();
    Ok((total, listed))
}

fn difference(
    table: &str,
    key: serde_json::Value,
    live: Option<serde_json::Value>,
    rebuilt: Option<serde_json::Value>,
) -> Difference {
    let (kind, columns) = match (&live, &rebuilt) {
        (None, _) => ("missing_in_live", Vec::new()),
        (_, None) => ("missing_in_rebuild", Vec::new()),
        (Some(a), Some(b)) => {
            let empty = serde_json::Map::new();
            let (a, b) = (
                a.as_object().unwrap_or(&empty),
                b.as_object().unwrap_or(&empty),
            );
            let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
            names.sort();
            names.dedup();
            let columns = names
                .into_iter()
                .filter(|n| a.get(*n) != b.get(*n))
                .map(|n| ColumnDifference {
                    column: n.clone(),
                    live: a.get(n).cloned().unwrap_or(serde_json::Value::Null),
                    rebuilt: b.get(n).cloned().unwrap_or(serde_json::Value::Null),
                })
                .collect();
            ("different", columns)
        }
    };
    Difference {
        table: table.to_owned(),
        key,
        kind,
        columns,
    }
}
