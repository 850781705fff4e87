//! The background workers: expiry, the payments worker's loop, the notice outbox (emails)
//! and the webhook deliveries. Each runs a step on a timer until shutdown; the notice and
//! webhook steps claim what they send (see `Store::claim_notices`), so several nodes on one
//! database do each thing once.

pub mod notices;
pub mod webhooks;

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::state::AppState;
pub use notices::Mailer;

/// Runs `step` every `interval_ms` until `shutdown` is cancelled; a step under way is
/// finished first (the steps decide themselves whether to stop early).
pub(crate) async fn on_timer<F, Fut>(interval_ms: u64, shutdown: CancellationToken, mut step: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let interval = Duration::from_millis(interval_ms.max(10));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        step().await;
    }
}

/// Closes expired holds and grants through the writer like every balance change, warns of
/// grants expiring within `credits_expiring_lead_ms` (one `credits.expiring` notice per
/// grant), and prunes old idempotency records.
pub(crate) async fn expiry_step(state: &AppState) {
    let idempotency_ttl_ms =
        i64::try_from(state.config().idempotency_ttl_s.saturating_mul(1000)).unwrap_or(i64::MAX);
    let now = state.now();
    if let Err(error) = creditgate_store::expiry::run_once(state.store(), state.writer(), now).await
    {
        tracing::warn!(%error, "expiry step failed; the next one retries");
    }
    let lead_ms = state.config().credits_expiring_lead_ms;
    let limit = creditgate_store::expiry::EXPIRY_BATCH_LEN_MAX;
    match state
        .store()
        .warn_expiring_grants(now, lead_ms, limit)
        .await
    {
        Ok(0) => {}
        Ok(warned) => tracing::info!(warned, "credits-expiring notices written"),
        Err(error) => {
            tracing::warn!(%error, "warning of expiring credits failed; the next step retries")
        }
    }
    let before = creditgate_domain::Timestamp::from_unix_ms(
        now.unix_ms().saturating_sub(idempotency_ttl_ms),
    );
    if let Err(error) = state.store().prune_idempotency_records(before).await {
        tracing::warn!(%error, "pruning idempotency records failed");
    }
}

/// Runs the payments worker (`payments::run_once`) every `payments_interval_ms`, and at
/// once when woken (auto-reload settings changed). A run under way is finished first.
pub(crate) async fn payments_loop(state: &AppState, shutdown: &CancellationToken) {
    let interval = Duration::from_millis(state.config().payments_interval_ms.max(10));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
            _ = state.payments_woken() => {}
        }
        if let Err(error) = crate::app::charges::run_once(state, state.now()).await {
            tracing::warn!(%error, "payments step failed; the next one retries");
        }
        if let Err(error) = crate::app::refunds::run_once(state, state.now()).await {
            tracing::warn!(%error, "refunds step failed; the next one retries");
        }
    }
}

/// Delivers the notice outbox (the step is `notices::run_once`).
pub(crate) async fn notice_step(state: &AppState, mailer: &notices::Mailer) {
    if let Err(error) = notices::run_once(state, mailer, state.now()).await {
        tracing::warn!(%error, "notice step failed; the next one retries");
    }
}

/// Sends the webhook deliveries (the step is `webhooks::run_once`). A run waits for its
/// slowest endpoint (at most `webhook_timeout_ms`); shutdown does not wait for it.
pub(crate) async fn webhook_step(state: &AppState, shutdown: &CancellationToken) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        result = webhooks::run_once(state, state.now()) => {
            if let Err(error) = result {
                tracing::warn!(%error, "webhook step failed; the next one retries");
            }
        }
    }
}
