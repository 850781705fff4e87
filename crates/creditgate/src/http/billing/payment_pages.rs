//! The customer's payment pages, server-rendered, working without JavaScript:
//!
//! * `GET/POST /sandbox/checkout/{payment_id}`: the sandbox provider's hosted checkout (the
//!   stand-in for Stripe Checkout): pick a test card, pay; a success credits the org, saves
//!   the card and returns to the payment's return URL.
//! * `GET/POST /pay/{payment_id}`: the link a "payment needs confirmation" email carries.
//!   Sandbox: a confirm button (the authentication). Stripe: the waiting PaymentIntent is
//!   cancelled and the customer is sent to a Checkout Session for the same payment, where
//!   Stripe authenticates the card on-session; its completion credits the same payment.
//!
//! A payment id is long and random; knowing it allows paying it, nothing more.

use axum::extract::{Form, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use creditgate_domain::notice::format_money;
use creditgate_domain::payment::{PaymentMethod, PaymentState};
use creditgate_store::api::Payment;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde::Deserialize;

use crate::app::charges;
use crate::providers::{sandbox, ChargeOutcome, Provider};
use crate::state::AppState;

/// The pages' routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/sandbox/checkout/{payment_id}",
            get(checkout_page).post(checkout_pay),
        )
        .route("/pay/{payment_id}", get(confirm_page).post(confirm_pay))
}

/// The checkout form.
#[derive(Debug, Deserialize)]
pub struct PayForm {
    /// A test card (`pm_card_visa`, …).
    pub payment_method: String,
}

/// The payment pages' own small stylesheet: trusted markup.
const CSS: &str = "body{font-family:system-ui,sans-serif;max-width:32rem;margin:2rem auto;\
    padding:0 1rem;color:#1a1a1a}button{font-size:1rem;padding:.6rem 1.2rem;background:#1f4fd8;\
    color:#fff;border:0;border-radius:.3rem}label{display:block;margin:.4rem 0}\
    .error{color:#a40000}.note{color:#555;font-size:.9rem}";

fn page(status: StatusCode, title: &str, body: Markup) -> Response {
    let html = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (PreEscaped(CSS)) }
            }
            body { h1 { (title) } (body) }
        }
    };
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Html(html.into_string()),
    )
        .into_response()
}

/// A page that says one thing.
fn plain(status: StatusCode, title: &str, text: &str) -> Response {
    page(status, title, html! { p { (text) } })
}

async fn load(state: &AppState, payment_id: &str) -> Result<Payment, Response> {
    let valid = crate::ids::is_valid("pay", payment_id);
    let payment = if valid {
        state.store().payment(payment_id).await.map_err(|error| {
            tracing::error!(%error, "loading a payment for its page");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "Try again in a moment.",
            )
        })?
    } else {
        None
    };
    payment.ok_or_else(|| {
        plain(
            StatusCode::NOT_FOUND,
            "No such payment",
            "This payment link is not valid.",
        )
    })
}

fn amount_text(payment: &Payment) -> String {
    format_money(payment.amount, &payment.currency)
}

fn done_page(state: &AppState, payment: &Payment) -> Response {
    let back = payment
        .return_url
        .clone()
        .unwrap_or_else(|| state.billing_url(&payment.org_id));
    page(
        StatusCode::OK,
        "Payment received",
        html! {
            p { (amount_text(payment)) " of credits were added. Thank you." }
            p { a href=(back) { "Back to billing" } }
        },
    )
}

fn closed_page(payment: &Payment) -> Response {
    let text = format!(
        "This payment is {} and cannot be paid here.",
        payment.state.as_str()
    );
    plain(StatusCode::CONFLICT, "Nothing to pay", &text)
}

fn checkout_form(state: &AppState, payment: &Payment, error: Option<&str>) -> Response {
    let amount = amount_text(payment);
    page(
        StatusCode::OK,
        "Sandbox checkout",
        html! {
            p { "Add " strong { (amount) } " of " (state.config().product_name) " credits." }
            @if let Some(error) = error { p.error role="alert" { (error) } }
            form method="post" {
                fieldset {
                    legend { "Test card" }
                    @for (index, (id, label, _)) in sandbox::TEST_CARDS.iter().enumerate() {
                        label {
                            input type="radio" name="payment_method" value=(id) checked[index == 0];
                            " " (label) " " code { (id) }
                        }
                    }
                }
                p { button type="submit" { "Pay " (amount) } }
            }
            p.note { "Sandbox payments: no real card is charged." }
        },
    )
}

async fn checkout_page(
    State(state): State<AppState>,
    axum::extract::Path(payment_id): axum::extract::Path<String>,
) -> Response {
    let payment = match load(&state, &payment_id).await {
        Ok(payment) => payment,
        Err(response) => return response,
    };
    match payment.state {
        PaymentState::Succeeded => done_page(&state, &payment),
        PaymentState::RequiresAction if payment.method == PaymentMethod::Checkout => {
            checkout_form(&state, &payment, None)
        }
        _ => closed_page(&payment),
    }
}

