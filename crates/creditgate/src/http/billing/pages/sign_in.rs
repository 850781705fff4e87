//! Sign-in by emailed link, and sign-out: the pages before a session exists, with their
//! double-submit CSRF cookie.

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use creditgate_domain::Timestamp;
use creditgate_store::api::LinkUse;

use super::{field, internal, problem, redirect, valid_secret, with_cookies, Fields};
use crate::app::members;
use crate::http::auth::constant_time_eq;
use crate::http::billing::html::{self, csrf_field, message};
use crate::http::billing::{self, new_secret, secret_hash, CSRF_COOKIE};
use crate::http::extract::Path;
use crate::state::AppState;
use maud::{html, Markup};

/// Memberships one sign-in request sends links to, at most.
const SIGN_IN_MEMBERSHIPS_MAX: usize = 10;

pub(super) async fn home(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(secret) = billing::session_cookie(&headers) {
        if let Ok(Some(session)) = billing::open_session(&state, &secret).await {
            return redirect(&format!("/billing/{}", session.member.org_id));
        }
    }
    redirect("/billing/sign-in")
}

/// The pre-sign-in CSRF token: the cookie's, or a new one to set.
fn pre_csrf(headers: &HeaderMap) -> (String, bool) {
    match billing::cookie(headers, CSRF_COOKIE) {
        Some(token) => (token, false),
        None => (new_secret(), true),
    }
}

/// A page before sign-in whose form carries `token`, setting its cookie when `fresh`.
fn pre_sign_in_page(
    state: &AppState,
    title: &str,
    body: Markup,
    token: &str,
    fresh: bool,
) -> Response {
    let response = html::respond(
        StatusCode::OK,
        html::public_page(&state.config().product_name, title, body),
    );
    if fresh {
        with_cookies(
            response,
            &[billing::set_cookie(state, CSRF_COOKIE, Some(token), 3_600)],
        )
    } else {
        response
    }
}

fn pre_csrf_ok(headers: &HeaderMap, fields: &Fields) -> bool {
    let cookie = billing::cookie(headers, CSRF_COOKIE).unwrap_or_default();
    let sent = field(fields, "csrf");
    !cookie.is_empty() && constant_time_eq(cookie.as_bytes(), sent.as_bytes())
}

fn sign_in_form(
    state: &AppState,
    headers: &HeaderMap,
    note: Option<Markup>,
    email: &str,
) -> Response {
    let (token, fresh) = pre_csrf(headers);
    let minutes = state.config().sign_in_link_ttl_ms / 60_000;
    let body = html! {
        @if let Some(note) = note { (note) }
        form.card method="post" action="/billing/sign-in" {
            (csrf_field(&token))
            label for="email" { "Email address" }
            input type="email" #email name="email" autocomplete="email" required value=(email);
            p.hint {
                "We email you a link that signs you in. It works once, for " (minutes) " minutes."
            }
            button type="submit" { "Email me a sign-in link" }
        }
    };
    pre_sign_in_page(state, "Sign in to billing", body, &token, fresh)
}

pub(super) async fn sign_in_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::Query(query): axum::extract::Query<Fields>,
) -> Response {
    let note = if query.contains_key("expired") {
        Some(message("notice", "Your session has ended. Sign in again."))
    } else if query.contains_key("signed_out") {
        Some(message("notice", "You are signed out."))
    } else {
        None
    };
    sign_in_form(&state, &headers, note, "")
}

