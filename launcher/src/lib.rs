//! The whole platform brought up in one place: the [`Stack`].
//!
//! A [`Stack`] is a builder over a database (a URL or a pool) and a broker (a
//! given bootstrap address, or librdkafka's mock cluster it hosts itself, see
//! [`mock`]). [`Stack::prepare`] migrates, loads the demo seed and creates
//! the topics on a hosted broker; then the services run either
//!
//! - in-process ([`Stack::start`]): the relay, the saga, the projectors and
//!   (given an `axum::Router`) the API as tokio tasks, for end-to-end tests and
//!   benchmarks, with a [`RunningStack`] handle to wait for the read models and
//!   to stop it; or
//! - as child processes ([`processes`]): what `ordertrail-local` runs, every
//!   binary next to it with its configuration in its environment, restarted
//!   when it dies.
//!
//! Configuration comes in as plain Rust values: the binaries own their flags.

pub mod mock;
pub mod processes;
pub mod seed;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use ordertrail_commands::provider_ledger::RecordingProvider;
use ordertrail_commands::relay::{self, RelayConfig};
use ordertrail_commands::saga::{self, SagaConfig};
use ordertrail_commands::service::CommandService;
use ordertrail_projections::rider_etas::EtaSettings;
use ordertrail_projections::{ProjectorKind, RuntimeConfig};
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use mock::Mock;

/// Which demo data to load before the services start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seed {
    /// None.
    Skip,
    /// Only into an empty catalog (a restart keeps what ops changed).
    IfEmpty,
    /// Always (idempotent: the seed rows are upserted).
    Always,
}

/// The aggregate types a projector reads.
fn sources(kind: &ProjectorKind) -> Vec<&'static str> {
    use ordertrail_projections::runtime::Projector;
    let kinds = match kind {
        ProjectorKind::OrderHistory => {
            ordertrail_projections::order_history::OrderHistory.sources()
        }
        ProjectorKind::RiderEtas(settings) => {
            ordertrail_projections::rider_etas::RiderEtas::new(*settings).sources()
        }
        ProjectorKind::Settlements => ordertrail_projections::settlements::Settlements.sources(),
    };
    kinds.iter().map(|k| k.as_str()).collect()
}

/// Changes a service's configuration before it starts.
type Tweak<T> = Arc<dyn Fn(&mut T) + Send + Sync>;

/// The three read models.
pub fn all_projectors() -> Vec<ProjectorKind> {
    vec![
        ProjectorKind::OrderHistory,
        ProjectorKind::RiderEtas(EtaSettings::default()),
        ProjectorKind::Settlements,
    ]
}

enum Database {
    Url { url: String, pool_size: u32 },
    Pool(PgPool),
}

/// The platform, to be brought up: see the module docs.
pub struct Stack {
    database: Database,
    brokers: Option<String>,
    mock_brokers: i32,
    topic_prefix: String,
    partitions: i32,
    migrate: bool,
    seed: Seed,
    relay: Option<Tweak<RelayConfig>>,
    saga: Option<Tweak<SagaConfig>>,
    saga_service: Option<CommandService>,
    projectors: Vec<ProjectorKind>,
    projector_config: Tweak<RuntimeConfig>,
    api: Option<axum::Router>,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("brokers", &self.brokers)
            .field("topic_prefix", &self.topic_prefix)
            .field("partitions", &self.partitions)
            .field("seed", &self.seed)
            .field("relay", &self.relay.is_some())
            .field("saga", &self.saga.is_some())
            .field(
                "projectors",
                &self.projectors.iter().map(|k| k.name()).collect::<Vec<_>>(),
            )
            .field("api", &self.api.is_some())
            .finish_non_exhaustive()
    }
}

/// What [`Stack::prepare`] leaves for the services: a migrated (and seeded)
/// database and a broker with the topics.
pub struct Prepared {
    /// The database.
    pub pool: PgPool,
    /// Bootstrap address of the broker.
    pub brokers: String,
    /// The hosted broker, when no broker was given: keep it alive.
    pub mock: Option<Mock>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("brokers", &self.brokers)
            .field("hosted", &self.mock.is_some())
            .finish_non_exhaustive()
    }
}

