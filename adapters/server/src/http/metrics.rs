//! `/metrics` in the Prometheus text format (version 0.0.4), written by hand: the driver's
//! counters, gauges read from the database when scraped, and per-route HTTP latency histograms
//! recorded by a middleware.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use reglament_store::CountOf;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                self.buckets[i] += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }
}

/// HTTP request metrics per (method, route template).
#[derive(Debug, Default)]
pub struct HttpMetrics {
    latency: Mutex<BTreeMap<(String, String), Histogram>>,
    responses: Mutex<BTreeMap<(String, String, u16), u64>>,
}

impl HttpMetrics {
    pub fn observe(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let key = (method.to_string(), route.to_string());
        self.latency.lock().expect("metrics").entry(key.clone()).or_default().observe(elapsed.as_secs_f64());
        *self.responses.lock().expect("metrics").entry((key.0, key.1, status)).or_default() += 1;
    }
}

/// Records the latency and status of every request under its route template.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string());
    let method = req.method().to_string();
    let started = Instant::now();
    let response = next.run(req).await;
    let route = route.as_deref().unwrap_or("unmatched");
    state.metrics.observe(&method, route, response.status().as_u16(), started.elapsed());
    response
}

fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The whole exposition.
pub async fn render(state: &AppState) -> Result<String, reglament_store::StoreError> {
    let store = state.runtime.store();
    let counters = state.runtime.counters();
    let now = state.runtime.now();
    let open = store.count(CountOf::OpenTasks).await?;
    let overdue = store.count_overdue_tasks(now).await?;
    let active = store.count(CountOf::ActiveInstances).await?;
    let outbox = store.count_pending_outbox().await?;
    let timers = store.count(CountOf::Timers).await?;
    let lag = store.oldest_timer_due().await?.map(|due| ((now - due).num_milliseconds().max(0) as f64) / 1000.0);

    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    };
    metric(
        "reglament_instances_started_total",
        "counter",
        "Process instances started by this node.",
        counters.started.load(Ordering::Relaxed).to_string(),
    );
    metric(
        "reglament_api_token_failures_total",
        "counter",
        "Requests this node refused for an unknown or disabled API token (past 20 in a row from one address, answered slower and slower).",
        state.token_failures.total.load(Ordering::Relaxed).to_string(),
    );
    metric(
        "reglament_instances_completed_total",
        "counter",
        "Process instances completed by this node.",
        counters.completed.load(Ordering::Relaxed).to_string(),
    );
    metric(
        "reglament_commands_total",
        "counter",
        "Commands run by this node's driver.",
        counters.commands.load(Ordering::Relaxed).to_string(),
    );
    metric(
        "reglament_batches_total",
        "counter",
        "Transactions (command batches) committed or failed by this node.",
        counters.batches.load(Ordering::Relaxed).to_string(),
    );
    metric(
        "reglament_batch_retries_total",
        "counter",
        "Batches retried after a conflict or a transient database error.",
        counters.conflicts.load(Ordering::Relaxed).to_string(),
    );
    metric("reglament_instances_active", "gauge", "Active process instances.", active.to_string());
    metric("reglament_tasks_open", "gauge", "Open user tasks.", open.to_string());
    metric("reglament_tasks_overdue", "gauge", "Open user tasks past their due time.", overdue.to_string());
    metric("reglament_timers_pending", "gauge", "Instance timers waiting to fire.", timers.to_string());
    metric(
        "reglament_timer_lag_seconds",
        "gauge",
        "How long the oldest due timer has been waiting (0 when none is due).",
        lag.unwrap_or(0.0).to_string(),
    );
    metric("reglament_outbox_pending", "gauge", "Emails in the outbox not yet sent.", outbox.to_string());

    out.push_str(&crate::email::metrics(store).await?);
    let _ = writeln!(out, "# HELP reglament_http_request_duration_seconds HTTP request latency by route.");
    let _ = writeln!(out, "# TYPE reglament_http_request_duration_seconds histogram");
    let latency = state.metrics.latency.lock().expect("metrics").clone();
    for ((method, route), h) in &latency {
        let labels = format!("method=\"{}\",route=\"{}\"", label(method), label(route));
        for (bound, count) in BUCKETS.iter().zip(h.buckets) {
            let _ = writeln!(out, "reglament_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "reglament_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(out, "reglament_http_request_duration_seconds_sum{{{labels}}} {}", h.sum);
        let _ = writeln!(out, "reglament_http_request_duration_seconds_count{{{labels}}} {}", h.count);
    }
    let _ = writeln!(out, "# HELP reglament_http_responses_total HTTP responses by route and status.");
    let _ = writeln!(out, "# TYPE reglament_http_responses_total counter");
    let responses = state.metrics.responses.lock().expect("metrics").clone();
    for ((method, route, status), n) in &responses {
        let _ = writeln!(
            out,
            "reglament_http_responses_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {n}",
            label(method),
            label(route)
        );
    }
    Ok(out)
}
