//! Write-side benchmark: orders placed per second through the HTTP API, and
//! the raw PostgreSQL ceiling for the same work.
//!
//! 1. Migrates and seeds the database named by `DATABASE_URL` (scripts/bench.sh
//!    starts a private server with fsync on), starts the real `ordertrail-api`
//!    binary as its own process, and drives `POST /v1/orders` (each with its own
//!    `Idempotency-Key` and customer token) from this separate process at a fixed
//!    concurrency for a fixed time, after a warm-up.
//! 2. Runs pgbench at the same concurrency with a script executing exactly the
//!    SQL one PlaceOrder executes in the command service (idempotency claim,
//!    restaurant and menu look-ups, aggregate load, the event append transaction
//!    with its command-log trigger), with the payload and
//!    metadata of a real OrderPlaced event.
//! 3. Runs pgbench once more with the raw one-append ceiling of issue 16:
//!    one transaction that reads one stream and inserts one event row into a
//!    table shaped like `events` (same columns and indexes, no trigger).
//! 4. Prints throughput, p50/p95/p99 latency, both ceilings and both ratios.
//!
//! Absolute numbers swing by 2x on shared machines; compare the ratio.

use ordertrail_bench::load::run_load;
use ordertrail_bench::{ApiProcess, ms, spawn_api, wait_ready};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use ordertrail_launcher::seed::seed_ids;

/// Benchmark PlaceOrder through the API against the PostgreSQL ceiling.
#[derive(Debug, Parser)]
struct Config {
    /// PostgreSQL URL (its role must be able to create tables: migrations run).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// Concurrent in-flight requests (and pgbench clients). 8 keeps both
    /// cores busy without a queue; at 16 the closed loop mostly adds waiting.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Measured seconds per phase.
    #[arg(long, default_value_t = 20)]
    duration_secs: u64,
    /// Warm-up seconds before measuring the API.
    #[arg(long, default_value_t = 3)]
    warmup_secs: u64,
    /// The API binary (default: next to this one).
    #[arg(long)]
    api_bin: Option<PathBuf>,
    /// The pgbench binary.
    #[arg(long, default_value = "pgbench")]
    pgbench: String,
    /// API database pool size.
    #[arg(long, default_value_t = 16)]
    db_pool_size: u32,
}

#[tokio::main]
async fn main() -> Result<()> {
    let config = Config::parse();
    let pool = ordertrail_platform::db::connect(&config.database_url, 4)
        .await
        .context("connect")?;
    ordertrail_platform::db::migrate(&pool)
        .await
        .context("migrate")?;
    ordertrail_launcher::seed::seed(&pool)
        .await
        .context("seed")?;
    let fsync: String = sqlx::query_scalar("SHOW fsync").fetch_one(&pool).await?;
    let sync_commit: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(&pool)
        .await?;

    let ApiProcess {
        child: mut api,
        base,
        secret,
    } = spawn_api(
        config.api_bin.as_deref(),
        &config.database_url,
        config.db_pool_size,
    )?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(config.concurrency * 2)
        .timeout(Duration::from_secs(10))
        .build()?;
    wait_ready(&client, &base).await?;

    println!("== PlaceOrder through the HTTP API ==");
    println!(
        "machine: {} cores; PostgreSQL fsync={fsync} synchronous_commit={sync_commit}; concurrency {}; {} s measured after {} s warm-up",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        config.concurrency,
        config.duration_secs,
        config.warmup_secs
    );
    let load = |secs| {
        run_load(
            &client,
            &base,
            &secret,
            config.concurrency,
            Duration::from_secs(secs),
        )
    };
    load(config.warmup_secs).await?;
    let result = load(config.duration_secs).await?;
    let api_rate = result.ok as f64 / result.elapsed.as_secs_f64();
    println!(
        "api: {} orders in {:.1} s = {:.0} orders/s; errors {}; latency p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        result.ok,
        result.elapsed.as_secs_f64(),
        api_rate,
        result.errors,
        ms(result.hist.value_at_quantile(0.50)),
        ms(result.hist.value_at_quantile(0.95)),
        ms(result.hist.value_at_quantile(0.99)),
        ms(result.hist.max()),
    );
    let _ = api.kill().await;

    // A real event and answer to put in the pgbench script.
    let (payload, metadata): (String, String) = sqlx::query_as(
        "SELECT payload::text, metadata::text FROM events WHERE event_type = 'OrderPlaced' ORDER BY global_position DESC LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .context("sample event")?;
    let api_p99 = ms(result.hist.value_at_quantile(0.99));
    let same_sql = pgbench(
        &config,
        "the same SQL",
        &pgbench_script(&payload, &metadata)?,
    )
    .await?;
    // The raw one-append ceiling (issue 16): a table shaped like `events`
    // (same columns, defaults and indexes; no command-log trigger), one
    // transaction that reads one stream and appends one row to it.
    sqlx::query("DROP TABLE IF EXISTS bench_raw_events")
        .execute(&pool)
        .await?;
    sqlx::query("CREATE TABLE bench_raw_events (LIKE events INCLUDING ALL)")
        .execute(&pool)
        .await?;
    let raw = pgbench(
        &config,
        "one append",
        &raw_append_script(&payload, &metadata),
    )
    .await?;
    sqlx::query("DROP TABLE bench_raw_events")
        .execute(&pool)
        .await?;
    println!("== Result ==");
    println!(
        "ratio api/same SQL = {:.2} (target >= 0.60); api/raw append ceiling = {:.2} (target >= 0.80); api p99 = {api_p99:.1} ms (target <= 25 ms)",
        api_rate / same_sql,
        api_rate / raw,
    );
    Ok(())
}

/// Runs `script` through pgbench at the benchmark's concurrency for the
/// measured time; prints and returns its transactions per second.
async fn pgbench(config: &Config, label: &str, script: &str) -> Result<f64> {
    let script_path = std::env::temp_dir().join(format!(
        "ordertrail-place-order-{}-{}.sql",
        std::process::id(),
        label.replace(' ', "-")
    ));
    std::fs::write(&script_path, script)?;
    println!(
        "== PostgreSQL ceiling: {label} through pgbench ({}) ==",
        script_path.display()
    );
    let out = tokio::process::Command::new(&config.pgbench)
        .args(["-n", "-M", "prepared", "-j", "2", "-c"])
        .arg(config.concurrency.to_string())
        .arg("-T")
        .arg(config.duration_secs.to_string())
        .arg("-f")
        .arg(&script_path)
        .arg("-d")
        .arg(&config.database_url)
        .output()
        .await
        .context("run pgbench");
    let _ = std::fs::remove_file(&script_path);
    let out = out?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "pgbench failed: {}\n{}",
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let tps = stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("tps = ")
                .and_then(|r| r.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
        })
        .context("pgbench printed no tps")?;
    let latency = stdout
        .lines()
        .find(|l| l.starts_with("latency average"))
        .unwrap_or("latency average = ?");
    println!("pgbench ({label}): {tps:.0} transactions/s; {latency}");
    Ok(tps)
}

