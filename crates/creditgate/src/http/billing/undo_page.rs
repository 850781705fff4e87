//! `GET/POST /undo/{token}`: the "undo this charge" link of an auto-reload receipt. The GET
//! page asks for confirmation with a button (a POST, so mail scanners that fetch links undo
//! nothing); the POST undoes through `app::undo` and says what happened. The token alone
//! authorizes (it is long, signed and expires): knowing it allows undoing that one charge,
//! nothing more.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use creditgate_domain::notice::format_money;
use creditgate_store::api::{Payment, RefundState};
use maud::html;

use super::html::{message, public_page, respond};
use crate::app::undo;
use crate::app::ApiError;
use crate::state::AppState;

/// The undo link's routes.
pub fn router() -> Router<AppState> {
    Router::new().route("/undo/{token}", get(confirm).post(undo_charge))
}

/// A page for this link's visitor.
fn page(state: &AppState, status: StatusCode, title: &str, body: maud::Markup) -> Response {
    respond(
        status,
        public_page(&state.config().product_name, title, body),
    )
}

/// Why the link does nothing, as a page.
fn refused(state: &AppState, error: &ApiError) -> Response {
    let body = html! {
        (message("error", &error.message))
        p { "You can still see your balance and change the auto-reload settings on the Billing page." }
    };
    page(
        state,
        error.status,
        "This charge cannot be undone here",
        body,
    )
}

fn charged(payment: &Payment) -> String {
    format_money(payment.amount, &payment.currency)
}

async fn confirm(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let payment = match undo::charge(&state, &token).await {
        Ok(payment) => payment,
        Err(error) => return refused(&state, &error),
    };
    let body = html! {
        p {
            "Auto-reload charged the saved card " strong { (charged(&payment)) }
            " for usage credits."
        }
        p {
            "Undoing it refunds the credits of this charge that are not used yet to the card, \
             and turns auto-reload off. Credits already used are not refunded."
        }
        form method="post" {
            button #undo type="submit" { "Undo this charge" }
        }
    };
    page(&state, StatusCode::OK, "Undo an automatic charge", body)
}

async fn undo_charge(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let (payment, refund) = match undo::undo(&state, &token).await {
        Ok(done) => done,
        Err(error) => return refused(&state, &error),
    };
    let body = match refund {
        Some(refund)
            if refund.state == RefundState::Failed
                && refund.failure_code.as_deref() == Some("refund_exceeds_unspent") =>
        {
            html! {
                (message("notice", "Auto-reload is turned off."))
                p #refunded { "Nothing was refunded: the credits of this charge were used before they could be refunded." }
            }
        }
        Some(refund) if refund.state == RefundState::Failed => html! {
            (message("error", "The card's provider refused the refund. Auto-reload is turned off; contact support to get the credits refunded."))
        },
        Some(refund) if refund.state == RefundState::LedgerRefused => html! {
            (message("error", "The credits were used while the refund was made. Auto-reload is turned off; support will settle the refund."))
        },
        Some(refund) => html! {
            (message("notice", "Done. Auto-reload is turned off."))
            p #refunded {
                strong { (format_money(refund.amount, &payment.currency)) }
                " of the " (charged(&payment)) " charge "
                @if refund.state == RefundState::Succeeded { "was refunded" } @else { "is being refunded" }
                " to the card. A receipt is on its way by email."
            }
        },
        None => html! {
            (message("notice", "Auto-reload is turned off."))
            p #refunded { "Nothing was refunded: the credits of this charge were all used already." }
        },
    };
    page(&state, StatusCode::OK, "Automatic charge undone", body)
}