pub(super) async fn sign_in_send(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Response {
    if !pre_csrf_ok(&headers, &fields) {
        return sign_in_form(
            &state,
            &headers,
            Some(message("error", "This form has expired. Try again.")),
            field(&fields, "email"),
        );
    }
    let Some(email) =
        creditgate_domain::member::normalize_email(field(&fields, "email"), members::EMAIL_LEN_MAX)
    else {
        return sign_in_form(
            &state,
            &headers,
            Some(message("error", "Enter a valid email address.")),
            field(&fields, "email"),
        );
    };
    let now = state.now();
    let memberships = match state.store().members_by_email(&email).await {
        Ok(memberships) => memberships,
        Err(error) => return internal(&state, error),
    };
    for member in memberships.iter().take(SIGN_IN_MEMBERSHIPS_MAX) {
        let open = match state.store().open_sign_in_links(&member.id, now).await {
            Ok(open) => open,
            Err(error) => return internal(&state, error),
        };
        if open >= u64::from(state.config().sign_in_links_open_max) {
            tracing::info!(member = %member.id, open, "sign-in link not sent: too many open");
            continue;
        }
        let link = members::new_link(
            &state,
            "member.sign_in",
            state.config().sign_in_link_ttl_ms,
            now,
        );
        if let Err(error) = state.store().create_sign_in_link(member, &link, now).await {
            return internal(&state, error);
        }
    }
    // The same answer whether or not the address belongs to a member.
    html::respond(
        StatusCode::OK,
        html::public_page(
            &state.config().product_name,
            "Check your email",
            html! {
                div.card role="status" {
                    p {
                        "If " strong { (email) } " belongs to a member of an org, a sign-in link \
                         is on its way. It works once, for "
                        (state.config().sign_in_link_ttl_ms / 60_000) " minutes."
                    }
                    p { a href="/billing/sign-in" { "Use another address" } }
                }
            },
        ),
    )
}

pub(super) async fn auth_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(secret): Path<String>,
) -> Response {
    if !valid_secret(&secret) {
        return problem(
            &state,
            StatusCode::NOT_FOUND,
            "This link is not valid",
            "Request a new sign-in link.",
        );
    }
    let (token, fresh) = pre_csrf(&headers);
    // A button, not an automatic sign-in: mail scanners that open links do not use it up.
    let body = html! {
        form.card method="post" action={ "/billing/auth/" (secret) } {
            (csrf_field(&token))
            p { "Continue to sign in to the billing page." }
            button type="submit" #sign-in { "Sign in" }
        }
    };
    pre_sign_in_page(&state, "Sign in", body, &token, fresh)
}

pub(super) async fn auth_use(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(secret): Path<String>,
    Form(fields): Form<Fields>,
) -> Response {
    if !valid_secret(&secret) {
        return problem(
            &state,
            StatusCode::NOT_FOUND,
            "This link is not valid",
            "Request a new sign-in link.",
        );
    }
    if !pre_csrf_ok(&headers, &fields) {
        return problem(
            &state,
            StatusCode::FORBIDDEN,
            "This form has expired",
            "Open the link from your email again.",
        );
    }
    let now = state.now();
    let session_secret = new_secret();
    let ttl = i64::try_from(state.config().session_ttl_ms).unwrap_or(i64::MAX);
    let expires_at = Timestamp::from_unix_ms(now.unix_ms().saturating_add(ttl));
    let used = state
        .store()
        .use_sign_in_link(
            &secret_hash(&secret),
            &secret_hash(&session_secret),
            &new_secret(),
            expires_at,
            now,
        )
        .await;
    match used {
        Ok(LinkUse::SignedIn(member)) => {
            // Rotation: whatever session this browser had ends now.
            if let Some(old) = billing::session_cookie(&headers) {
                if let Err(error) = state.store().end_session(&secret_hash(&old), now).await {
                    tracing::warn!(%error, "ending the previous session");
                }
            }
            with_cookies(
                redirect(&format!("/billing/{}", member.org_id)),
                &[
                    billing::session_set_cookie(
                        &state,
                        Some(&session_secret),
                        state.config().session_ttl_ms / 1000,
                    ),
                    billing::set_cookie(&state, CSRF_COOKIE, None, 0),
                ],
            )
        }
        Ok(LinkUse::Used) => problem(
            &state,
            StatusCode::GONE,
            "This link was used already",
            "A sign-in link works once. Request a new one.",
        ),
        Ok(LinkUse::Expired) => problem(
            &state,
            StatusCode::GONE,
            "This link has expired",
            "Request a new sign-in link.",
        ),
        Ok(LinkUse::NotFound) => problem(
            &state,
            StatusCode::NOT_FOUND,
            "This link is not valid",
            "Request a new sign-in link.",
        ),
        Err(error) => internal(&state, error),
    }
}

pub(super) async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Response {
    let Some(secret) = billing::session_cookie(&headers) else {
        return redirect("/billing/sign-in");
    };
    match billing::open_session(&state, &secret).await {
        Ok(Some(session)) => {
            if !constant_time_eq(
                field(&fields, "csrf").as_bytes(),
                session.csrf_token.as_bytes(),
            ) {
                return problem(
                    &state,
                    StatusCode::FORBIDDEN,
                    "This form has expired",
                    "Go back, reload the page and try again.",
                );
            }
            if let Err(error) = state
                .store()
                .end_session(&session.id_hash, state.now())
                .await
            {
                return internal(&state, error);
            }
        }
        Ok(None) => {}
        Err(error) => return internal(&state, error.message),
    }
    with_cookies(
        redirect("/billing/sign-in?signed_out=1"),
        &[billing::session_set_cookie(&state, None, 0)],
    )
}