/// pgbench (prepared mode) reads `:name` as a variable even inside string
/// literals, so JSON gets a space after each key separator (same JSON value)
/// and no literal in a script holds a colon before a name character.
fn quote(s: &str) -> String {
    s.replace('\'', "''").replace("\":", "\": ")
}

/// The raw ceiling the issue names: one transaction that reads one stream
/// (the primary key serves it) and inserts one event row, with a real
/// OrderPlaced payload and metadata. Stream ids are random 63-bit numbers,
/// so appends never collide.
fn raw_append_script(payload: &str, metadata: &str) -> String {
    format!(
        "\\set n random(1, 9223372036854775806)\n\
BEGIN;\n\
SELECT sequence, payload, metadata FROM bench_raw_events WHERE aggregate_type = 'Order' AND aggregate_id = 'raw-' || :n ORDER BY sequence;\n\
INSERT INTO bench_raw_events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) VALUES ('Order', 'raw-' || :n, 1, 'OrderPlaced', '1', '{payload}'::json, '{metadata}'::json);\n\
END;\n",
        payload = quote(payload),
        metadata = quote(metadata),
    )
}

/// The SQL the command service runs for one keyed PlaceOrder, in order: the
/// idempotency-key claim, the restaurant with its menu items in one query,
/// the append in autocommit (a new order's id derives from the command, so
/// nothing is loaded first). The
/// service runs the idempotency-key claim on a pool whose connections have
/// `synchronous_commit = off`; pgbench has one connection per client, so the
/// script switches the setting around it (two cheap extra round trips that
/// slightly lower the ceiling). An order that appended is answered on retry
/// from the command log, so no response is stored after the commit.
fn pgbench_script(payload: &str, metadata: &str) -> Result<String> {
    // Metadata with this transaction's command id spliced in (the trigger keys on it).
    let meta: serde_json::Value = serde_json::from_str(metadata)?;
    let mut meta = meta.as_object().context("metadata object")?.clone();
    meta.remove("command_id");
    let rest = serde_json::Value::Object(meta).to_string();
    let rest = rest.trim_start_matches('{');
    let restaurant = seed_ids::BERLIN_BURGERS;
    let (item1, item2) = (seed_ids::menu_item(1, 1), seed_ids::menu_item(1, 3));
    Ok(format!(
        "SET synchronous_commit = off;\n\
INSERT INTO idempotency_keys (scope, idempotency_key, request_hash, command_id) VALUES ('customer-bench', gen_random_uuid()::text, 'request-hash', gen_random_uuid()) ON CONFLICT (scope, idempotency_key) DO NOTHING RETURNING idempotency_key AS ikey, command_id::text AS cid, gen_random_uuid()::text AS oid \\gset\n\
SET synchronous_commit = on;\n\
SELECT r.id, r.name, r.lat, r.lon, r.time_zone, r.currency, r.commission_bps, r.tax_bps, r.is_open, m.id, m.restaurant_id, m.name, m.price_minor, m.available FROM restaurants r LEFT JOIN menu_items m ON m.id = ANY('{{{item1},{item2}}}'::uuid[]) WHERE r.id = '{restaurant}';\n\
INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) VALUES ('Order', :oid, 1, 'OrderPlaced', '1', '{payload}'::json, ('{{\"command_id\":\"' || :cid::text || '\",{rest}')::json);\n",
        payload = quote(payload),
        rest = quote(rest),
    ))
}
