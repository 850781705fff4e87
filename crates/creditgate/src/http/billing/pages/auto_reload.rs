//! Auto-reload: its settings with the consent text, the card it charges, and the recent
//! automatic charges.

use axum::extract::{Form, State};
use axum::http::HeaderMap;
use axum::response::Response;
use creditgate_domain::member::Action;
use creditgate_domain::reload::{ReloadAmount, ReloadSettings};
use creditgate_domain::Amount;

use super::{enter, field, internal, parse_amount, redirect, saved_card, utc_date, Ctx, Fields};
use crate::app;
use crate::app::payments::{Consent, SetAutoReload};
use crate::http::billing::html::message;
use crate::http::extract::Path;
use crate::providers::sandbox::TEST_CARDS;
use crate::state::AppState;
use creditgate_store::api::AutoReload;
use maud::{html, Markup};

const CONSENT_TEXT: &str = "I authorize {org_provider} to charge the card on file for {org} \
     automatically whenever its credit balance falls below the threshold set here, for the \
     reload amount set here, up to the monthly limit. I can turn auto-reload off at any time \
     on this page.";

fn consent_text(ctx: &Ctx) -> String {
    CONSENT_TEXT
        .replace("{org_provider}", &ctx.state.config().product_name)
        .replace("{org}", &ctx.org.name)
}

async fn reload_view(ctx: &Ctx, error: &str, saved: bool) -> Response {
    let state = &ctx.state;
    let current = match app::payments::auto_reload(state, &ctx.caller(), &ctx.org.id).await {
        Ok(current) => current.map(|c| c.reload),
        Err(error) => return internal(state, error.message),
    };
    let card = saved_card(state, &ctx.org.id).await;
    let attempts = recent_reloads(ctx).await;
    let failure = current.as_ref().and_then(|r| r.last_failure.as_ref());
    let body = html! {
        @if saved { (message("notice", "Auto-reload settings saved.")) }
        @if !error.is_empty() { (message("error", error)) }
        @if let Some(failure) = failure {
            (message("error", &format!("The last automatic charge failed: {failure}")))
        }
        section.card {
            (status(ctx, current.as_ref()))
            p { "Card on file: " strong #card-on-file { (card.as_deref().unwrap_or("none")) } }
            @if let Some(reload) = &current {
                p.muted #consent-record {
                    "Consent given by " (reload.consent_by) " on "
                    (utc_date(reload.consent_at.unix_ms().div_euclid(1000)))
                    " (text version " (reload.consent_text_version) ")."
                }
            }
        }
        @if ctx.can(Action::ManageAutoReload) {
            (reload_form(ctx, current.as_ref(), card.as_deref()))
        }
        h2 { "Recent automatic charges" }
        (attempts)
    };
    ctx.page("/auto-reload", "Auto-reload", body)
}

/// Whether auto-reload is on, and what it does.
fn status(ctx: &Ctx, current: Option<&AutoReload>) -> Markup {
    html! {
        p #reload-status {
            @match current {
                Some(reload) if reload.settings.enabled => {
                    strong { "Auto-reload is on." }
                    " When the balance falls below " (ctx.money(reload.settings.threshold)) ", "
                    @match reload.settings.amount {
                        ReloadAmount::Fixed(amount) => { (ctx.money(amount)) " is added" }
                        ReloadAmount::Target(target) => {
                            "the balance is reloaded to " (ctx.money(target))
                        }
                    }
                    "."
                }
                Some(reload) => {
                    strong { "Auto-reload is off." }
                    @if reload.disabled_reason.as_deref() == Some("too_many_failures") {
                        " It turned itself off after repeated failed charges: update the card \
                         and turn it on again."
                    }
                }
                None => { strong { "Auto-reload is off." } }
            }
        }
    }
}

/// The settings form, filled in with the current settings (or suggestions).
fn reload_form(ctx: &Ctx, current: Option<&AutoReload>, card: Option<&str>) -> Markup {
    let (threshold, amount, target, monthly) = match current {
        Some(reload) => {
            let (amount, target) = match reload.settings.amount {
                ReloadAmount::Fixed(amount) => (amount.to_string(), String::new()),
                ReloadAmount::Target(target) => (String::new(), target.to_string()),
            };
            (
                reload.settings.threshold.to_string(),
                amount,
                target,
                reload.settings.monthly_limit.to_string(),
            )
        }
        None => (
            "10.00".to_owned(),
            "25.00".to_owned(),
            String::new(),
            "200.00".to_owned(),
        ),
    };
    let by_target = !target.is_empty() && amount.is_empty();
    let enabled = current.is_none_or(|r| r.settings.enabled);
    let version = &ctx.state.config().consent_text_version;
    html! {
        form.card method="post" {
            (ctx.csrf())
            label {
                input type="checkbox" name="enabled" value="on" #enabled checked[enabled];
                " Turn on auto-reload"
            }
            label for="threshold" { "When the balance falls below" }
            input type="text" inputmode="decimal" #threshold name="threshold" value=(threshold)
                required;
            fieldset {
                legend { "Then" }
                label {
                    input type="radio" name="mode" value="amount" checked[!by_target];
                    " add a fixed amount"
                }
                label.hint for="amount" { "Amount" }
                input type="text" inputmode="decimal" #amount name="amount" value=(amount);
                label {
                    input type="radio" name="mode" value="target" checked[by_target];
                    " reload up to a balance"
                }
                label.hint for="target" { "Target balance" }
                input type="text" inputmode="decimal" #target name="target" value=(target);
            }
            label for="monthly_limit" {
                "Monthly limit "
                span.hint { "(the most auto-reload may charge in a calendar month)" }
            }
            input type="text" inputmode="decimal" #monthly_limit name="monthly_limit"
                value=(monthly) required;
            (card_choices(&ctx.state, card))
            h2 { "Consent" }
            p #consent-text { (consent_text(ctx)) }
            label {
                input type="checkbox" name="consent" value=(version) #consent;
                " I agree (version " (version) ")"
            }
            button type="submit" #save-reload { "Save auto-reload" }
        }
    }
}

