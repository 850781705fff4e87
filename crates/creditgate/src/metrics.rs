//! Prometheus metrics: per-route request counts and latency, holds placed and refused, the
//! ledger writer's batch sizes and commit latency, and overspend.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

const LATENCY_BUCKETS_S: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Installs the process-wide recorder once (tests build many services in one process).
pub fn install() {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("creditgate_http_request_duration_seconds".into()),
                LATENCY_BUCKETS_S,
            )
            .expect("buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (a test harness): then this handle
        // renders nothing new, and /metrics still answers.
        let _ = metrics::set_global_recorder(recorder);
        handle
    });
}

/// The exposition text: the recorder's metrics, then the writer's.
pub fn render(writer: &creditgate_store::LedgerWriter) -> String {
    let mut text = HANDLE
        .get()
        .map(PrometheusHandle::render)
        .unwrap_or_default();
    text.push_str(&writer.stats_text());
    text
}

/// One served request.
pub fn record_request(route: &str, method: &str, status: u16, elapsed: Duration) {
    let labels = [
        ("route", route.to_owned()),
        ("method", method.to_owned()),
        ("status", status.to_string()),
    ];
    metrics::counter!("creditgate_http_requests_total", &labels).increment(1);
    metrics::histogram!(
        "creditgate_http_request_duration_seconds",
        "route" => route.to_owned(),
        "method" => method.to_owned()
    )
    .record(elapsed);
}

/// A hold placed.
pub fn hold_placed() {
    metrics::counter!("creditgate_holds_placed_total").increment(1);
}

/// A hold refused, by code.
pub fn hold_refused(code: &'static str) {
    metrics::counter!("creditgate_holds_refused_total", "code" => code).increment(1);
}

/// Usage recorded below the floor, in micro-units.
pub fn overspend(micros: i64) {
    if micros > 0 {
        metrics::counter!("creditgate_overspend_micros_total").increment(micros as u64);
    }
}

/// A proxied call whose usage the upstream did not report in full: charged at its hold.
pub fn proxy_usage_unknown() {
    metrics::counter!("creditgate_proxy_usage_unknown_total").increment(1);
}

/// A proxied call whose hold was closed before it settled (expired, or voided by a caller):
/// its usage recorded as a usage event instead.
pub fn proxy_usage_after_hold_closed() {
    metrics::counter!("creditgate_proxy_usage_after_hold_closed_total").increment(1);
}

/// Proxied calls found in flight at start (the process stopped mid-call): settled at their
/// holds.
pub fn proxy_calls_recovered(count: u64) {
    metrics::counter!("creditgate_proxy_calls_recovered_total").increment(count);
}
