//! The billing pages' handlers. Reads come from the store or the API's handlers; every
//! change goes through an API handler called as the signed-in member (so the role table,
//! validation and idempotency are the API's own), and a refusal is shown on the page.
//!
//! This module holds the routes and what every page shares: the entry check ([`enter`]:
//! session, org, CSRF, role), the signed-in member's [`Ctx`], and small form and response
//! helpers. Each page, or group of pages, is a file of its own.

// A refusal is a whole response returned early, once per request: its size costs nothing.
#![allow(clippy::result_large_err)]

mod auto_reload;
mod credits;
mod history;
mod keys;
mod members;
mod overview;
mod settings;
mod sign_in;
mod usage;

use std::collections::HashMap;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use creditgate_domain::member::{Action, Role};
use creditgate_domain::notice::format_money;
use creditgate_domain::Amount;
use creditgate_store::api::{Member, Org, Session};
use maud::{html, Markup};

use super::chart;
use super::html::{self, csrf_field, Viewer};
use crate::http::auth::{constant_time_eq, Caller};
use crate::state::AppState;

use auto_reload::{reload_page, reload_save};
use credits::{credits_add, credits_page};
use history::{history_page, receipt_page};
use keys::{keys_create, keys_page, keys_revoke};
use members::{members_change, members_invite, members_page};
use overview::overview;
use settings::{settings_page, settings_save};
use sign_in::{auth_page, auth_use, home, sign_in_page, sign_in_send, sign_out};
use usage::{usage_csv, usage_page};

const DAY_MS: i64 = 86_400_000;

/// The pages' routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/billing", get(home))
        .route("/billing/sign-in", get(sign_in_page).post(sign_in_send))
        .route("/billing/auth/{secret}", get(auth_page).post(auth_use))
        .route("/billing/sign-out", post(sign_out))
        .route("/billing/{org_id}", get(overview))
        .route(
            "/billing/{org_id}/credits",
            get(credits_page).post(credits_add),
        )
        .route(
            "/billing/{org_id}/auto-reload",
            get(reload_page).post(reload_save),
        )
        .route("/billing/{org_id}/usage", get(usage_page))
        .route("/billing/{org_id}/usage.csv", get(usage_csv))
        .route("/billing/{org_id}/history", get(history_page))
        .route(
            "/billing/{org_id}/receipts/{transfer_id}",
            get(receipt_page),
        )
        .route("/billing/{org_id}/keys", get(keys_page).post(keys_create))
        .route("/billing/{org_id}/keys/{key_id}/revoke", post(keys_revoke))
        .route(
            "/billing/{org_id}/settings",
            get(settings_page).post(settings_save),
        )
        .route(
            "/billing/{org_id}/members",
            get(members_page).post(members_invite),
        )
        .route(
            "/billing/{org_id}/members/{member_id}",
            post(members_change),
        )
}

type Fields = HashMap<String, String>;

fn field<'a>(fields: &'a Fields, name: &str) -> &'a str {
    fields.get(name).map(String::as_str).unwrap_or("")
}

fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response()
}

