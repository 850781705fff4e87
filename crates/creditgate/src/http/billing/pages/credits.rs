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
use crate::http::billing::html::message;
use crate::http::billing::new_secret;
use crate::http::extract::Path;
use crate::state::AppState;
use maud::{html, Markup};

/// Top-up presets, in whole currency units (those within the limits are shown).
const PRESETS: [i64; 4] = [10, 25, 50, 100];

fn credits_form(ctx: &Ctx, error: &str, saved_card: Option<&str>) -> Markup {
    let limits = ctx.state.payment_limits();
    let presets = PRESETS
        .iter()
        .filter_map(|units| Amount::from_units(*units))
        .filter(|amount| *amount >= limits.amount_min && *amount <= limits.amount_max);
    html! {
        @if !error.is_empty() { (message("error", error)) }
        form.card method="post" {
            (ctx.csrf())
            input type="hidden" name="idempotency_key" value=(new_secret());
            @if let Some(label) = saved_card {
                fieldset {
                    legend { "Pay with" }
                    label {
                        input type="radio" name="method" value="checkout" checked;
                        " A card on the payment page"
                    }
                    label {
                        input type="radio" name="method" value="saved_card";
                        " The card on file (" (label) ")"
                    }
                }
            } @else {
                input type="hidden" name="method" value="checkout";
            }
            h2 #presets-label { "Choose an amount" }
            div.presets role="group" aria-labelledby="presets-label" {
                @for amount in presets {
                    button.secondary type="submit" name="amount" value=(amount) {
                        (ctx.money(amount))
                    }
                }
            }
            label for="custom" {
                "Or another amount "
                span.hint {
                    "(" (ctx.money(limits.amount_min)) " to " (ctx.money(limits.amount_max)) ")"
                }
            }
            input type="text" inputmode="decimal" #custom name="custom" placeholder="e.g. 40.00";
            button type="submit" #pay-custom { "Continue to payment" }
        }
        p.muted {
            "Credits are added as soon as the payment succeeds, and API access comes back \
             within a second."
        }
    }
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
    let mut note = None;
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
                note = Some(match (payment.state.as_str(), balance) {
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
                });
            }
        }
    }
    let card = saved_card(&state, &org_id).await;
    let body =
        html! { @if let Some(note) = note { (note) } (credits_form(&ctx, "", card.as_deref())) };
    ctx.page("/credits", "Add credits", body)
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
        return ctx.page("/credits", "Add credits", body);
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
            return ctx.page("/credits", "Add credits", body);
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
            ctx.page("/credits", "Add credits", body)
        }
        // A payment id is ours, in id syntax: nothing in it needs encoding.
        _ => redirect(&format!("{}/credits?payment={}", ctx.base(), payment.id)),
    }
}
