//! The billing page: server-rendered pages for an org's members, signed in by emailed link.
//!
//! * **Sign-in.** `/billing/sign-in` asks for an email address and sends each of its
//!   memberships a link (`/billing/auth/{secret}`) through the outbox; the answer is the same
//!   whether or not the address belongs to anyone. The link opens a page whose button (a
//!   POST, so mail scanners that fetch links do not use it up) signs in: the link is used up
//!   and a new session starts in the same transaction, and its cookie replaces any earlier
//!   one (the session id is rotated at sign-in). Links work once, for
//!   `sign_in_link_ttl_ms` (invitations: `invite_link_ttl_ms`); sessions last
//!   `session_ttl_ms` and end at sign-out.
//! * **Secrets.** Link and session secrets are 32 random bytes; only their SHA-256 is stored.
//!   The session cookie is `HttpOnly`, `SameSite=Lax`, `Path=/`, and `Secure` when the public
//!   URL is `https`.
//! * **CSRF.** Every form carries the session's CSRF token (before sign-in: a double-submit
//!   cookie), checked on every POST; cookie-authenticated API writes carry it in
//!   `x-csrf-token` (see [`super::auth`]).
//! * **Roles.** Every page and every action asks `creditgate_domain::member::allows` on the
//!   server, in `app::authorize`; the API routes a session may reach at all are [`api_action`]'s
//!   table, with the action each needs (the operation behind it authorizes that action).
//! * **Pages** reuse the API's handlers for every change (top-ups, auto-reload, keys,
//!   settings, members), so a page can do nothing the API would refuse.

pub mod chart;
mod html;
mod pages;
mod payment_pages;
mod undo_page;

use axum::http::{HeaderMap, Method};
use axum::Router;
use creditgate_domain::member::Action;
use creditgate_store::api::Session;

use super::error::ApiError;
use crate::state::AppState;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "cg_session";
/// The pre-sign-in CSRF cookie's name (double submit).
pub const CSRF_COOKIE: &str = "cg_csrf";
/// Longest cookie value looked at.
const COOKIE_LEN_MAX: usize = 128;

/// The billing pages' routes.
pub fn router() -> Router<AppState> {
    pages::router()
        .merge(payment_pages::router())
        .merge(undo_page::router())
}

pub use crate::ids::{new_secret, secret_hash};

/// The value of cookie `name`, if sent (and of a sane length and alphabet).
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|value| {
            !value.is_empty()
                && value.len() <= COOKIE_LEN_MAX
                && value.bytes().all(|b| b.is_ascii_alphanumeric())
        })
}

/// The session cookie's secret, if sent.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    cookie(headers, SESSION_COOKIE)
}

/// The open session whose cookie secret is `secret`.
pub async fn open_session(state: &AppState, secret: &str) -> Result<Option<Session>, ApiError> {
    Ok(state
        .store()
        .session(&secret_hash(secret), state.now())
        .await?)
}

/// What a billing-page session may call on the API, by route: the action it needs, or
/// `None` (not available to sessions: metering, the operator's routes).
pub fn api_action(method: &Method, path: &str) -> Option<Action> {
    use Action::*;
    let get = matches!(*method, Method::GET | Method::HEAD);
    Some(match (get, path) {
        (true, "/v1/orgs/{org_id}") => ViewBalance,
        (false, "/v1/orgs/{org_id}") if method == Method::PATCH => ManageSettings,
        (true, "/v1/orgs/{org_id}/balance") => ViewBalance,
        (true, "/v1/orgs/{org_id}/access_transitions") => ViewBalance,
        (true, "/v1/orgs/{org_id}/transfers") => ViewHistory,
        (true, "/v1/orgs/{org_id}/keys") => ViewKeys,
        (false, "/v1/orgs/{org_id}/keys") if method == Method::POST => ManageKeys,
        (false, "/v1/keys/{key_id}") if method == Method::DELETE => ManageKeys,
        (false, "/v1/orgs/{org_id}/top_ups") if method == Method::POST => AddCredits,
        (true, "/v1/orgs/{org_id}/payments") => ViewPayments,
        (true, "/v1/payments/{payment_id}") => ViewPayments,
        (true, "/v1/orgs/{org_id}/auto_reload") => ViewPayments,
        (false, "/v1/orgs/{org_id}/auto_reload") if method == Method::PUT => ManageAutoReload,
        (true, "/v1/orgs/{org_id}/members") => ViewMembers,
        (false, "/v1/orgs/{org_id}/members") if method == Method::POST => ManageMembers,
        (false, "/v1/orgs/{org_id}/members/{member_id}")
            if method == Method::PATCH || method == Method::DELETE =>
        {
            ManageMembers
        }
        _ => return None,
    })
}

/// `Set-Cookie` for a session (`secret`, lasting `max_age_s`; `None`: clear it).
pub fn session_set_cookie(state: &AppState, secret: Option<&str>, max_age_s: u64) -> String {
    set_cookie(state, SESSION_COOKIE, secret, max_age_s)
}

/// `Set-Cookie` for cookie `name`.
pub fn set_cookie(state: &AppState, name: &str, value: Option<&str>, max_age_s: u64) -> String {
    let secure = if state.public_url().starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    match value {
        Some(value) => {
            format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_s}{secure}")
        }
        None => format!("{name}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_exactly() {
        let mut headers = HeaderMap::new();
        headers.append(
            axum::http::header::COOKIE,
            "a=1; cg_session=abc123; cg_sessionx=no".parse().unwrap(),
        );
        assert_eq!(session_cookie(&headers).as_deref(), Some("abc123"));
        assert_eq!(cookie(&headers, "cg_csrf"), None);
        let mut bad = HeaderMap::new();
        bad.append(
            axum::http::header::COOKIE,
            "cg_session=ab;c".parse().unwrap(),
        );
        assert_eq!(session_cookie(&bad).as_deref(), Some("ab"));
        let mut odd = HeaderMap::new();
        odd.append(
            axum::http::header::COOKIE,
            "cg_session=a%20b".parse().unwrap(),
        );
        assert_eq!(session_cookie(&odd), None);
    }

    #[test]
    fn the_session_route_table() {
        let cases = [
            (
                Method::GET,
                "/v1/orgs/{org_id}/balance",
                Some(Action::ViewBalance),
            ),
            (
                Method::POST,
                "/v1/orgs/{org_id}/top_ups",
                Some(Action::AddCredits),
            ),
            (Method::GET, "/v1/orgs/{org_id}/top_ups", None),
            (
                Method::PUT,
                "/v1/orgs/{org_id}/auto_reload",
                Some(Action::ManageAutoReload),
            ),
            (
                Method::DELETE,
                "/v1/keys/{key_id}",
                Some(Action::ManageKeys),
            ),
            (Method::POST, "/v1/holds", None),
            (Method::POST, "/v1/orgs/{org_id}/grants", None),
            (Method::GET, "/v1/orgs", None),
            (
                Method::PATCH,
                "/v1/orgs/{org_id}",
                Some(Action::ManageSettings),
            ),
            (Method::DELETE, "/v1/orgs/{org_id}", None),
            (
                Method::DELETE,
                "/v1/orgs/{org_id}/members/{member_id}",
                Some(Action::ManageMembers),
            ),
        ];
        for (method, path, expected) in cases {
            assert_eq!(api_action(&method, path), expected, "{method} {path}");
        }
    }

    #[test]
    fn secrets_are_random_and_hashed() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(secret_hash(&a).len(), 64);
        assert_ne!(secret_hash(&a), a);
    }
}