fn with_cookies(mut response: Response, cookies: &[String]) -> Response {
    for cookie in cookies {
        if let Ok(value) = cookie.parse() {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

fn problem(state: &AppState, status: StatusCode, title: &str, text: &str) -> Response {
    html::respond(
        status,
        html::public_page(
            &state.config().product_name,
            title,
            html! { p { (text) } p { a href="/billing/sign-in" { "Sign in" } } },
        ),
    )
}

fn internal(state: &AppState, error: impl std::fmt::Display) -> Response {
    tracing::error!(%error, "billing page");
    problem(
        state,
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "Try again in a moment.",
    )
}

/// A signed-in member on one of its org's pages.
struct Ctx {
    state: AppState,
    session: Session,
    org: Org,
}

impl Ctx {
    fn member(&self) -> &Member {
        &self.session.member
    }

    fn role(&self) -> Role {
        self.session.member.role
    }

    fn caller(&self) -> Caller {
        Caller::Member {
            member: self.session.member.clone(),
            org: self.org.clone(),
        }
    }

    fn base(&self) -> String {
        format!("/billing/{}", self.org.id)
    }

    fn money(&self, amount: Amount) -> String {
        format_money(amount, &self.state.config().currency)
    }

    fn viewer(&self) -> Viewer<'_> {
        Viewer {
            product: &self.state.config().product_name,
            org_id: &self.org.id,
            org_name: &self.org.name,
            email: &self.session.member.email,
            role: self.role(),
            csrf: &self.session.csrf_token,
        }
    }

    fn page(&self, current: &str, title: &str, body: Markup) -> Response {
        html::respond(
            StatusCode::OK,
            html::page(&self.viewer(), current, title, body),
        )
    }

    fn csrf(&self) -> Markup {
        csrf_field(&self.session.csrf_token)
    }

    /// Refuses a form whose CSRF token is missing or wrong.
    fn check_csrf(&self, fields: &Fields) -> Result<(), Response> {
        let sent = field(fields, "csrf");
        if constant_time_eq(sent.as_bytes(), self.session.csrf_token.as_bytes()) {
            Ok(())
        } else {
            Err(problem(
                &self.state,
                StatusCode::FORBIDDEN,
                "This form has expired",
                "Go back, reload the page and try again.",
            ))
        }
    }

    /// Whether the member may do `action`: the application layer's answer.
    fn can(&self, action: Action) -> bool {
        crate::app::authorize(&self.caller(), action).is_ok()
    }

    fn require(&self, action: Action) -> Result<(), Response> {
        if self.can(action) {
            Ok(())
        } else {
            Err(html::respond(
                StatusCode::FORBIDDEN,
                html::page(
                    &self.viewer(),
                    "",
                    "Not available to your role",
                    html! {
                        p {
                            "Your role (" (self.role().label()) ") cannot see or change this. \
                             Ask an owner or admin of " (self.org.name) "."
                        }
                    },
                ),
            ))
        }
    }
}

/// The signed-in member of org `org_id`, or the response to send instead: the sign-in page
/// without a session, 404 for another org (other tenants are not confirmed).
async fn ctx(state: &AppState, headers: &HeaderMap, org_id: &str) -> Result<Ctx, Response> {
    let Some(secret) = super::session_cookie(headers) else {
        return Err(redirect("/billing/sign-in"));
    };
    let session = match super::open_session(state, &secret).await {
        Ok(Some(session)) => session,
        Ok(None) => return Err(redirect("/billing/sign-in?expired=1")),
        Err(error) => return Err(internal(state, error.message)),
    };
    if session.member.org_id != org_id {
        return Err(problem(
            state,
            StatusCode::NOT_FOUND,
            "No such page",
            "This page does not exist, or belongs to an org you are not a member of.",
        ));
    }
    let org = match state.store().org(org_id).await {
        Ok(Some(org)) => org,
        Ok(None) => return Err(redirect("/billing/sign-in")),
        Err(error) => return Err(internal(state, error)),
    };
    Ok(Ctx {
        state: state.clone(),
        session,
        org,
    })
}

/// The signed-in member of org `org_id` allowed `action` (for a form, its CSRF token checked
/// first), or the response to send instead.
async fn enter(
    state: &AppState,
    headers: &HeaderMap,
    org_id: &str,
    action: Action,
    form: Option<&Fields>,
) -> Result<Ctx, Response> {
    let ctx = ctx(state, headers, org_id).await?;
    if let Some(fields) = form {
        ctx.check_csrf(fields)?;
    }
    ctx.require(action)?;
    Ok(ctx)
}

fn parse_amount(text: &str) -> Option<Amount> {
    let text = text.trim().trim_start_matches('$').replace(',', "");
    Amount::parse(&text).ok()
}

fn valid_secret(secret: &str) -> bool {
    secret.len() == 64 && secret.bytes().all(|b| b.is_ascii_hexdigit())
}

fn utc_date(unix_s: i64) -> String {
    chart::iso_date(unix_s.div_euclid(86_400))
}

async fn saved_card(state: &AppState, org_id: &str) -> Option<String> {
    match state.store().payment_profile(org_id).await {
        Ok(profile) => profile
            .payment_method
            .map(|pm| profile.card_label.unwrap_or(pm)),
        Err(error) => {
            tracing::warn!(%error, "reading the payment profile");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_from_forms() {
        assert_eq!(parse_amount(" $1,000.50 "), Amount::parse("1000.50").ok());
        assert_eq!(parse_amount("abc"), None);
    }

    #[test]
    fn link_secrets_are_checked_before_lookup() {
        assert!(valid_secret(&"a".repeat(64)));
        assert!(!valid_secret(&"g".repeat(64)));
        assert!(!valid_secret("abc"));
    }

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(1_795_000_000), "2026-11-18");
    }
}
