//! Fresh PostgreSQL databases for tests, cloned from a migrated template.

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use std::str::FromStr;
use tokio::sync::OnceCell;

/// The project's migrations, embedded at compile time.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

static TEMPLATE: OnceCell<String> = OnceCell::const_new();

/// A database of its own for one test.
pub struct TestDatabase {
    pub pool: PgPool,
    pub url: String,
    pub name: String,
}

/// Never shows `url`: it may carry the server's password.
impl std::fmt::Debug for TestDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDatabase")
            .field("name", &self.name)
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

fn server_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "DATABASE_URL is not set: run the suite with ./scripts/test.sh, which starts a private \
             PostgreSQL, or point DATABASE_URL at a server whose role may CREATE DATABASE"
        )
    })
}

fn options_for(db: &str) -> PgConnectOptions {
    PgConnectOptions::from_str(&server_url())
        .unwrap_or_else(|e| panic!("DATABASE_URL is not a PostgreSQL URL: {e}"))
        .database(db)
        .log_statements(tracing::log::LevelFilter::Trace)
}

fn url_for(db: &str) -> String {
    let base = server_url();
    let cut = base.rfind('/').unwrap_or(base.len());
    let (prefix, rest) = base.split_at(cut);
    let query = rest.find('?').map(|i| &rest[i..]).unwrap_or("");
    format!("{prefix}/{db}{query}")
}

/// Creates (once per process, under an advisory lock across processes) the
/// template database holding the current migrations. Its name carries a hash of
/// the migrations, so a changed migration gets a new template.
async fn template() -> String {
    TEMPLATE
        .get_or_init(|| async {
            let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
            for m in MIGRATOR.iter() {
                for b in m.checksum.iter() {
                    hash ^= u64::from(*b);
                    hash = hash.wrapping_mul(0x0100_0000_01b3);
                }
            }
            let name = format!("ordertrail_tpl_{hash:016x}");
            let mut admin = PgConnection::connect_with(&options_for("postgres"))
                .await
                .unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL: {e}"));
            sqlx::query("SELECT pg_advisory_lock(7411)")
                .execute(&mut admin)
                .await
                .expect("advisory lock");
            let exists: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
                    .bind(&name)
                    .fetch_optional(&mut admin)
                    .await
                    .expect("look up template");
            if exists.is_none() {
                let building = format!("{name}_building");
                sqlx::query(&format!("DROP DATABASE IF EXISTS {building}"))
                    .execute(&mut admin)
                    .await
                    .expect("drop half-built template");
                sqlx::query(&format!("CREATE DATABASE {building}"))
                    .execute(&mut admin)
                    .await
                    .expect("create template");
                {
                    let pool = PgPoolOptions::new()
                        .max_connections(1)
                        .connect_with(options_for(&building))
                        .await
                        .expect("connect template");
                    MIGRATOR.run(&pool).await.expect("migrate template");
                    pool.close().await;
                }
                sqlx::query(&format!("ALTER DATABASE {building} RENAME TO {name}"))
                    .execute(&mut admin)
                    .await
                    .expect("publish template");
            }
            sqlx::query("SELECT pg_advisory_unlock(7411)")
                .execute(&mut admin)
                .await
                .expect("advisory unlock");
            name
        })
        .await
        .clone()
}

impl TestDatabase {
    /// A new, migrated, empty database.
    pub async fn new() -> Self {
        Self::with_pool_size(10).await
    }

    pub async fn with_pool_size(max_connections: u32) -> Self {
        let template = template().await;
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect_with(&options_for("postgres"))
            .await
            .expect("connect admin");
        // CREATE DATABASE ... TEMPLATE fails while another session is connected
        // to the template; nobody stays connected to it, so this only races with
        // another process's clone, which a short retry loop absorbs.
        let mut attempts = 0;
        loop {
            let created = sqlx::query(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
                .execute(&mut admin)
                .await;
            match created {
                Ok(_) => break,
                Err(e) if attempts < 50 && e.to_string().contains("being accessed") => {
                    attempts += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => panic!("create test database: {e}"),
            }
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .connect_with(options_for(&name))
            .await
            .expect("connect test database");
        Self {
            pool,
            url: url_for(&name),
            name,
        }
    }
}

/// A table as one JSON array sorted by `order_by`: compare a read model
/// across two states or two databases.
pub async fn dump(pool: &PgPool, table: &str, order_by: &str) -> serde_json::Value {
    sqlx::query_scalar(&format!(
        "SELECT coalesce(jsonb_agg(to_jsonb(t) ORDER BY {order_by}), '[]'::jsonb) FROM {table} t"
    ))
    .fetch_one(pool)
    .await
    .unwrap_or_else(|e| panic!("dump {table}: {e}"))
}
