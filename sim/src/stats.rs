//! Figures of the run: what happened to every order, every HTTP answer by
//! status and code, latencies; the live view and the closing summary.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::client::{Actor, Answer, Api};
use crate::config::{Display, SimConfig};
use crate::flow::Outcome;

fn histogram() -> Histogram<u64> {
    // Microseconds, 1 µs .. 10 min, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).unwrap_or_else(|_| {
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant figures are valid"))
    })
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

#[derive(Debug)]
struct Inner {
    started: Instant,
    target_rate: f64,
    draining: bool,
    placed: u64,
    placed_in_window: u64,
    not_placed: BTreeMap<String, u64>,
    skipped: u64,
    delivered: u64,
    outcomes: BTreeMap<String, BTreeMap<String, u64>>,
    stages: HashMap<u64, &'static str>,
    answers: BTreeMap<(u16, String), u64>,
    transport_errors: u64,
    commands: Histogram<u64>,
    commands_window: Histogram<u64>,
    queries: Histogram<u64>,
    confirm: Histogram<u64>,
    confirm_window: Histogram<u64>,
    errors_window: BTreeMap<String, u64>,
    lag: Lag,
    closed_from_earlier_runs: u64,
}

/// Lag as last read from the platform.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Lag {
    /// Relay: events and seconds behind the store (from its metrics).
    pub relay: Option<(f64, f64)>,
    /// Slowest projector: events and seconds behind.
    pub projectors: Option<(i64, f64)>,
    /// The saga: events and seconds behind.
    pub saga: Option<(i64, f64)>,
}

pub struct Stats {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stats").finish_non_exhaustive()
    }
}

/// Percentiles of a latency, milliseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Self {
        let ms = |v: u64| v as f64 / 1_000.0;
        Self {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }
}

/// The end of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub elapsed_secs: f64,
    /// Orders the platform accepted (`POST /v1/orders` answered 201).
    pub placed: u64,
    /// `POST /v1/orders` refused or unreachable, by code.
    pub not_placed: BTreeMap<String, u64>,
    /// Arrivals skipped because `--max-in-flight` orders were running.
    pub skipped: u64,
    /// Final state (`delivered`, `cancelled`, `rejected`), `waiting` (on a
    /// platform timer) or `stuck`, each by reason.
    pub outcomes: BTreeMap<String, BTreeMap<String, u64>>,
    /// Orders still running when the drain timeout ended the run, by stage.
    pub abandoned: BTreeMap<String, u64>,
    /// Every HTTP answer by status and error code (empty for a success).
    pub answers: BTreeMap<String, u64>,
    pub transport_errors: u64,
    pub commands: Latency,
    pub queries: Latency,
    pub placed_to_confirmed: Latency,
    pub lag: Lag,
    /// Orders an earlier, interrupted run left in flight, closed at start.
    pub closed_from_earlier_runs: u64,
}

impl Summary {
    /// Orders that ended in (or wait in) `state`.
    pub fn count(&self, state: &str) -> u64 {
        self.outcomes
            .get(state)
            .map(|m| m.values().sum())
            .unwrap_or(0)
    }

    /// Answers with a 5xx status.
    pub fn server_errors(&self) -> u64 {
        self.answers
            .iter()
            .filter(|(k, _)| k.starts_with('5'))
            .map(|(_, v)| v)
            .sum()
    }

    pub fn abandoned_count(&self) -> u64 {
        self.abandoned.values().sum()
    }

