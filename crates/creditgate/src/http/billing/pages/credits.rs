//! Adding credits: a preset or custom amount, paid on the payment page or with the card on
//! file, through `app::payments::top_up` (idempotent by the form's key).

use axum::extract::{Form, State};
use axum::http::HeaderMap;
use axum::response::Response;
use creditgate_domain::member::Action;
use creditgate_domain::Amount;

use creditgate_domain::payment::{PaymentMethod, PaymentState};

use super::{enter, field, parse_amount, redirect, saved_card, valid_secret, Ctx, Fields};
use crate::app;
use crate::app::payments::TopUp;
use crate::http::api::Path;
use crate::http::billing::html::{esc, message};
use crate::http::billing::new_secret;
use crate::node::AppState;

/// Top-up presets, in whole currency units (those within the limits are shown).
const PRESETS: [i64; 4] = [10, 25, 50, 100];

fn credits_form(ctx: &Ctx, error: &str, saved_card: Option<&str>) -> String {
    let limits = ctx.state.payment_limits();
    let presets: String = PRESETS
        .iter()
        .filter_map(|units| Amount::from_units(*units))
        .filter(|amount| *amount >= limits.amount_min && *amount <= limits.amount_max)
        .map(|amount| {
            format!(
                "<button type=\"submit\" name=\"amount\" value=\"{value}\" class=\"secondary\">{label}</button>",
                value = amount,
                label = esc(&ctx.money(amount))
            )
        })
        .collect();
    let method = match saved_card {
        Some(label) => format!(
            "<fieldset><legend>Pay with</legend>\
             <label><input type=\"radio\" name=\"method\" value=\"checkout\" checked> A card on the payment page</label>\
             <label><input type=\"radio\" name=\"method\" value=\"saved_card\"> The card on file ({})</label></fieldset>",
            esc(label)
        ),
        None => "<input type=\"hidden\" name=\"method\" value=\"checkout\">".to_owned(),
    };
    let key = new_secret();
    let error = if error.is_empty() {
        String::new()
    } else {
        message("error", error)
    };
    format!(
        "{error}<form method=\"post\" class=\"card\">{csrf}<input type=\"hidden\" name=\"idempotency_key\" value=\"{key}\">\
         {method}<h2 id=\"presets-label\">Choose an amount</h2><div class=\"presets\" role=\"group\" aria-labelledby=\"presets-label\">{presets}</div>\
         <label for=\"custom\">Or another amount <span class=\"hint\">({min} to {max})</span></label>\
         <input type=\"text\" inputmode=\"decimal\" id=\"custom\" name=\"custom\" placeholder=\"e.g. 40.00\">\
         <button type=\"submit\" id=\"pay-custom\">Continue to payment</button></form>\
         <p class=\"muted\">Credits are added as soon as the payment succeeds, and API access comes back within a second.</p>",
        csrf = ctx.csrf(),
        min = esc(&ctx.money(limits.amount_min)),
        max = esc(&ctx.money(limits.amount_max)),
    )
}

pub(super) async fn credits_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(org_id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<Fields>,
) -> Response {
    let ctx = match enter(&state, &headers, &org_id, Action::AddCredits, None).await {
        Ok(ctx) => ctx,
        Err(response) => return response,
    };
    let mut note = String::new();
    if let Some(payment_id) = query.get("payment") {
        if let Ok(Some(payment)) = state.store().payment(payment_id).await {
            if payment.org_id == org_id {
                let balance = state
                    .store()
                    .account(&creditgate_domain::ledger::AccountId::new(org_id.clone()))
                    .await
                    .ok()
                    .flatten()
                    .map(|a| a.available());
                note = match (payment.state.as_str(), balance) {
                    ("succeeded", Some(available)) => message(
                        "notice",
                        &format!(
                            "Payment received: {} added. Your balance is {}.",
                            ctx.money(payment.amount),
                            ctx.money(available)
                        ),
                    ),
                    ("failed", _) => message("error", "The payment did not go through."),
                    _ => message(
                        "notice",
                        "Payment received: your credits are added in a moment. Reload this page to see them.",
                    ),
                };
            }
        }
    }
    let card = saved_card(&state, &org_id).await;
    let body = format!("{note}{}", credits_form(&ctx, "", card.as_deref()));
    ctx.page("/credits", "Add credits", &body)
}

pub(super) async fn credits_add(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(org_id): Path<String>,
    Form(fields): Form<Fields>,
) -> Response {
    let ctx = match enter(&state, &headers, &org_id, Action::AddCredits, Some(&fields)).await {
        Ok(ctx) => ctx,
        Err(response) => return response,
    };
    let card = saved_card(&state, &org_id).await;
    let text = match field(&fields, "amount") {
        "" => field(&fields, "custom"),
        preset => preset,
    };
    let Some(amount) = parse_amount(text) else {
        let body = credits_form(&ctx, "Enter an amount, like 25.00.", card.as_deref());
        return ctx.page("/credits", "Add credits", &body);
    };
    let key = match field(&fields, "idempotency_key") {
        key if valid_secret(key) => key.to_owned(),
        _ => new_secret(),
    };
    let method = match field(&fields, "method") {
        "saved_card" => PaymentMethod::SavedCard,
        _ => PaymentMethod::Checkout,
    };
    // The payment page comes back here with the payment's id.
    let actor = ctx.caller();
    let payment_id = app::payments::top_up_id(&actor, &key);
    let return_url = format!(
        "{}{}/credits?payment={payment_id}",
        state.public_url(),
        ctx.base()
    );
    let top_up = TopUp {
        amount,
        method,
        return_url: Some(return_url),
    };
    let payment = match app::payments::top_up(&state, &actor, &org_id, top_up, &key).await {
        Ok(payment) => payment,
        Err(error) => {
            let body = credits_form(&ctx, &error.message, card.as_deref());
            return ctx.page("/credits", "Add credits", &body);
        }
    };
    match (payment.state, payment.action_url.as_deref()) {
        (
            PaymentState::RequiresAction | PaymentState::Created | PaymentState::Charging,
            Some(url),
        ) if !url.is_empty() => redirect(url),
        (PaymentState::Failed, _) => {
            let reason = payment
                .failure_message
                .as_deref()
                .unwrap_or("The payment did not go through.");
            let body = credits_form(&ctx, reason, card.as_deref());
            ctx.page("/credits", "Add credits", &body)
        }
        _ => redirect(&format!(
            "{}/credits?payment={}",
            ctx.base(),
            esc(&payment.id)
        )),
    }
}
