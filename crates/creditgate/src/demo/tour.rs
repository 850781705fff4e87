//! The tour: a new org calls the metering proxy, Anthropic- and OpenAI-style in turn, until
//! it is refused with 402; it then pays for a checkout top-up on the sandbox's page and is
//! served again.

use std::io::IsTerminal as _;
use std::str::FromStr as _;
use std::time::{Duration, Instant};

use anyhow::bail;
use creditgate::server::demo_upstream::REPLY_WORDS;
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
pub(super) async fn tour(api: &Api, billing_url: &dyn Fn(&str) -> String) -> anyhow::Result<()> {
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
        "\nCall {n} was served again right after the payment: access active again, {} available. \
         Tour done in {:.1?}.",
        now.available,
        started.elapsed(),
    ));
    Ok(())
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