    /// The closing report, as printed.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "Lunch rush over after {:.0} s.", self.elapsed_secs);
        let _ = writeln!(
            out,
            "Orders placed: {}   (not placed: {}; skipped at the in-flight cap: {})",
            self.placed,
            self.not_placed.values().sum::<u64>(),
            self.skipped
        );
        for state in ["delivered", "cancelled", "rejected", "waiting", "stuck"] {
            let Some(reasons) = self.outcomes.get(state) else {
                continue;
            };
            let total: u64 = reasons.values().sum();
            let _ = writeln!(out, "  {state:<10} {total:>6}");
            for (reason, n) in reasons.iter().filter(|(r, _)| !r.is_empty()) {
                let _ = writeln!(out, "      {n:>6}  {reason}");
            }
        }
        if !self.abandoned.is_empty() {
            let _ = writeln!(out, "  abandoned at the drain timeout:");
            for (stage, n) in &self.abandoned {
                let _ = writeln!(out, "      {n:>6}  {stage}");
            }
        }
        if self.closed_from_earlier_runs > 0 {
            let _ = writeln!(
                out,
                "  (closed at start: {} orders an interrupted earlier run left in flight)",
                self.closed_from_earlier_runs
            );
        }
        for (code, n) in &self.not_placed {
            let _ = writeln!(out, "  not placed {n:>6}  {code}");
        }
        let _ = writeln!(out, "HTTP answers:");
        for (key, n) in &self.answers {
            let _ = writeln!(out, "  {key:<40} {n:>8}");
        }
        if self.transport_errors > 0 {
            let _ = writeln!(
                out,
                "  {:<40} {:>8}",
                "transport errors (retried)", self.transport_errors
            );
        }
        let line = |out: &mut String, name: &str, l: &Latency| {
            let _ = writeln!(
                out,
                "  {name:<22} n={:<7} p50 {:>8.1} ms   p99 {:>8.1} ms   max {:>8.1} ms",
                l.count, l.p50_ms, l.p99_ms, l.max_ms
            );
        };
        let _ = writeln!(out, "Latencies:");
        line(&mut out, "commands", &self.commands);
        line(&mut out, "queries", &self.queries);
        line(&mut out, "placed → confirmed", &self.placed_to_confirmed);
        out
    }
}

