//! The tour: a new org calls the metering proxy, Anthropic- and OpenAI-style in turn, until
//! it is refused with 402; it then pays for a checkout top-up on the sandbox's page and is
//! served again.

use std::io::IsTerminal as _;
use std::path::Path;
use std::str::FromStr as _;
use std::time::{Duration, Instant};

use anyhow::bail;
use creditgate::demo_upstream::REPLY_WORDS;
use creditgate_domain::Amount;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::api::{Api, As, Balance};
use super::print::{call_line, say};
use super::seed::{new_org, DemoOrg};
use super::{
    PRICES, SETTLE_WAIT_MAX, TOUR_CALLS_MAX, TOUR_CARD, TOUR_CREDIT, TOUR_LOW_THRESHOLD,
    TOUR_ORG_NAME, TOUR_PROMPT, TOUR_TIME_MAX, TOUR_TOP_UP,
};

/// The story: a new org calls until cut off, is refused, gets credits, and is served again.
pub(super) async fn tour(
    api: &Api,
    billing_url: &dyn Fn(&str) -> String,
    mail_dir: &Path,
    consent_text_version: &str,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let full = Amount::from_str(TOUR_CREDIT).expect("a valid amount");
    let org = new_org(api, TOUR_ORG_NAME, TOUR_LOW_THRESHOLD, TOUR_CREDIT, "tour").await?;
    let currency = api.balance(&org).await?.currency;
    say(&format!(
        "\nThe tour: a new org, {TOUR_ORG_NAME} ({}), starts with {full} {currency} of credit (a \
         low-balance alert at {TOUR_LOW_THRESHOLD}) and calls the metering proxy with its key, Anthropic- and \
         OpenAI-style in turn ({} and {}, every other pair streamed). Each call holds its worst \
         case, then pays for the usage the upstream reports.\n",
        org.org_id,
        Style::Anthropic.model(),
        Style::OpenAi.model(),
    ));
    let on_terminal = std::io::stdout().is_terminal();
    let mut previous = full;
    let mut spent = Amount::ZERO;
    let mut refused = None;
    for n in 1..=TOUR_CALLS_MAX {
        if started.elapsed() > TOUR_TIME_MAX {
            bail!("the tour took longer than {TOUR_TIME_MAX:?} without being cut off");
        }
        let (style, stream) = call_kind(n);
        match proxied_call(api, &org, style, stream).await? {
            Outcome::Served(balance) => {
                spent = spent
                    .checked_add(
                        previous
                            .checked_sub(balance.available)
                            .unwrap_or(Amount::ZERO),
                    )
                    .unwrap_or(spent);
                previous = balance.available;
                say(&call_line(n, style, stream, "200", &balance, full));
                if on_terminal {
                    // Slow enough to watch; a pipe (a test, a log) gets it at full speed.
                    tokio::time::sleep(Duration::from_millis(60)).await;
                }
            }
            Outcome::Refused(status, body) => {
                refused = Some((n, style, status, body));
                break;
            }
        }
    }
    let Some((cut_at, style, status, body)) = refused else {
        bail!("{TOUR_CALLS_MAX} calls and still not cut off");
    };
    let balance = api.balance(&org).await?;
    say(&format!(
        "\ncall {cut_at:>3}  {:<9} refused: HTTP {} {} (available {}, less than the call's worst \
         case; access {}). The body as received, in the {} style's own error envelope:\n{}",
        style.name(),
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        balance.available,
        balance.access_state,
        style.name(),
        body.trim(),
    ));
    say(&format!(
        "\nAPI access is turned off, in the same commit that refused the call, and the org's \
         billing contacts are told:\n{}",
        told(api, &org, "access.turned_off", mail_dir).await?
    ));
    say(&format!(
        "\n{} calls were served for {spent} {currency} in all. Now the org's admin adds credits, as on \
         its billing page ({}): a {TOUR_TOP_UP} {currency} checkout top-up, paid with a test card on the \
         sandbox's checkout page (in production this page is Stripe Checkout).",
        cut_at - 1,
        billing_url(&org.org_id),
    ));
    let paid = checkout_top_up(api, &org).await?;
    let balance = api.balance(&org).await?;
    say(&format!(
        "  balance after: {} {currency} available, access {}",
        balance.available, balance.access_state,
    ));
    let n = cut_at;
    let (style, stream) = call_kind(n);
    let Outcome::Served(balance) = proxied_call(api, &org, style, stream).await? else {
        bail!("call {n} was refused again after the payment {paid}");
    };
    say(&format!(
        "\n{}",
        call_line(n, style, stream, "200", &balance, full)
    ));
    let now = api.balance(&org).await?;
    if now.access_state != "active" {
        bail!(
            "after the payment {paid} the access state is {}, not active",
            now.access_state
        );
    }
    say(&format!(
        "\nCall {n} was served again right after the payment: access active again, {} available, \
         and the org is told:\n{}",
        now.available,
        told(api, &org, "access.restored", mail_dir).await?,
    ));
    auto_reload_rescue(api, &org, n + 1, consent_text_version).await?;
    say(&format!("\nTour done in {:.1?}.", started.elapsed()));
    Ok(())
}