fn card_choices(state: &AppState, card: Option<&str>) -> Markup {
    let keep = card.map(|label| {
        html! {
            label {
                input type="radio" name="payment_method" value="" checked;
                " Keep the card on file (" (label) ")"
            }
        }
    });
    match state.provider() {
        crate::providers::Provider::Sandbox => html! {
            fieldset {
                legend { "Card" }
                @if let Some(keep) = keep { (keep) }
                @for (index, (id, label, _)) in TEST_CARDS.iter().enumerate() {
                    label {
                        input type="radio" name="payment_method" value=(id)
                            checked[card.is_none() && index == 0];
                        " Sandbox test card " (label) " "
                        span.hint { "(" (id) ")" }
                    }
                }
            }
        },
        crate::providers::Provider::Stripe(_) => html! {
            fieldset {
                legend { "Card" }
                @if let Some(keep) = keep {
                    (keep)
                } @else {
                    p { "No card on file yet: add credits once and the card is saved." }
                }
                p.hint {
                    "To use another card, add credits with it: the payment page saves it for \
                     auto-reload."
                }
            }
        },
    }
}

async fn recent_reloads(ctx: &Ctx) -> Markup {
    let payments = match ctx.state.store().payments(&ctx.org.id, 50, None).await {
        Ok(page) => page.map(|page| page.items).unwrap_or_default(),
        Err(error) => {
            tracing::warn!(%error, "reading payments");
            return html! { p { "Could not load them." } };
        }
    };
    let reloads: Vec<_> = payments
        .iter()
        .filter(|p| p.kind == creditgate_domain::payment::PaymentKind::AutoReload)
        .take(10)
        .collect();
    if reloads.is_empty() {
        return html! { p.muted { "None yet." } };
    }
    html! {
        div.table-wrap {
            table {
                thead {
                    tr {
                        th scope="col" { "When (UTC)" }
                        th.num scope="col" { "Amount" }
                        th scope="col" { "State" }
                        th scope="col" { "Failure" }
                    }
                }
                tbody {
                    @for p in reloads {
                        tr {
                            td { (utc_date(p.created_at.unix_ms().div_euclid(1000))) }
                            td.num { (ctx.money(p.amount)) }
                            td { (p.state.as_str()) }
                            td { (p.failure_message.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
    }
}

pub(super) async fn reload_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(org_id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<Fields>,
) -> Response {
    let ctx = match enter(&state, &headers, &org_id, Action::ViewPayments, None).await {
        Ok(ctx) => ctx,
        Err(response) => return response,
    };
    reload_view(&ctx, "", query.contains_key("saved")).await
}

pub(super) async fn reload_save(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(org_id): Path<String>,
    Form(fields): Form<Fields>,
) -> Response {
    let ctx = match enter(
        &state,
        &headers,
        &org_id,
        Action::ManageAutoReload,
        Some(&fields),
    )
    .await
    {
        Ok(ctx) => ctx,
        Err(response) => return response,
    };
    let enabled = field(&fields, "enabled") == "on";
    let money = |name: &str, label: &str| -> Result<Option<Amount>, String> {
        match field(&fields, name).trim() {
            "" => Ok(None),
            text => parse_amount(text)
                .map(Some)
                .ok_or_else(|| format!("{label} must be an amount, like 25.00.")),
        }
    };
    let parsed = (|| -> Result<SetAutoReload, String> {
        let threshold = money("threshold", "The threshold")?.ok_or("Enter the threshold.")?;
        let monthly_limit =
            money("monthly_limit", "The monthly limit")?.ok_or("Enter the monthly limit.")?;
        let amount = if field(&fields, "mode") == "target" {
            ReloadAmount::Target(
                money("target", "The target balance")?.ok_or("Enter the target balance.")?,
            )
        } else {
            ReloadAmount::Fixed(money("amount", "The amount")?.ok_or("Enter the amount.")?)
        };
        let consent = match field(&fields, "consent") {
            "" => None,
            version => Some(Consent {
                accepted_by: ctx.member().email.clone(),
                text_version: version.to_owned(),
            }),
        };
        Ok(SetAutoReload {
            settings: ReloadSettings {
                enabled,
                threshold,
                amount,
                monthly_limit,
            },
            payment_method: Some(field(&fields, "payment_method").to_owned())
                .filter(|pm| !pm.is_empty()),
            consent,
        })
    })();
    let body = match parsed {
        Ok(body) => body,
        Err(error) => return reload_view(&ctx, &error, false).await,
    };
    match app::payments::set_auto_reload(&state, &ctx.caller(), &org_id, body).await {
        Ok(_) => redirect(&format!("{}/auto-reload?saved=1", ctx.base())),
        Err(error) => {
            let text = match error.code {
                "consent_required" | "parameter_missing"
                    if error
                        .param
                        .as_deref()
                        .is_some_and(|p| p.starts_with("consent")) =>
                {
                    "Tick the consent box to turn auto-reload on.".to_owned()
                }
                _ => error.message.clone(),
            };
            reload_view(&ctx, &text, false).await
        }
    }
}