impl Stack {
    fn with(database: Database) -> Self {
        Self {
            database,
            brokers: None,
            mock_brokers: mock::MOCK_BROKERS,
            topic_prefix: ordertrail_schemas::topics::DEFAULT_PREFIX.to_owned(),
            partitions: 6,
            migrate: true,
            seed: Seed::Skip,
            relay: Some(Arc::new(|_| {})),
            saga: None,
            saga_service: None,
            projectors: all_projectors(),
            projector_config: Arc::new(|_| {}),
            api: None,
        }
    }

    /// On the database at `url`, with a pool of `pool_size` connections.
    /// By default: migrated, not seeded, a hosted broker, the relay and the
    /// three projectors, no saga, no API.
    pub fn connect(url: impl Into<String>, pool_size: u32) -> Self {
        Self::with(Database::Url {
            url: url.into(),
            pool_size,
        })
    }

    /// On an open pool (a test's or a benchmark's database), not migrated
    /// again unless asked ([`Stack::migrate`]).
    pub fn on_pool(pool: PgPool) -> Self {
        let mut stack = Self::with(Database::Pool(pool));
        stack.migrate = false;
        stack
    }

    /// Use the broker at `brokers` instead of hosting one. The topics must
    /// exist or be creatable through the admin API (the relay creates them);
    /// on a mock cluster someone else hosts, its host creates them.
    pub fn kafka(mut self, brokers: impl Into<String>) -> Self {
        self.brokers = Some(brokers.into()).filter(|b: &String| !b.trim().is_empty());
        self
    }

    /// Brokers of the hosted mock cluster (default [`mock::MOCK_BROKERS`]).
    pub fn mock_brokers(mut self, brokers: i32) -> Self {
        self.mock_brokers = brokers;
        self
    }