async fn checkout_pay(
    State(state): State<AppState>,
    axum::extract::Path(payment_id): axum::extract::Path<String>,
    Form(form): Form<PayForm>,
) -> Response {
    let payment = match load(&state, &payment_id).await {
        Ok(payment) => payment,
        Err(response) => return response,
    };
    if !matches!(state.provider(), Provider::Sandbox) {
        return closed_page(&payment);
    }
    match payment.state {
        PaymentState::Succeeded => return done_page(&state, &payment),
        PaymentState::RequiresAction if payment.method == PaymentMethod::Checkout => {}
        _ => return closed_page(&payment),
    }
    if sandbox::card(&form.payment_method).is_none() {
        return checkout_form(&state, &payment, Some("Pick one of the test cards."));
    }
    // On a checkout page the customer is present: authentication counts as done.
    let paid = async {
        let outcome = sandbox::charge(&state, &payment, &form.payment_method, true).await?;
        if let ChargeOutcome::Declined { message, .. } = &outcome {
            return Ok::<_, charges::PaymentError>(Err(message.clone()));
        }
        let paid = charges::apply(&state, &payment, outcome).await?;
        charges::save_card(&state, &payment.org_id, &form.payment_method).await?;
        Ok(Ok(paid))
    };
    match paid.await {
        Ok(Ok(paid)) => redirect_back(&state, &paid),
        // A declined card leaves the checkout open: the customer may try another.
        Ok(Err(message)) => checkout_form(&state, &payment, Some(&message)),
        Err(error) => {
            tracing::error!(%error, payment = %payment.id, "sandbox checkout failed");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The payment could not be completed; try again.",
            )
        }
    }
}

fn redirect_back(state: &AppState, payment: &Payment) -> Response {
    match &payment.return_url {
        Some(url) => {
            let separator = if url.contains('?') { '&' } else { '?' };
            let location = format!("{url}{separator}payment={}", payment.id);
            (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
        }
        None => done_page(state, payment),
    }
}

async fn confirm_page(
    State(state): State<AppState>,
    axum::extract::Path(payment_id): axum::extract::Path<String>,
) -> Response {
    let payment = match load(&state, &payment_id).await {
        Ok(payment) => payment,
        Err(response) => return response,
    };
    match payment.state {
        PaymentState::Succeeded => done_page(&state, &payment),
        PaymentState::RequiresAction => {
            if let Provider::Stripe(_) = state.provider() {
                return to_stripe_checkout(&state, &payment).await;
            }
            let amount = amount_text(&payment);
            page(
                StatusCode::OK,
                "Confirm your payment",
                html! {
                    p {
                        "Your bank asks you to confirm a payment of " strong { (amount) }
                        " for " (state.config().product_name) " credits."
                    }
                    form method="post" { button type="submit" { "Confirm " (amount) } }
                    p.note { "Sandbox: this stands for the bank's 3-D Secure check." }
                },
            )
        }
        _ => closed_page(&payment),
    }
}

/// Stripe: the waiting PaymentIntent is cancelled (so it cannot also be paid) and the
/// customer pays the same payment on a Checkout Session, authenticating there.
async fn to_stripe_checkout(state: &AppState, payment: &Payment) -> Response {
    let Provider::Stripe(client) = state.provider() else {
        return closed_page(payment);
    };
    let opened = async {
        if let Some(intent) = payment
            .provider_ref
            .as_deref()
            .filter(|r| r.starts_with("pi_"))
        {
            if let Err(error) = client.cancel(intent).await {
                tracing::info!(%error, "cancelling the waiting PaymentIntent");
            }
        }
        charges::open_checkout(state, payment).await
    };
    match opened.await {
        Ok(opened) => match opened.action_url {
            Some(url) => (StatusCode::SEE_OTHER, [(header::LOCATION, url)]).into_response(),
            None => closed_page(&opened),
        },
        Err(error) => {
            tracing::error!(%error, payment = %payment.id, "opening a checkout for a confirmation");
            plain(
                StatusCode::BAD_GATEWAY,
                "Something went wrong",
                "The payment page could not be opened; try again in a moment.",
            )
        }
    }
}

async fn confirm_pay(
    State(state): State<AppState>,
    axum::extract::Path(payment_id): axum::extract::Path<String>,
) -> Response {
    let payment = match load(&state, &payment_id).await {
        Ok(payment) => payment,
        Err(response) => return response,
    };
    if payment.state == PaymentState::Succeeded {
        return done_page(&state, &payment);
    }
    if payment.state != PaymentState::RequiresAction
        || !matches!(state.provider(), Provider::Sandbox)
    {
        return closed_page(&payment);
    }
    let confirmed = async {
        let card = state
            .store()
            .sandbox_charge(&payment.id)
            .await?
            .map(|c| c.payment_method)
            .unwrap_or_else(|| "pm_card_authenticationRequired".into());
        let outcome = sandbox::charge(&state, &payment, &card, true).await?;
        charges::apply(&state, &payment, outcome).await
    };
    match confirmed.await {
        Ok(paid) if paid.state == PaymentState::Succeeded => done_page(&state, &paid),
        Ok(other) => closed_page(&other),
        Err(error) => {
            tracing::error!(%error, payment = %payment.id, "sandbox confirmation failed");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The payment could not be confirmed; try again.",
            )
        }
    }
}
