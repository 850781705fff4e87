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
use crate::http::api::Path;
use crate::http::billing::html::{esc, message};
use crate::node::AppState;

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
    let can_manage = ctx.can(Action::ManageAutoReload);
    let status = match &current {
        Some(reload) if reload.settings.enabled => format!(
            "<p id=\"reload-status\"><strong>Auto-reload is on.</strong> When the balance falls below {}, {}.</p>",
            esc(&ctx.money(reload.settings.threshold)),
            match reload.settings.amount {
                ReloadAmount::Fixed(amount) => format!("{} is added", esc(&ctx.money(amount))),
                ReloadAmount::Target(target) => format!("the balance is reloaded to {}", esc(&ctx.money(target))),
            }
        ),
        Some(reload) => format!(
            "<p id=\"reload-status\"><strong>Auto-reload is off.</strong>{}</p>",
            match reload.disabled_reason.as_deref() {
                Some("too_many_failures") => " It turned itself off after repeated failed charges: update the card and turn it on again.",
                _ => "",
            }
        ),
        None => "<p id=\"reload-status\"><strong>Auto-reload is off.</strong></p>".to_owned(),
    };
    let consent = current.as_ref().map(|reload| {
        format!(
            "<p class=\"muted\" id=\"consent-record\">Consent given by {} on {} (text version {}).</p>",
            esc(&reload.consent_by),
            esc(&utc_date(reload.consent_at.unix_ms().div_euclid(1000))),
            esc(&reload.consent_text_version)
        )
    });
    let (threshold, amount, target, monthly) = match &current {
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
    let cards = card_choices(state, card.as_deref());
    let form = if can_manage {
        format!(
            "<form method=\"post\" class=\"card\">{csrf}\
             <label><input type=\"checkbox\" name=\"enabled\" value=\"on\" id=\"enabled\"{checked}> Turn on auto-reload</label>\
             <label for=\"threshold\">When the balance falls below</label>\
             <input type=\"text\" inputmode=\"decimal\" id=\"threshold\" name=\"threshold\" value=\"{threshold}\" required>\
             <fieldset><legend>Then</legend>\
             <label><input type=\"radio\" name=\"mode\" value=\"amount\"{amount_checked}> add a fixed amount</label>\
             <label for=\"amount\" class=\"hint\">Amount</label><input type=\"text\" inputmode=\"decimal\" id=\"amount\" name=\"amount\" value=\"{amount}\">\
             <label><input type=\"radio\" name=\"mode\" value=\"target\"{target_checked}> reload up to a balance</label>\
             <label for=\"target\" class=\"hint\">Target balance</label><input type=\"text\" inputmode=\"decimal\" id=\"target\" name=\"target\" value=\"{target}\">\
             </fieldset>\
             <label for=\"monthly_limit\">Monthly limit <span class=\"hint\">(the most auto-reload may charge in a calendar month)</span></label>\
             <input type=\"text\" inputmode=\"decimal\" id=\"monthly_limit\" name=\"monthly_limit\" value=\"{monthly}\" required>\
             {cards}\
             <h2>Consent</h2><p id=\"consent-text\">{consent_text}</p>\
             <label><input type=\"checkbox\" name=\"consent\" value=\"{version}\" id=\"consent\"> I agree (version {version})</label>\
             <button type=\"submit\" id=\"save-reload\">Save auto-reload</button></form>",
            csrf = ctx.csrf(),
            checked = if current.as_ref().is_none_or(|r| r.settings.enabled) { " checked" } else { "" },
            amount_checked = if by_target { "" } else { " checked" },
            target_checked = if by_target { " checked" } else { "" },
            consent_text = esc(&consent_text(ctx)),
            version = esc(&state.config().consent_text_version),
        )
    } else {
        String::new()
    };
    let attempts = recent_reloads(ctx).await;
    let error = if error.is_empty() {
        String::new()
    } else {
        message("error", error)
    };
    let saved = if saved {
        message("notice", "Auto-reload settings saved.")
    } else {
        String::new()
    };
    let failure = current
        .as_ref()
        .and_then(|v| v.last_failure.as_ref())
        .map(|f| message("error", &format!("The last automatic charge failed: {f}")))
        .unwrap_or_default();
    let body = format!(
        "{saved}{error}{failure}<section class=\"card\">{status}<p>Card on file: <strong id=\"card-on-file\">{card}</strong></p>{consent}</section>{form}<h2>Recent automatic charges</h2>{attempts}",
        card = esc(card.as_deref().unwrap_or("none")),
        consent = consent.unwrap_or_default(),
    );
    ctx.page("/auto-reload", "Auto-reload", &body)
}

fn card_choices(state: &AppState, card: Option<&str>) -> String {
    let keep = card.map(|label| {
        format!(
            "<label><input type=\"radio\" name=\"payment_method\" value=\"\" checked> Keep the card on file ({})</label>",
            esc(label)
        )
    });
    match state.provider() {
        crate::providers::Provider::Sandbox => {
            let test_cards: String = crate::providers::sandbox::TEST_CARDS
                .iter()
                .enumerate()
                .map(|(index, (id, label, _))| {
                    let checked = if card.is_none() && index == 0 { " checked" } else { "" };
                    format!(
                        "<label><input type=\"radio\" name=\"payment_method\" value=\"{id}\"{checked}> Sandbox test card {} <span class=\"hint\">({id})</span></label>",
                        esc(label)
                    )
                })
                .collect();
            format!(
                "<fieldset><legend>Card</legend>{}{test_cards}</fieldset>",
                keep.unwrap_or_default()
            )
        }
        crate::providers::Provider::Stripe(_) => format!(
            "<fieldset><legend>Card</legend>{}<p class=\"hint\">To use another card, add credits with it: the payment page saves it for auto-reload.</p></fieldset>",
            keep.unwrap_or_else(|| "<p>No card on file yet: add credits once and the card is saved.</p>".to_owned())
        ),
    }
}

async fn recent_reloads(ctx: &Ctx) -> String {
    let payments = match ctx.state.store().payments(&ctx.org.id, 50, None).await {
        Ok(page) => page.map(|page| page.items).unwrap_or_default(),
        Err(error) => {
            tracing::warn!(%error, "reading payments");
            return "<p>Could not load them.</p>".to_owned();
        }
    };
    let rows: String = payments
        .iter()
        .filter(|p| p.kind == creditgate_domain::payment::PaymentKind::AutoReload)
        .take(10)
        .map(|p| {
            format!(
                "<tr><td>{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
                esc(&utc_date(p.created_at.unix_ms().div_euclid(1000))),
                esc(&ctx.money(p.amount)),
                esc(p.state.as_str()),
                esc(p.failure_message.as_deref().unwrap_or(""))
            )
        })
        .collect();
    if rows.is_empty() {
        "<p class=\"muted\">None yet.</p>".to_owned()
    } else {
        format!(
            "<div class=\"table-wrap\"><table><thead><tr><th scope=\"col\">When (UTC)</th><th scope=\"col\" class=\"num\">Amount</th><th scope=\"col\">State</th><th scope=\"col\">Failure</th></tr></thead><tbody>{rows}</tbody></table></div>"
        )
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