/// The second cut-off, caught by auto-reload: the admin turns it on with a test card
/// (threshold 0.00, so here only a refused call triggers it), the org's batch job records
/// most of its credits as usage, calls go on until one is refused, and the card is charged at
/// once: access is back without anyone being told it was off. Calls are numbered from `n`.
async fn auto_reload_rescue(
    api: &Api,
    org: &DemoOrg,
    mut n: u32,
    consent_text_version: &str,
) -> anyhow::Result<()> {
    let settings = format!("/v1/orgs/{}/auto_reload", org.org_id);
    api.operator(
        Method::PUT,
        &settings,
        Some(&json!({
            "enabled": true,
            "threshold": "0.00",
            "amount": TOUR_TOP_UP,
            "monthly_limit": "50.00",
            "payment_method": TOUR_CARD,
            "consent": {"accepted_by": "admin@tour.example", "text_version": consent_text_version},
        })),
        None,
    )
    .await?;
    say(&format!(
        "\nNext, the admin turns on auto-reload with the test card {TOUR_CARD}: add {TOUR_TOP_UP} \
         when the balance reaches 0.00, at most 50.00 a month (PUT {settings}). A threshold of \
         0.00 means only a refused call triggers it here."
    ));
    let before = api.balance(org).await?;
    let keep = Amount::from_micros(1_500);
    let batch = before.available.checked_sub(keep).unwrap_or(Amount::ZERO);
    // The batch job's usage at claude-demo's output price (15.00 per million tokens).
    let output_tokens = u64::try_from(batch.micros() / 15).unwrap_or(0);
    let event = json!({"events": [{"id": format!("tour-batch-{}", org.org_id),
        "model": PRICES[0].model, "usage": {"input_tokens": 0, "output_tokens": output_tokens}}]});
    let recorded = api
        .send(
            Method::POST,
            "/v1/usage",
            As::ApiKey(&org.key),
            Some(&event),
            &[],
        )
        .await?;
    if !recorded.status.is_success() {
        bail!(
            "POST /v1/usage: {} {}",
            recorded.status,
            recorded.text.trim()
        );
    }
    let after = api.balance(org).await?;
    say(&format!(
        "The org's nightly batch job records its usage through the metering API (POST /v1/usage, \
         {output_tokens} output tokens): {} {} left.",
        after.available, before.currency
    ));
    for _ in 0..TOUR_RESCUE_CALLS_MAX {
        let (style, stream) = call_kind(n);
        match proxied_call(api, org, style, stream).await? {
            Outcome::Served(balance) => {
                say(&call_line(
                    n,
                    style,
                    stream,
                    "200",
                    &balance,
                    before.available,
                ));
                n += 1;
            }
            Outcome::Refused(status, _) => {
                say(&format!(
                    "call {n:>3}  {:<9} refused: HTTP {}: access off, and auto-reload charges the card \
                     at once.",
                    style.name(),
                    status.as_u16()
                ));
                let started = Instant::now();
                let back = loop {
                    let balance = api.balance(org).await?;
                    if balance.access_state != "depleted" {
                        break balance;
                    }
                    if started.elapsed() > RESCUE_WAIT_MAX {
                        bail!("auto-reload did not restore access within {RESCUE_WAIT_MAX:?}");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                };
                let payments = api
                    .operator(
                        Method::GET,
                        &format!("/v1/orgs/{}/payments", org.org_id),
                        None,
                        None,
                    )
                    .await?;
                let reload = payments["data"]
                    .as_array()
                    .and_then(|all| all.iter().find(|p| p["kind"] == "auto_reload"))
                    .cloned()
                    .unwrap_or_default();
                say(&format!(
                    "  auto-reload {} {} {} ({}), access {} again with {} available; no \"turned off\" \
                     email this time, since access was off only until the card was charged.",
                    reload["state"].as_str().unwrap_or("?"),
                    reload["amount"].as_str().unwrap_or("?"),
                    back.currency,
                    reload["id"].as_str().unwrap_or("?"),
                    back.access_state,
                    back.available,
                ));
                let Outcome::Served(balance) = proxied_call(api, org, style, stream).await? else {
                    bail!("call {n} was refused again after the auto-reload");
                };
                say(&call_line(
                    n,
                    style,
                    stream,
                    "200",
                    &balance,
                    before.available,
                ));
                return Ok(());
            }
        }
    }
    bail!("{TOUR_RESCUE_CALLS_MAX} calls after the batch job and still not refused")
}

/// Most calls the rescue makes after the batch job before giving up on a refusal.
const TOUR_RESCUE_CALLS_MAX: u32 = 40;
/// Longest the tour waits for auto-reload to bring access back.
const RESCUE_WAIT_MAX: Duration = Duration::from_secs(15);
/// Longest the tour waits for a notice to be delivered.
const TOLD_WAIT_MAX: Duration = Duration::from_secs(15);

/// Waits for the org's `kind` notice to be delivered and says what reached its billing
/// contacts: the subject and the `.eml` file it was written to (or that it went over SMTP).
async fn told(api: &Api, org: &DemoOrg, kind: &str, mail_dir: &Path) -> anyhow::Result<String> {
    let path = format!("/v1/notices?org_id={}&limit=100", org.org_id);
    let started = Instant::now();
    let id = loop {
        let notices = api.operator(Method::GET, &path, None, None).await?;
        let sent = notices["data"].as_array().and_then(|all| {
            all.iter()
                .find(|n| n["kind"] == kind && n["state"] == "sent")
                .and_then(|n| n["id"].as_str().map(str::to_owned))
        });
        if let Some(id) = sent {
            break id;
        }
        if started.elapsed() > TOLD_WAIT_MAX {
            bail!("no {kind} notice was delivered within {TOLD_WAIT_MAX:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let file = mail_dir.join(format!("{id}.eml"));
    Ok(match std::fs::read_to_string(&file) {
        Ok(text) => {
            let subject = text
                .lines()
                .find_map(|line| line.strip_prefix("Subject: "))
                .unwrap_or("?");
            format!("  email \"{subject}\"\n  written to {}", file.display())
        }
        Err(_) => format!("  email {id} (sent by the configured mailer)"),
    })
}

/// A [`TOUR_TOP_UP`] checkout top-up of `org`, paid on the sandbox's checkout page with
/// [`TOUR_CARD`], then read back as succeeded: the payment's id.
async fn checkout_top_up(api: &Api, org: &DemoOrg) -> anyhow::Result<String> {
    let path = format!("/v1/orgs/{}/top_ups", org.org_id);
    let payment = api
        .operator(
            Method::POST,
            &path,
            Some(&json!({"amount": TOUR_TOP_UP, "method": "checkout"})),
            Some(&format!("tour-top-up-{}", org.org_id)),
        )
        .await?;
    let text = |name: &str| payment[name].as_str().unwrap_or_default().to_owned();
    let (payment_id, provider, action_url) = (text("id"), text("provider"), text("action_url"));
    if provider != "sandbox" {
        bail!(
            "POST {path}: the payment provider is {provider:?}; the tour pays on the sandbox's \
             checkout page (payments = \"sandbox\")"
        );
    }
    // The page lives on this service; its address in `action_url` starts with the public URL.
    let page = format!("/sandbox/checkout/{payment_id}");
    if payment_id.is_empty() || text("state") != "requires_action" || !action_url.ends_with(&page) {
        bail!("POST {path}: not a checkout waiting to be paid: {payment}");
    }
    say(&format!(
        "  POST {path} {{\"amount\":\"{TOUR_TOP_UP}\"}} -> {payment_id}, requires_action"
    ));
    say(&format!("  checkout page: {action_url}"));
    let paid = api.pay_on_checkout(&page, TOUR_CARD).await?;
    if paid.status != StatusCode::OK || !paid.text.contains("Payment received") {
        bail!(
            "POST {page} with {TOUR_CARD}: {} {}",
            paid.status,
            paid.text.trim()
        );
    }
    let read = api
        .operator(
            Method::GET,
            &format!("/v1/payments/{payment_id}"),
            None,
            None,
        )
        .await?;
    let state = read["state"].as_str().unwrap_or("?");
    let transfer = read["transfer_id"].as_str().unwrap_or("?");
    if state != "succeeded" {
        bail!("GET /v1/payments/{payment_id}: {state}, not succeeded: {read}");
    }
    say(&format!(
        "  paid with test card {TOUR_CARD} -> payment {state}, credited as {transfer}"
    ));
    Ok(payment_id)
}

/// The two proxy styles the tour alternates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Style {
    Anthropic,
    OpenAi,
}

impl Style {
    pub(super) fn name(self) -> &'static str {
        match self {
            Style::Anthropic => "anthropic",
            Style::OpenAi => "openai",
        }
    }

    fn model(self) -> &'static str {
        match self {
            Style::Anthropic => PRICES[0].model,
            Style::OpenAi => PRICES[1].model,
        }
    }
}

/// How call `n` (from 1) of the tour is made: styles alternate, every other pair streams.
pub(super) fn call_kind(n: u32) -> (Style, bool) {
    let style = if n % 2 == 1 {
        Style::Anthropic
    } else {
        Style::OpenAi
    };
    (style, (n - 1) % 4 >= 2)
}

/// What one proxied call came to.
enum Outcome {
    /// Answered and charged: the balance after it.
    Served(Balance),
    /// Refused for credits: the status and the body as received.
    Refused(StatusCode, String),
}

/// The body of a tour call: the same short question in either style, capped at the demo
/// upstream's whole reply (so the hold's output part is what the call really uses).
pub(super) fn tour_request(style: Style, stream: bool) -> Value {
    json!({
        "model": style.model(),
        "max_tokens": REPLY_WORDS,
        "messages": [{"role": "user", "content": TOUR_PROMPT}],
        "stream": stream,
    })
}

/// One proxied call with the org's key.
async fn proxied_call(
    api: &Api,
    org: &DemoOrg,
    style: Style,
    stream: bool,
) -> anyhow::Result<Outcome> {
    let body = tour_request(style, stream);
    let (path, from, headers) = match style {
        Style::Anthropic => (
            "/anthropic/v1/messages",
            As::ApiKey(&org.key),
            vec![("anthropic-version", "2023-06-01")],
        ),
        Style::OpenAi => (
            "/openai/v1/chat/completions",
            As::Bearer(&org.key),
            Vec::new(),
        ),
    };
    let reply = api
        .send(Method::POST, path, from, Some(&body), &headers)
        .await?;
    if reply.status == StatusCode::PAYMENT_REQUIRED {
        return Ok(Outcome::Refused(reply.status, reply.text));
    }
    if reply.status != StatusCode::OK {
        bail!("POST {path}: {} {}", reply.status, reply.text.trim());
    }
    if stream {
        let end = match style {
            Style::Anthropic => "event: message_stop",
            Style::OpenAi => "data: [DONE]",
        };
        if !reply.text.contains(end) {
            bail!("POST {path}: the stream ended without {end:?}");
        }
        // The stream's settlement follows its last event: wait for the hold to close.
        let started = Instant::now();
        loop {
            let balance = api.balance(org).await?;
            if balance.reserved.is_zero() || started.elapsed() > SETTLE_WAIT_MAX {
                return Ok(Outcome::Served(balance));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    if reply.json().get("usage").is_none() {
        bail!("POST {path}: no usage in {}", reply.text.trim());
    }
    // The proxy's headers, read after the settlement; the balance route otherwise.
    let header = |name: &str| {
        reply
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    match (
        header("creditgate-balance-available").and_then(|text| Amount::from_str(&text).ok()),
        header("creditgate-access-state"),
    ) {
        (Some(available), Some(access_state)) => Ok(Outcome::Served(Balance {
            available,
            reserved: Amount::ZERO,
            access_state,
            currency: String::new(),
        })),
        _ => Ok(Outcome::Served(api.balance(org).await?)),
    }
}