impl Stats {
    pub fn new(_config: &SimConfig) -> Self {
        Self {
            inner: Mutex::new(Inner {
                started: Instant::now(),
                target_rate: 0.0,
                draining: false,
                placed: 0,
                placed_in_window: 0,
                not_placed: BTreeMap::new(),
                skipped: 0,
                delivered: 0,
                outcomes: BTreeMap::new(),
                stages: HashMap::new(),
                answers: BTreeMap::new(),
                transport_errors: 0,
                commands: histogram(),
                commands_window: histogram(),
                queries: histogram(),
                confirm: histogram(),
                confirm_window: histogram(),
                errors_window: BTreeMap::new(),
                lag: Lag::default(),
                closed_from_earlier_runs: 0,
            }),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn set_target_rate(&self, rate: f64) {
        self.with(|s| s.target_rate = rate);
    }

    pub fn set_draining(&self, draining: bool) {
        self.with(|s| s.draining = draining);
    }

    pub fn answer(&self, is_command: bool, answer: &Answer, elapsed: Duration) {
        let status = answer.status.as_u16();
        let code = answer.code().to_owned();
        self.with(|s| {
            if is_command {
                let _ = s.commands.record(micros(elapsed));
                let _ = s.commands_window.record(micros(elapsed));
            } else {
                let _ = s.queries.record(micros(elapsed));
            }
            if status >= 400 {
                let key = if status == 404 && !is_command {
                    // Polling an order the read model does not have yet.
                    "not yet in the read model (404)".to_owned()
                } else if code.is_empty() {
                    format!("http_{status}")
                } else {
                    code.clone()
                };
                *s.errors_window.entry(key).or_default() += 1;
            }
            *s.answers.entry((status, code)).or_default() += 1;
        });
    }

    pub fn transport_error(&self) {
        self.with(|s| {
            s.transport_errors += 1;
            *s.errors_window.entry("transport".into()).or_default() += 1;
        });
    }

    pub fn stage(&self, order: u64, stage: &'static str) {
        self.with(|s| {
            s.stages.insert(order, stage);
        });
    }

    pub fn forget(&self, order: u64) {
        self.with(|s| {
            s.stages.remove(&order);
        });
    }

    pub fn placed(&self) {
        self.with(|s| {
            s.placed += 1;
            s.placed_in_window += 1;
        });
    }

    pub fn place_failed(&self, code: &str) {
        self.with(|s| *s.not_placed.entry(code.to_owned()).or_default() += 1);
    }

    pub fn order_skipped(&self) {
        self.with(|s| s.skipped += 1);
    }

    pub fn confirmed_after(&self, d: Duration) {
        self.with(|s| {
            let _ = s.confirm.record(micros(d));
            let _ = s.confirm_window.record(micros(d));
        });
    }

    pub fn finish(&self, order: u64, outcome: &Outcome) {
        self.with(|s| {
            s.stages.remove(&order);
            if outcome.state == "delivered" {
                s.delivered += 1;
            }
            *s.outcomes
                .entry(outcome.state.clone())
                .or_default()
                .entry(outcome.reason.clone())
                .or_default() += 1;
        });
    }

    pub fn set_closed_from_earlier_runs(&self, n: u64) {
        self.with(|s| s.closed_from_earlier_runs = n);
    }

    pub fn set_lag(&self, lag: Lag) {
        self.with(|s| s.lag = lag);
    }

    pub fn summary(&self) -> Summary {
        self.with(|s| {
            let mut abandoned: BTreeMap<String, u64> = BTreeMap::new();
            for stage in s.stages.values() {
                *abandoned.entry((*stage).to_owned()).or_default() += 1;
            }
            Summary {
                elapsed_secs: s.started.elapsed().as_secs_f64(),
                placed: s.placed,
                not_placed: s.not_placed.clone(),
                skipped: s.skipped,
                outcomes: s.outcomes.clone(),
                abandoned,
                answers: s
                    .answers
                    .iter()
                    .map(|((status, code), n)| {
                        let key = if code.is_empty() {
                            status.to_string()
                        } else {
                            format!("{status} {code}")
                        };
                        (key, *n)
                    })
                    .collect(),
                transport_errors: s.transport_errors,
                commands: Latency::of(&s.commands),
                queries: Latency::of(&s.queries),
                placed_to_confirmed: Latency::of(&s.confirm),
                lag: s.lag.clone(),
                closed_from_earlier_runs: s.closed_from_earlier_runs,
            }
        })
    }

    /// The figures of the window since the last call (and reset it).
    fn window(&self, window: Duration, busy_riders: usize) -> Frame {
        self.with(|s| {
            let finished: u64 = s.outcomes.values().flat_map(|m| m.values()).sum();
            let frame = Frame {
                elapsed: s.started.elapsed(),
                target_rate: s.target_rate,
                draining: s.draining,
                orders_per_sec: s.placed_in_window as f64 / window.as_secs_f64().max(0.001),
                placed: s.placed,
                delivered: s.delivered,
                finished,
                in_flight: s.stages.len(),
                busy_riders,
                commands: Latency::of(&s.commands_window),
                confirm_p99_ms: (!s.confirm_window.is_empty())
                    .then(|| Latency::of(&s.confirm_window).p99_ms),
                confirm_p99_all_ms: (!s.confirm.is_empty()).then(|| Latency::of(&s.confirm).p99_ms),
                errors: std::mem::take(&mut s.errors_window),
                lag: s.lag.clone(),
            };
            s.placed_in_window = 0;
            s.commands_window.reset();
            s.confirm_window.reset();
            frame
        })
    }
}

/// One interval of the live view.
struct Frame {
    elapsed: Duration,
    target_rate: f64,
    draining: bool,
    orders_per_sec: f64,
    placed: u64,
    delivered: u64,
    finished: u64,
    in_flight: usize,
    busy_riders: usize,
    commands: Latency,
    confirm_p99_ms: Option<f64>,
    confirm_p99_all_ms: Option<f64>,
    errors: BTreeMap<String, u64>,
    lag: Lag,
}

fn fmt_lag_i(l: Option<(i64, f64)>) -> String {
    l.map_or("n/a".into(), |(e, s)| format!("{e} ev / {s:.1} s"))
}

fn fmt_lag_f(l: Option<(f64, f64)>) -> String {
    l.map_or("n/a".into(), |(e, s)| format!("{e:.0} ev / {s:.1} s"))
}

fn fmt_errors(errors: &BTreeMap<String, u64>) -> String {
    if errors.is_empty() {
        return "none".into();
    }
    errors
        .iter()
        .map(|(c, n)| format!("{c}×{n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

impl Frame {
    fn line(&self) -> String {
        format!(
            "t={:>5.0}s target={:.2}/s orders/s={:.2} placed={} delivered={} finished={} in-flight={} riders-out={} cmd p50={:.1}ms p99={:.1}ms placed→confirmed p99={} relay lag={} projector lag={} saga lag={} errors: {}",
            self.elapsed.as_secs_f64(),
            self.target_rate,
            self.orders_per_sec,
            self.placed,
            self.delivered,
            self.finished,
            self.in_flight,
            self.busy_riders,
            self.commands.p50_ms,
            self.commands.p99_ms,
            self.confirm_p99_ms
                .map_or("n/a".into(), |v| format!("{v:.0}ms")),
            fmt_lag_f(self.lag.relay),
            fmt_lag_i(self.lag.projectors),
            fmt_lag_i(self.lag.saga),
            fmt_errors(&self.errors),
        )
    }

    fn panel(&self) -> Vec<String> {
        let phase = if self.draining {
            "draining: no new orders, finishing the ones in flight".to_owned()
        } else {
            format!("rush: target {:.2} orders/s", self.target_rate)
        };
        vec![
            format!(
                "── ordertrail-sim ── {:>5.0} s ── {phase}",
                self.elapsed.as_secs_f64()
            ),
            format!(
                "  orders/s {:>7.2}   placed {:>7}   delivered {:>7}   finished {:>7}   in flight {:>5}   riders out {:>4}",
                self.orders_per_sec,
                self.placed,
                self.delivered,
                self.finished,
                self.in_flight,
                self.busy_riders
            ),
            format!(
                "  commands  p50 {:>7.1} ms   p99 {:>7.1} ms   ({} this interval)",
                self.commands.p50_ms, self.commands.p99_ms, self.commands.count
            ),
            format!(
                "  placed→confirmed p99 {:>8}   (whole run {})",
                self.confirm_p99_ms
                    .map_or("n/a".into(), |v| format!("{v:.0} ms")),
                self.confirm_p99_all_ms
                    .map_or("n/a".into(), |v| format!("{v:.0} ms")),
            ),
            format!(
                "  lag  relay {}   projectors {}   saga {}",
                fmt_lag_f(self.lag.relay),
                fmt_lag_i(self.lag.projectors),
                fmt_lag_i(self.lag.saga)
            ),
            format!("  errors  {}", fmt_errors(&self.errors)),
        ]
    }
}

/// The live view and the lag poller; [`DisplayHandle::finish`] stops them.
pub struct DisplayHandle {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for DisplayHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DisplayHandle").finish_non_exhaustive()
    }
}

impl DisplayHandle {
    pub async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Read the projectors' and the saga's lag (`GET /v1/projectors/status`)
/// and the relay's (its metrics), into the stats.
async fn poll_lag(config: &SimConfig, api: &Api, stats: &Stats) {
    let mut lag = Lag::default();
    if let Ok(answer) = api.get(&Actor::ops(), "/v1/projectors/status").await
        && answer.ok()
        && let Some(list) = answer.body["items"].as_array()
    {
        for p in list {
            let events = p["events_behind"].as_i64().unwrap_or(0);
            let secs = p["seconds_behind"].as_f64().unwrap_or(0.0);
            let slot = if p["projector"] == "saga" {
                &mut lag.saga
            } else {
                &mut lag.projectors
            };
            let (e, s) = slot.unwrap_or((0, 0.0));
            *slot = Some((e.max(events), s.max(secs)));
        }
    }
    if let Some(url) = &config.relay_metrics_url {
        lag.relay = api.relay_lag(url).await;
    }
    stats.set_lag(lag);
}

/// The live view (or lines), with the busy-rider count taken from `world`.
pub fn spawn_display_with(
    config: Arc<SimConfig>,
    stats: Arc<Stats>,
    api: Arc<Api>,
    world: Option<Arc<crate::world::World>>,
) -> DisplayHandle {
    let (stop, mut stopped) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mode = match config.display {
            Display::Auto if std::io::stdout().is_terminal() => Display::Live,
            Display::Auto => Display::Lines,
            other => other,
        };
        let every = Duration::from_secs_f64(config.report_secs.max(0.1));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut drawn = 0usize;
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                _ = tick.tick() => {}
            }
            poll_lag(&config, &api, &stats).await;
            let busy = world.as_ref().map_or(0, |w| w.busy_riders());
            let frame = stats.window(every, busy);
            let mut out = std::io::stdout().lock();
            match mode {
                Display::Live => {
                    if drawn > 0 {
                        // Back to the top of the panel and clear below.
                        let _ = write!(out, "\x1b[{drawn}A\x1b[J");
                    }
                    let panel = frame.panel();
                    drawn = panel.len();
                    for l in panel {
                        let _ = writeln!(out, "{l}");
                    }
                }
                Display::Lines => {
                    let _ = writeln!(out, "{}", frame.line());
                }
                Display::Off | Display::Auto => {}
            }
            let _ = out.flush();
        }
        // One last lag reading for the summary.
        poll_lag(&config, &api, &stats).await;
    });
    DisplayHandle { stop, task }
}