    /// Topic prefix (default the production one).
    pub fn topic_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.topic_prefix = prefix.into();
        self
    }

    /// Partitions per topic (default 6).
    pub fn partitions(mut self, partitions: i32) -> Self {
        self.partitions = partitions;
        self
    }

    /// Whether to apply the migrations first.
    pub fn migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// Which demo data to load (default none).
    pub fn seed(mut self, seed: Seed) -> Self {
        self.seed = seed;
        self
    }

    /// Run the relay (default on)?
    pub fn relay(mut self, on: bool) -> Self {
        self.relay = on.then(|| self.relay.take().unwrap_or_else(|| Arc::new(|_| {})));
        self
    }

    /// Run the relay, with its configuration changed by `tweak`.
    pub fn relay_config(
        mut self,
        tweak: impl Fn(&mut RelayConfig) + Send + Sync + 'static,
    ) -> Self {
        self.relay = Some(Arc::new(tweak));
        self
    }

    /// Run the saga (default off)?
    pub fn saga(mut self, on: bool) -> Self {
        self.saga = on.then(|| self.saga.take().unwrap_or_else(|| Arc::new(|_| {})));
        self
    }

    /// Run the saga, with its configuration changed by `tweak`.
    pub fn saga_config(mut self, tweak: impl Fn(&mut SagaConfig) + Send + Sync + 'static) -> Self {
        self.saga = Some(Arc::new(tweak));
        self
    }

    /// The command service the saga sends its commands through (default: the
    /// saga binary's, the simulated provider recorded in the provider ledger).
    pub fn saga_service(mut self, service: CommandService) -> Self {
        self.saga_service = Some(service);
        self
    }

    /// Which projectors to run (default all three).
    pub fn projectors(mut self, kinds: Vec<ProjectorKind>) -> Self {
        self.projectors = kinds;
        self
    }

    /// Change every projector's configuration.
    pub fn projector_config(
        mut self,
        tweak: impl Fn(&mut RuntimeConfig) + Send + Sync + 'static,
    ) -> Self {
        self.projector_config = Arc::new(tweak);
        self
    }

    /// Serve this API router on a free local port (in-process only).
    pub fn api(mut self, router: axum::Router) -> Self {
        self.api = Some(router);
        self
    }

    /// Short intervals and back-offs, so tests see effects and recoveries
    /// within a second: relay polling every 50 ms, projector heartbeats and
    /// fences of 200 ms, saga timers polled every 100 ms, back-offs of at most
    /// 500 ms. Keeps any tweak given before.
    pub fn test_timings(mut self) -> Self {
        let relay = self.relay.clone();
        if let Some(before) = relay {
            self.relay = Some(Arc::new(move |c: &mut RelayConfig| {
                c.poll_interval = Duration::from_millis(50);
                c.standby_interval = Duration::from_millis(200);
                before(c);
            }));
        }
        if let Some(before) = self.saga.clone() {
            self.saga = Some(Arc::new(move |c: &mut SagaConfig| {
                c.timer_poll_interval = Duration::from_millis(100);
                c.max_backoff = Duration::from_millis(500);
                before(c);
            }));
        }
        let before = self.projector_config.clone();
        self.projector_config = Arc::new(move |c: &mut RuntimeConfig| {
            c.heartbeat = Duration::from_millis(200);
            c.fence = Duration::from_millis(200);
            c.max_backoff = Duration::from_millis(500);
            before(c);
        });
        self
    }

    /// The topics of this stack's prefix.
    pub fn topics(&self) -> Vec<String> {
        ordertrail_schemas::topics::all_topics(&self.topic_prefix)
    }

    /// Connect, migrate, seed, and host a broker with the topics unless one
    /// was given: what every mode does before starting services.
    pub async fn prepare(&self) -> Result<Prepared> {
        let pool = match &self.database {
            Database::Url { url, pool_size } => ordertrail_platform::db::connect(url, *pool_size)
                .await
                .context("connect to PostgreSQL")?,
            Database::Pool(pool) => pool.clone(),
        };
        if self.migrate {
            ordertrail_platform::db::migrate(&pool)
                .await
                .context("run migrations")?;
        }
        match self.seed {
            Seed::Skip => {}
            Seed::IfEmpty => {
                seed::seed_if_empty(&pool).await.context("load seed data")?;
            }
            Seed::Always => seed::seed(&pool).await.context("load seed data")?,
        }
        let (brokers, mock) = match &self.brokers {
            Some(b) => (b.clone(), None),
            None => {
                let mock = mock::host(self.mock_brokers, &self.topics(), self.partitions)?;
                (mock.bootstrap_servers(), Some(mock))
            }
        };
        Ok(Prepared {
            pool,
            brokers,
            mock,
        })
    }

    /// Prepare, then run the chosen services as tasks of this runtime.
    pub async fn start(self) -> Result<RunningStack> {
        let Prepared {
            pool,
            brokers,
            mock,
        } = self.prepare().await?;
        let (stop, stopped) = watch::channel(false);
        let shutdown = move || {
            let mut rx = stopped.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let prefix = self.topic_prefix.clone();
        let mut tasks: Vec<(&'static str, JoinHandle<Result<(), String>>)> = Vec::new();
        let mut api_url = None;
        if let Some(router) = self.api {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .context("bind the API")?;
            api_url = Some(format!("http://{}", listener.local_addr()?));
            let s = shutdown();
            tasks.push((
                "api",
                tokio::spawn(async move {
                    axum::serve(
                        listener,
                        router.into_make_service_with_connect_info::<SocketAddr>(),
                    )
                    .with_graceful_shutdown(s)
                    .await
                    .map_err(|e| e.to_string())
                }),
            ));
        }
        if let Some(tweak) = &self.relay {
            let mut config = RelayConfig::new(brokers.clone(), prefix.clone());
            config.topic_partitions = self.partitions;
            config.topic_replication_factor = 1;
            tweak(&mut config);
            let (p, s) = (pool.clone(), shutdown());
            tasks.push((
                "relay",
                tokio::spawn(
                    async move { relay::run(config, p, s).await.map_err(|e| e.to_string()) },
                ),
            ));
        }
        let mut projectors = Vec::new();
        for kind in self.projectors {
            let name = kind.name();
            projectors.push((name, sources(&kind)));
            let mut config = RuntimeConfig::new(&brokers, &prefix, format!("{prefix}-{name}"));
            (self.projector_config)(&mut config);
            let (p, s) = (pool.clone(), shutdown());
            tasks.push((
                name,
                tokio::spawn(async move {
                    ordertrail_projections::run(kind, config, p, s)
                        .await
                        .map_err(|e| e.to_string())
                }),
            ));
        }
        if let Some(tweak) = &self.saga {
            let mut config =
                SagaConfig::new(brokers.clone(), prefix.clone(), format!("{prefix}-saga"));
            tweak(&mut config);
            let service = self.saga_service.unwrap_or_else(|| {
                CommandService::new(pool.clone(), RecordingProvider::simulated(pool.clone()))
            });
            let s = shutdown();
            tasks.push((
                "saga",
                tokio::spawn(async move {
                    saga::run(config, service, s)
                        .await
                        .map_err(|e| e.to_string())
                }),
            ));
        }
        Ok(RunningStack {
            pool,
            brokers,
            topic_prefix: prefix,
            api_url,
            mock,
            projectors,
            stop,
            tasks,
        })
    }
}

/// The platform running in-process: see [`Stack::start`]. Dropping it aborts
/// nothing; call [`RunningStack::stop`].
pub struct RunningStack {
    pool: PgPool,
    brokers: String,
    topic_prefix: String,
    api_url: Option<String>,
    mock: Option<Mock>,
    /// Each projector's name and the aggregate types it reads.
    projectors: Vec<(&'static str, Vec<&'static str>)>,
    stop: watch::Sender<bool>,
    tasks: Vec<(&'static str, JoinHandle<Result<(), String>>)>,
}

impl std::fmt::Debug for RunningStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningStack")
            .field("brokers", &self.brokers)
            .field("topic_prefix", &self.topic_prefix)
            .field("api_url", &self.api_url)
            .field(
                "tasks",
                &self.tasks.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl RunningStack {
    /// The database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Bootstrap address of the broker.
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// The topic prefix.
    pub fn topic_prefix(&self) -> &str {
        &self.topic_prefix
    }

    /// Base URL of the in-process API (`http://127.0.0.1:port`), when served.
    pub fn api_url(&self) -> Option<&str> {
        self.api_url.as_deref()
    }

    /// The hosted broker (fault injection), when this stack hosts one.
    pub fn mock(&self) -> Option<&Mock> {
        self.mock.as_ref()
    }

    /// Error naming the first service that stopped although not asked to.
    pub fn check_running(&self) -> Result<()> {
        match self.tasks.iter().find(|(_, t)| t.is_finished()) {
            Some((name, _)) => bail!("{name} stopped early"),
            None => Ok(()),
        }
    }

    /// Wait (polling, at most `timeout`) until every projector of this stack
    /// is following and has applied every event in the store: lag measured
    /// against the store's head. Fails when a service stopped meanwhile.
    pub async fn caught_up(&self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            self.check_running()?;
            if let Ok(status) = ordertrail_projections::queries::projector_status(&self.pool).await
                && status
                    .iter()
                    .filter(|s| self.projectors.iter().any(|(name, _)| s.projector == *name))
                    .all(|s| s.events_behind == 0 && s.state == "following")
                && self.nothing_unapplied().await
            {
                return Ok(());
            }
            if start.elapsed() > timeout {
                bail!("the projectors did not apply every stored event within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether every committed event has passed each projector's sequence
    /// guard. The status's lag counts only events below the oldest running
    /// transaction of the whole PostgreSQL cluster (the readers' safe
    /// horizon), which another database's long transaction holds back.
    /// A guard row pruned by retention stands for the consumer's store
    /// position, which only ever covers applied events.
    async fn nothing_unapplied(&self) -> bool {
        for (name, types) in &self.projectors {
            let unapplied: Result<i64, _> = sqlx::query_scalar(
                "SELECT count(*) FROM events e
                 WHERE e.aggregate_type = ANY($2)
                   AND coalesce((SELECT s.last_sequence FROM projector_sequences s
                                 WHERE s.projector = $1 AND s.aggregate_type = e.aggregate_type
                                   AND s.aggregate_id = e.aggregate_id) < e.sequence,
                                NOT coalesce((e.transaction_id, e.global_position) <=
                                             (SELECT c.store_txid, c.store_position FROM consumers c
                                              WHERE c.consumer = $1), false))",
            )
            .bind(*name)
            .bind(types)
            .fetch_one(&self.pool)
            .await;
            if !matches!(unapplied, Ok(0)) {
                return false;
            }
        }
        true
    }

    /// Stop every service and wait (30 s each) for it; an error names the
    /// first that failed or did not stop.
    pub async fn stop(self) -> Result<()> {
        let _ = self.stop.send(true);
        let mut first_error = None;
        for (name, task) in self.tasks {
            let outcome = match tokio::time::timeout(Duration::from_secs(30), task).await {
                Err(_) => Err(anyhow!("{name} did not stop within 30 s")),
                Ok(Err(e)) => Err(anyhow!("{name} panicked: {e}")),
                Ok(Ok(Err(e))) => Err(anyhow!("{name} failed: {e}")),
                Ok(Ok(Ok(()))) => Ok(()),
            };
            if let Err(e) = outcome {
                first_error.get_or_insert(e);
            }
        }
        drop(self.mock);
        first_error.map_or(Ok(()), Err)
    }
}
