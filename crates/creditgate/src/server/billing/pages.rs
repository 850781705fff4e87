//! The billing pages' handlers. Reads come from the store or the API's handlers; every
//! change goes through an API handler called as the signed-in member (so the role table,
//! validation and idempotency are the API's own), and a refusal is shown on the page.

// A refusal is a whole response returned early, once per request: its size costs nothing.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;

use axum::extract::{Form, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use creditgate_domain::member::{allows, Action, Role};
use creditgate_domain::notice::format_money;
use creditgate_domain::{Amount, Timestamp};
use creditgate_store::api::{LinkUse, Member, Org, Session};

use super::html::{self, csrf_field, esc, message, Viewer};
use super::{chart, new_secret, secret_hash, CSRF_COOKIE};
use crate::server::auth::{constant_time_eq, Caller};
use crate::server::json::{Body, Money};
use crate::server::routes::{self, members, Path};
use crate::server::views::HoldTerms;
use crate::server::AppState;

/// Memberships one sign-in request sends links to, at most.
const SIGN_IN_MEMBERSHIPS_MAX: usize = 10;
/// Days the usage page shows by default, and at most.
const USAGE_DAYS_DEFAULT: i64 = 30;
const USAGE_DAYS_MAX: i64 = 366;
/// Usage groups read for one page, at most.
const USAGE_GROUPS_MAX: usize = 20_000;
/// Days of usage the runway's burn rate is measured over.
const BURN_DAYS: i64 = 7;
/// Top-up presets, in whole currency units (those within the limits are shown).
const PRESETS: [i64; 4] = [10, 25, 50, 100];
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
            &format!(
                "<p>{}</p><p><a href=\"/billing/sign-in\">Sign in</a></p>",
                esc(text)
            ),
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

    fn page(&self, current: &str, title: &str, body: &str) -> Response {
        html::respond(
            StatusCode::OK,
            html::page(&self.viewer(), current, title, body),
        )
    }

    fn csrf(&self) -> String {
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

    fn require(&self, action: Action) -> Result<(), Response> {
        if allows(self.role(), action) {
            Ok(())
        } else {
            Err(html::respond(
                StatusCode::FORBIDDEN,
                html::page(
                    &self.viewer(),
                    "",
                    "Not available to your role",
                    &format!(
                        "<p>Your role ({}) cannot see or change this. Ask an owner or admin of {}.</p>",
                        self.role().label(),
                        esc(&self.org.name)
                    ),
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

// ----- sign-in ------------------------------------------------------------------------------

async fn home(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(secret) = super::session_cookie(&headers) {
        if let Ok(Some(session)) = super::open_session(&state, &secret).await {
            return redirect(&format!("/billing/{}", session.member.org_id));
        }
    }
    redirect("/billing/sign-in")
}

/// The pre-sign-in CSRF token: the cookie's, or a new one to set.
fn pre_csrf(headers: &HeaderMap) -> (String, bool) {
    match super::cookie(headers, CSRF_COOKIE) {
        Some(token) => (token, false),
        None => (new_secret(), true),
    }
}

/// A page before sign-in whose form carries `token`, setting its cookie when `fresh`.
fn pre_sign_in_page(
    state: &AppState,
    title: &str,
    body: &str,
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
            &[super::set_cookie(state, CSRF_COOKIE, Some(token), 3_600)],
        )
    } else {
        response
    }
}

fn pre_csrf_ok(headers: &HeaderMap, fields: &Fields) -> bool {
    let cookie = super::cookie(headers, CSRF_COOKIE).unwrap_or_default();
    let sent = field(fields, "csrf");
    !cookie.is_empty() && constant_time_eq(cookie.as_bytes(), sent.as_bytes())
}

fn sign_in_form(state: &AppState, headers: &HeaderMap, note: &str, email: &str) -> Response {
    let (token, fresh) = pre_csrf(headers);
    let body = format!(
        "{note}<form method=\"post\" action=\"/billing/sign-in\" class=\"card\">{csrf}\
         <label for=\"email\">Email address</label>\
         <input type=\"email\" id=\"email\" name=\"email\" autocomplete=\"email\" required value=\"{email}\">\
         <p class=\"hint\">We email you a link that signs you in. It works once, for {minutes} minutes.</p>\
         <button type=\"submit\">Email me a sign-in link</button></form>",
        csrf = csrf_field(&token),
        email = esc(email),
        minutes = state.config().sign_in_link_ttl_ms / 60_000,
    );
    pre_sign_in_page(state, "Sign in to billing", &body, &token, fresh)
}

async fn sign_in_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::Query(query): axum::extract::Query<Fields>,
) -> Response {
    let note = if query.contains_key("expired") {
        message("notice", "Your session has ended. Sign in again.")
    } else if query.contains_key("signed_out") {
        message("notice", "You are signed out.")
    } else {
        String::new()
    };
    sign_in_form(&state, &headers, &note, "")
}

async fn sign_in_send(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Response {
    if !pre_csrf_ok(&headers, &fields) {
        return sign_in_form(
            &state,
            &headers,
            &message("error", "This form has expired. Try again."),
            field(&fields, "email"),
        );
    }
    let Some(email) =
        creditgate_domain::member::normalize_email(field(&fields, "email"), members::EMAIL_LEN_MAX)
    else {
        return sign_in_form(
            &state,
            &headers,
            &message("error", "Enter a valid email address."),
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
            &format!(
                "<div class=\"card\" role=\"status\"><p>If <strong>{}</strong> belongs to a member of an org, \
                 a sign-in link is on its way. It works once, for {} minutes.</p>\
                 <p><a href=\"/billing/sign-in\">Use another address</a></p></div>",
                esc(&email),
                state.config().sign_in_link_ttl_ms / 60_000
            ),
        ),
    )
}

fn valid_secret(secret: &str) -> bool {
    secret.len() == 64 && secret.bytes().all(|b| b.is_ascii_hexdigit())
}

async fn auth_page(
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
    let body = format!(
        "<form method=\"post\" action=\"/billing/auth/{secret}\" class=\"card\">{csrf}\
         <p>Continue to sign in to the billing page.</p>\
         <button type=\"submit\" id=\"sign-in\">Sign in</button></form>",
        secret = esc(&secret),
        csrf = csrf_field(&token),
    );
    pre_sign_in_page(&state, "Sign in", &body, &token, fresh)
}

async fn auth_use(
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
            if let Some(old) = super::session_cookie(&headers) {
                if let Err(error) = state.store().end_session(&secret_hash(&old), now).await {
                    tracing::warn!(%error, "ending the previous session");
                }
            }
            with_cookies(
                redirect(&format!("/billing/{}", member.org_id)),
                &[
                    super::session_set_cookie(
                        &state,
                        Some(&session_secret),
                        state.config().session_ttl_ms / 1000,
                    ),
                    super::set_cookie(&state, CSRF_COOKIE, None, 0),
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

async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Response {
    let Some(secret) = super::session_cookie(&headers) else {
        return redirect("/billing/sign-in");
    };
    match super::open_session(&state, &secret).await {
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
        &[super::session_set_cookie(&state, None, 0)],
    )
}

// ----- overview -----------------------------------------------------------------------------

fn banner(ctx: &Ctx, access_state: &str) -> String {
    let base = ctx.base();
    let can_pay = allows(ctx.role(), Action::AddCredits);
    let fix = if can_pay {
        format!(
            "<a class=\"button\" href=\"{base}/credits\">Add credits</a>\
             <a class=\"button\" href=\"{base}/auto-reload\">Turn on auto-reload</a>"
        )
    } else {
        "<p>Ask an owner, admin or billing member of your org to add credits.</p>".to_owned()
    };
    match access_state {
        "depleted" => format!(
            "<section class=\"banner off\" role=\"alert\" id=\"access-banner\"><h2>API access is off</h2>\
             <p>{org} is out of usage credits, so API calls are refused. Add credits and access comes back \
             within a second. With auto-reload, credits are added automatically when the balance reaches \
             a minimum you choose.</p>{fix}</section>",
            org = esc(&ctx.org.name)
        ),
        "suspended" => "<section class=\"banner off\" role=\"alert\" id=\"access-banner\"><h2>API access is suspended</h2>\
             <p>The provider has suspended this org. Contact support.</p></section>"
            .to_owned(),
        "low" => format!(
            "<section class=\"banner low\" role=\"status\" id=\"access-banner\"><h2>Your balance is low</h2>\
             <p>API access is on, but credits are running low.</p>{fix}</section>"
        ),
        _ => "<section class=\"banner ok\" role=\"status\" id=\"access-banner\"><h2>API access is on</h2></section>"
            .to_owned(),
    }
}

/// Days of runway at the burn rate, `None` when nothing was spent.
fn runway_days(available: Amount, spent: Amount, days: i64) -> Option<i64> {
    if !spent.is_positive() || days <= 0 {
        return None;
    }
    // available / (spent / days) = available * days / spent, in i128.
    let runway =
        i128::from(available.micros().max(0)) * i128::from(days) / i128::from(spent.micros());
    Some(i64::try_from(runway).unwrap_or(i64::MAX))
}

async fn overview(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(org_id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<Fields>,
) -> Response {
    let ctx = match enter(&state, &headers, &org_id, Action::ViewBalance, None).await {
        Ok(ctx) => ctx,
        Err(response) => return response,
    };
    let balance = match routes::credits::get_balance(
        State(state.clone()),
        ctx.caller(),
        Path(org_id.clone()),
    )
    .await
    {
        Ok(Json(balance)) => balance,
        Err(error) => return internal(&state, error.message),
    };
    let now = state.now();
    let since = Timestamp::from_unix_ms(now.unix_ms() - BURN_DAYS * DAY_MS);
    let spent = match state.store().spend(&org_id, since, None).await {
        Ok(spend) => spend.charged,
        Err(error) => return internal(&state, error),
    };
    let available = parse_amount(&balance.available).unwrap_or(Amount::ZERO);
    let runway = match runway_days(available, spent, BURN_DAYS) {
        None => "No usage in the last 7 days".to_owned(),
        Some(0) => "Less than a day".to_owned(),
        Some(1) => "About 1 day".to_owned(),
        Some(days) => format!("About {days} days"),
    };
    let note = match query.get("added").and_then(|a| parse_amount(a)) {
        Some(amount) => message(
            "notice",
            &format!("{} of credits added.", ctx.money(amount)),
        ),
        None => String::new(),
    };
    let currency = &state.config().currency;
    let money = |text: &str| format_money(parse_amount(text).unwrap_or(Amount::ZERO), currency);
    let body = format!(
        "{note}{banner}<section class=\"card figures\" aria-label=\"Balance\">\
         <div class=\"figure\"><div class=\"label\">Available</div><div class=\"value\" id=\"available\">{available}</div></div>\
         <div class=\"figure\"><div class=\"label\">Reserved by calls in flight</div><div class=\"value\" id=\"reserved\">{reserved}</div></div>\
         <div class=\"figure\"><div class=\"label\">Runway at the last 7 days' rate</div><div class=\"value\" id=\"runway\">{runway}</div></div>\
         <div class=\"figure\"><div class=\"label\">Spent in the last 7 days</div><div class=\"value\">{spent}</div></div>\
         </section>",
        banner = banner(&ctx, &balance.access_state),
        available = money(&balance.available),
        reserved = money(&balance.reserved),
        spent = ctx.money(spent),
    );
    ctx.page("", "Overview", &body)
}

// ----- add credits --------------------------------------------------------------------------

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

async fn credits_page(
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

async fn credits_add(
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
        "saved_card" => "saved_card",
        _ => "checkout",
    };
    // The payment page comes back here with the payment's id (derived from the key the same
    // way the top-up handler derives it).
    let payment_id = crate::server::ids::derived(
        "pay",
        &[&routes::idempotency::scope(&ctx.caller()), "top_up", &key],
    );
    let return_url = format!(
        "{}{}/credits?payment={payment_id}",
        state.public_url(),
        ctx.base()
    );
    let body = routes::payments::CreateTopUp {
        amount: Money(amount),
        method: Some(method.to_owned()),
        return_url: Some(return_url),
    };
    let request = routes::idempotency::Idempotent::direct(
        body,
        key,
        &format!("billing-page top-up {amount} {method}"),
    );
    let response = routes::payments::create_top_up(
        State(state.clone()),
        ctx.caller(),
        Path(org_id.clone()),
        request,
    )
    .await;
    let payment = match response {
        Ok(response) => match axum::body::to_bytes(response.into_body(), 1 << 20).await {
            Ok(bytes) => serde_json::from_slice::<serde_json::Value>(&bytes).unwrap_or_default(),
            Err(error) => return internal(&state, error),
        },
        Err(error) => {
            let body = credits_form(&ctx, &error.message, card.as_deref());
            return ctx.page("/credits", "Add credits", &body);
        }
    };
    let id = payment["id"].as_str().unwrap_or("");
    match (payment["state"].as_str(), payment["action_url"].as_str()) {
        (Some("requires_action" | "created" | "charging"), Some(url)) if !url.is_empty() => {
            redirect(url)
        }
        (Some("failed"), _) => {
            let reason = payment["failure_message"]
                .as_str()
                .unwrap_or("The payment did not go through.");
            let body = credits_form(&ctx, reason, card.as_deref());
            ctx.page("/credits", "Add credits", &body)
        }
        _ => redirect(&format!("{}/credits?payment={}", ctx.base(), esc(id))),
    }
}

// ----- auto-reload --------------------------------------------------------------------------

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
    let current = match routes::payments::get_auto_reload(
        State(state.clone()),
        ctx.caller(),
        Path(ctx.org.id.clone()),
    )
    .await
    {
        Ok(Json(view)) => Some(view),
        Err(error) if error.status == StatusCode::NOT_FOUND => None,
        Err(error) => return internal(state, error.message),
    };
    let card = saved_card(state, &ctx.org.id).await;
    let can_manage = allows(ctx.role(), Action::ManageAutoReload);
    let status = match &current {
        Some(view) if view.enabled => format!(
            "<p id=\"reload-status\"><strong>Auto-reload is on.</strong> When the balance falls below {}, {}.</p>",
            esc(&ctx.money(parse_amount(&view.threshold).unwrap_or(Amount::ZERO))),
            match (&view.amount, &view.target) {
                (Some(amount), _) => format!("{} is added", esc(&ctx.money(parse_amount(amount).unwrap_or(Amount::ZERO)))),
                (_, Some(target)) => format!("the balance is reloaded to {}", esc(&ctx.money(parse_amount(target).unwrap_or(Amount::ZERO)))),
                _ => "credits are added".to_owned(),
            }
        ),
        Some(view) => format!(
            "<p id=\"reload-status\"><strong>Auto-reload is off.</strong>{}</p>",
            match view.disabled_reason.as_deref() {
                Some("too_many_failures") => " It turned itself off after repeated failed charges: update the card and turn it on again.",
                _ => "",
            }
        ),
        None => "<p id=\"reload-status\"><strong>Auto-reload is off.</strong></p>".to_owned(),
    };
    let consent = current.as_ref().map(|view| {
        format!(
            "<p class=\"muted\" id=\"consent-record\">Consent given by {} on {} (text version {}).</p>",
            esc(&view.consent.accepted_by),
            esc(&utc_date(view.consent.accepted_at)),
            esc(&view.consent.text_version)
        )
    });
    let value = |text: Option<&String>| {
        text.and_then(|t| parse_amount(t))
            .map(|a| a.to_string())
            .unwrap_or_default()
    };
    let (threshold, amount, target, monthly) = match &current {
        Some(view) => (
            value(Some(&view.threshold)),
            value(view.amount.as_ref()),
            value(view.target.as_ref()),
            value(Some(&view.monthly_limit)),
        ),
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
            checked = if current.as_ref().is_none_or(|v| v.enabled) { " checked" } else { "" },
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
        crate::server::payments::Provider::Sandbox => {
            let test_cards: String = crate::server::payments::sandbox::TEST_CARDS
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
        crate::server::payments::Provider::Stripe(_) => format!(
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

async fn reload_page(
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

async fn reload_save(
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
    let money = |name: &str, label: &str| -> Result<Option<Money>, String> {
        match field(&fields, name).trim() {
            "" => Ok(None),
            text => parse_amount(text)
                .map(|a| Some(Money(a)))
                .ok_or_else(|| format!("{label} must be an amount, like 25.00.")),
        }
    };
    let parsed = (|| -> Result<routes::payments::PutAutoReload, String> {
        let threshold = money("threshold", "The threshold")?.ok_or("Enter the threshold.")?;
        let monthly_limit =
            money("monthly_limit", "The monthly limit")?.ok_or("Enter the monthly limit.")?;
        let (amount, target) = if field(&fields, "mode") == "target" {
            (
                None,
                Some(money("target", "The target balance")?.ok_or("Enter the target balance.")?),
            )
        } else {
            (
                Some(money("amount", "The amount")?.ok_or("Enter the amount.")?),
                None,
            )
        };
        let consent = match field(&fields, "consent") {
            "" => None,
            version => Some(routes::payments::ConsentInput {
                accepted_by: ctx.member().email.clone(),
                text_version: version.to_owned(),
            }),
        };
        Ok(routes::payments::PutAutoReload {
            enabled,
            threshold,
            amount,
            target,
            monthly_limit,
            payment_method: Some(field(&fields, "payment_method").to_owned())
                .filter(|pm| !pm.is_empty()),
            consent,
        })
    })();
    let body = match parsed {
        Ok(body) => body,
        Err(error) => return reload_view(&ctx, &error, false).await,
    };
    match routes::payments::put_auto_reload(
        State(state.clone()),
        ctx.caller(),
        Path(org_id.clone()),
        Body(body),
    )
    .await
    {
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

// ----- usage --------------------------------------------------------------------------------

fn utc_date(unix_s: i64) -> String {
    chart::iso_date(unix_s.div_euclid(86_400))
}

async fn usage_rows(ctx: &Ctx, days: i64) -> Result<(Vec<chart::UsageRow>, i64, i64), Response> {
    let now = ctx.state.now().unix_ms();
    let last_day = now.div_euclid(DAY_MS);
    let first_day = last_day - (days - 1);
    let groups = ctx
        .state
        .store()
        .usage_by_day(
            &ctx.org.id,
            Timestamp::from_unix_ms(first_day * DAY_MS),
            Timestamp::from_unix_ms((last_day + 1) * DAY_MS),
            USAGE_GROUPS_MAX,
        )
        .await
        .map_err(|error| internal(&ctx.state, error))?;
    let rows = groups
        .into_iter()
        .map(|group| {
            let terms = HoldTerms::decode(&group.reference);
            chart::UsageRow {
                day: group.day,
                model: terms.model.unwrap_or_else(|| "(other)".to_owned()),
                key_id: terms.key_id,
                amount: group.amount,
                calls: group.calls,
            }
        })
        .collect();
    Ok((rows, first_day, last_day))
}

fn usage_days(query: &Fields) -> i64 {
    query
        .get("days")
        .and_then(|d| d.parse::<i64>().ok())
        .filter(|d| (1..=USAGE_DAYS_MAX).contains(d))
        .unwrap_or(USAGE_DAYS_DEFAULT)
}

fn usage_key(query: &Fields) -> Option<String> {
    query
        .get("key")
        .filter(|k| crate::server::ids::is_valid("key", k))
        .cloned()
}

async fn usage_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(org_id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<Fields>,
) -> Response {
    let ctx = match enter(&state, &headers, &org_id, Action::ViewUsage, None).await {
        Ok(ctx) => ctx,
        Err(response) => return response,
    };
    let days = usage_days(&query);
    let key = usage_key(&query);
    let (rows, first_day, last_day) = match usage_rows(&ctx, days).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let usage = chart::daily_by_model(&rows, first_day, last_day, key.as_deref());
    let currency = &state.config().currency;
    let svg = chart::svg(&usage, currency);
    let keys = state.store().keys(&org_id).await.unwrap_or_default();
    let key_options: String = keys
        .iter()
        .map(|k| {
            let selected = if key.as_deref() == Some(k.id.as_str()) {
                " selected"
            } else {
                ""
            };
            let name = if k.name.is_empty() {
                &k.prefix
            } else {
                &k.name
            };
            format!(
                "<option value=\"{}\"{selected}>{} ({}…)</option>",
                esc(&k.id),
                esc(name),
                esc(&k.prefix)
            )
        })
        .collect();
    let day_options: String = [7, 30, 90]
        .iter()
        .map(|d| {
            let selected = if *d == days { " selected" } else { "" };
            format!("<option value=\"{d}\"{selected}>Last {d} days</option>")
        })
        .collect();
    let table: String = usage
        .models
        .iter()
        .zip(&usage.model_totals)
        .map(|(model, total)| {
            format!(
                "<tr><td>{}</td><td class=\"num\">{}</td></tr>",
                esc(model),
                esc(&ctx.money(*total))
            )
        })
        .collect();
    let csv_query = match &key {
        Some(key) => format!("?days={days}&key={}", esc(key)),
        None => format!("?days={days}"),
    };
    let body = format!(
        "<form method=\"get\" class=\"card\" aria-label=\"Filter\"><label for=\"days\">Period</label>\
         <select id=\"days\" name=\"days\">{day_options}</select>\
         <label for=\"key\">API key</label><select id=\"key\" name=\"key\"><option value=\"\">All keys</option>{key_options}</select>\
         <button type=\"submit\">Show</button></form>\
         <section class=\"card chart\" id=\"usage-chart\">{svg}</section>\
         <section class=\"card\"><h2>By model</h2><div class=\"table-wrap\"><table id=\"usage-table\"><thead><tr><th scope=\"col\">Model</th><th scope=\"col\" class=\"num\">Spend</th></tr></thead>\
         <tbody>{table}</tbody><tfoot><tr><th scope=\"row\">Total ({calls} calls)</th><td class=\"num\" id=\"usage-total\">{total}</td></tr></tfoot></table></div>\
         <p><a href=\"{base}/usage.csv{csv_query}\" download>Download CSV</a></p></section>",
        total = esc(&ctx.money(usage.total)),
        calls = usage.calls,
        base = ctx.base(),
    );
    ctx.page("/usage", "Usage", &body)
}

async fn usage_csv(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(org_id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<Fields>,
) -> Response {
    let ctx = match enter(&state, &headers, &org_id, Action::ViewUsage, None).await {
        Ok(ctx) => ctx,
        Err(response) => return response,
    };
    let days = usage_days(&query);
    let key = usage_key(&query);
    let (rows, _, _) = match usage_rows(&ctx, days).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let rows: Vec<chart::UsageRow> = rows
        .into_iter()
        .filter(|row| key.is_none() || row.key_id == key)
        .collect();
    let csv = chart::csv(&rows, &state.config().currency);
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"usage-{org_id}.csv\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        csv,
    )
        .into_response()
}

// ----- history and receipts -----------------------------------------------------------------

fn kind_label(kind: &str) -> &'static str {
    match kind {
        "usage" => "API usage",
        "grant" => "Credits granted",
        "purchase" => "Credits purchased",
        "auto_reload" => "Auto-reload",
        "adjustment" => "Adjustment",
        "refund" => "Refund",
        "expiry" => "Credits expired",
        _ => "Other",
    }
}

fn receipted(kind: &str) -> bool {
    matches!(kind, "grant" | "purchase" | "auto_reload")
}

async fn history_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(org_id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<Fields>,
) -> Response {
    let ctx = match enter(&state, &headers, &org_id, Action::ViewHistory, None).await {
        Ok(ctx) => ctx,
        Err(response) => return response,
    };
    let after = query
        .get("after")
        .filter(|id| crate::server::ids::is_valid("txn", id) || id.len() <= 128)
        .cloned();
    let list = routes::credits::list_transfers(
        State(state.clone()),
        ctx.caller(),
        Path(org_id.clone()),
        routes::Query(routes::ListQuery {
            limit: Some(50),
            starting_after: after,
        }),
    )
    .await;
    let list = match list {
        Ok(Json(list)) => list,
        Err(error) => return ctx.page("/history", "History", &message("error", &error.message)),
    };
    let currency = &state.config().currency;
    let rows: String = list
        .data
        .iter()
        .map(|t| {
            let amount = parse_amount(&t.amount).unwrap_or(Amount::ZERO);
            let sign = if t.direction == "credit" { "+" } else { "−" };
            let receipt = if receipted(&t.kind) && t.direction == "credit" {
                format!(
                    "<a href=\"{}/receipts/{}\">Receipt</a>",
                    ctx.base(),
                    esc(&t.id)
                )
            } else {
                String::new()
            };
            format!(
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{sign}{}</td><td class=\"num\">{}</td><td>{receipt}</td></tr>",
                esc(&utc_date(t.created_at)),
                kind_label(&t.kind),
                esc(&format_money(amount, currency)),
                esc(&format_money(parse_amount(&t.balance_after).unwrap_or(Amount::ZERO), currency)),
            )
        })
        .collect();
    let more = match (list.has_more, list.data.last()) {
        (true, Some(last)) => format!(
            "<p><a href=\"{}/history?after={}\">Older</a></p>",
            ctx.base(),
            esc(&last.id)
        ),
        _ => String::new(),
    };
    let body = if rows.is_empty() {
        "<p class=\"muted\">Nothing yet.</p>".to_owned()
    } else {
        format!(
            "<div class=\"table-wrap\"><table id=\"history\"><thead><tr><th scope=\"col\">Date (UTC)</th><th scope=\"col\">What</th>\
             <th scope=\"col\" class=\"num\">Amount</th><th scope=\"col\" class=\"num\">Balance after</th><th scope=\"col\"><span class=\"sr-only\">Receipt</span></th></tr></thead>\
             <tbody>{rows}</tbody></table></div>{more}"
        )
    };
    ctx.page("/history", "History", &body)
}

async fn receipt_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((org_id, transfer_id)): Path<(String, String)>,
) -> Response {
    let ctx = match enter(&state, &headers, &org_id, Action::ViewHistory, None).await {
        Ok(ctx) => ctx,
        Err(response) => return response,
    };
    let transfer = match state.store().transfer(&transfer_id).await {
        Ok(Some(t)) if t.credit_account_id.as_str() == org_id && receipted(t.kind.as_str()) => t,
        Ok(_) => {
            return problem(
                &state,
                StatusCode::NOT_FOUND,
                "No such receipt",
                "This receipt does not exist.",
            )
        }
        Err(error) => return internal(&state, error),
    };
    let body = format!(
        "<section class=\"card\" id=\"receipt\"><dl>\
         <dt>Receipt number</dt><dd>{id}</dd><dt>Date (UTC)</dt><dd>{date}</dd>\
         <dt>Org</dt><dd>{org}</dd><dt>What</dt><dd>{what}</dd>\
         <dt>Credits added</dt><dd><strong>{amount}</strong></dd></dl>\
         <p class=\"muted\">Issued by {product}. Print this page to keep a copy.</p></section>",
        id = esc(transfer.id.as_str()),
        date = esc(&utc_date(transfer.created_at.unix_ms().div_euclid(1000))),
        org = esc(&ctx.org.name),
        what = kind_label(transfer.kind.as_str()),
        amount = esc(&ctx.money(transfer.amount)),
        product = esc(&state.config().product_name),
    );
    ctx.page("/history", "Receipt", &body)
}

// ----- API keys -----------------------------------------------------------------------------

async fn keys_view(ctx: &Ctx, created: Option<(&str, &str)>, error: &str) -> Response {
    let state = &ctx.state;
    let keys =
        match routes::keys::list_keys(State(state.clone()), ctx.caller(), Path(ctx.org.id.clone()))
            .await
        {
            Ok(Json(keys)) => keys.data,
            Err(error) => return ctx.page("/keys", "API keys", &message("error", &error.message)),
        };
    let can_manage = allows(ctx.role(), Action::ManageKeys);
    let rows: String = keys
        .iter()
        .map(|k| {
            let action = match (k.revoked_at, can_manage) {
                (Some(_), _) => "<span class=\"muted\">Revoked</span>".to_owned(),
                (None, true) => format!(
                    "<form method=\"post\" action=\"{}/keys/{}/revoke\" class=\"inline\">{}\
                     <button type=\"submit\" class=\"danger\" aria-label=\"Revoke {}\">Revoke</button></form>",
                    ctx.base(),
                    esc(&k.id),
                    ctx.csrf(),
                    esc(if k.name.is_empty() { &k.prefix } else { &k.name })
                ),
                (None, false) => String::new(),
            };
            format!(
                "<tr><td>{}</td><td><code>{}…</code></td><td>{}</td><td>{action}</td></tr>",
                esc(&k.name),
                esc(&k.prefix),
                esc(&utc_date(k.created_at)),
            )
        })
        .collect();
    let created = created
        .map(|(name, secret)| {
            format!(
                "<section class=\"notice\" role=\"status\"><p>Key <strong>{}</strong> created. Copy its secret now: \
                 it is not shown again.</p><p class=\"secret\" id=\"new-secret\">{}</p></section>",
                esc(name),
                esc(secret)
            )
        })
        .unwrap_or_default();
    let form = if can_manage {
        format!(
            "<form method=\"post\" class=\"card\">{}<label for=\"name\">New key's name</label>\
             <input type=\"text\" id=\"name\" name=\"name\" maxlength=\"100\" placeholder=\"e.g. production\">\
             <button type=\"submit\" id=\"create-key\">Create key</button></form>",
            ctx.csrf()
        )
    } else {
        String::new()
    };
    let error = if error.is_empty() {
        String::new()
    } else {
        message("error", error)
    };
    let body = format!(
        "{error}{created}{form}<div class=\"table-wrap\"><table id=\"keys\"><thead><tr><th scope=\"col\">Name</th>\
         <th scope=\"col\">Key</th><th scope=\"col\">Created (UTC)</th><th scope=\"col\"><span class=\"sr-only\">Actions</span></th></tr></thead>\
         <tbody>{rows}</tbody></table></div>"
    );
    ctx.page("/keys", "API keys", &body)
}

async fn keys_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(org_id): Path<String>,
) -> Response {
    let ctx = match enter(&state, &headers, &org_id, Action::ViewKeys, None).await {
        Ok(ctx) => ctx,
        Err(response) => return response,
    };
    keys_view(&ctx, None, "").await
}

async fn keys_create(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(org_id): Path<String>,
    Form(fields): Form<Fields>,
) -> Response {
    let ctx = match enter(&state, &headers, &org_id, Action::ManageKeys, Some(&fields)).await {
        Ok(ctx) => ctx,
        Err(response) => return response,
    };
    let body = routes::keys::CreateKey {
        name: field(&fields, "name").trim().to_owned(),
        spend_limit_monthly: None,
    };
    match routes::keys::create_key(
        State(state.clone()),
        ctx.caller(),
        Path(org_id.clone()),
        Body(body),
    )
    .await
    {
        Ok((_, Json(created))) => {
            let name = if created.key.name.is_empty() {
                created.key.prefix.clone()
            } else {
                created.key.name.clone()
            };
            keys_view(&ctx, Some((&name, &created.secret)), "").await
        }
        Err(error) => keys_view(&ctx, None, &error.message).await,
    }
}

async fn keys_revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((org_id, key_id)): Path<(String, String)>,
    Form(fields): Form<Fields>,
) -> Response {
    let ctx = match enter(&state, &headers, &org_id, Action::ManageKeys, Some(&fields)).await {
        Ok(ctx) => ctx,
        Err(response) => return response,
    };
    match routes::keys::revoke_key(State(state.clone()), ctx.caller(), Path(key_id)).await {
        Ok(_) => redirect(&format!("{}/keys", ctx.base())),
        Err(error) => keys_view(&ctx, None, &error.message).await,
    }
}

// ----- settings -----------------------------------------------------------------------------

fn settings_view(ctx: &Ctx, error: &str, saved: bool, emails: &str, thresholds: &str) -> Response {
    let note = match (error.is_empty(), saved) {
        (false, _) => message("error", error),
        (true, true) => message("notice", "Settings saved."),
        _ => String::new(),
    };
    let body = format!(
        "{note}<form method=\"post\" class=\"card\">{csrf}\
         <label for=\"billing_emails\">Billing contacts <span class=\"hint\">(one address per line; they get every billing email)</span></label>\
         <textarea id=\"billing_emails\" name=\"billing_emails\" rows=\"4\">{emails}</textarea>\
         <label for=\"low_thresholds\">Low-balance alerts <span class=\"hint\">(amounts, comma-separated: an email when the balance falls below each)</span></label>\
         <input type=\"text\" id=\"low_thresholds\" name=\"low_thresholds\" value=\"{thresholds}\">\
         <button type=\"submit\" id=\"save-settings\">Save settings</button></form>\
         <p class=\"muted\">Owners and admins also get the billing emails.</p>",
        csrf = ctx.csrf(),
        emails = esc(emails),
        thresholds = esc(thresholds),
    );
    ctx.page("/settings", "Settings", &body)
}

async fn settings_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(org_id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<Fields>,
) -> Response {
    let ctx = match enter(&state, &headers, &org_id, Action::ManageSettings, None).await {
        Ok(ctx) => ctx,
        Err(response) => return response,
    };
    let emails = ctx.org.billing_emails.join("\n");
    let thresholds: Vec<String> = ctx
        .org
        .low_thresholds
        .iter()
        .map(Amount::to_string)
        .collect();
    settings_view(
        &ctx,
        "",
        query.contains_key("saved"),
        &emails,
        &thresholds.join(", "),
    )
}

async fn settings_save(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(org_id): Path<String>,
    Form(fields): Form<Fields>,
) -> Response {
    let ctx = match enter(
        &state,
        &headers,
        &org_id,
        Action::ManageSettings,
        Some(&fields),
    )
    .await
    {
        Ok(ctx) => ctx,
        Err(response) => return response,
    };
    let emails_text = field(&fields, "billing_emails");
    let thresholds_text = field(&fields, "low_thresholds");
    let emails: Vec<String> = emails_text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    let mut thresholds = Vec::new();
    for part in thresholds_text
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        match parse_amount(part) {
            Some(amount) => thresholds.push(Money(amount)),
            None => {
                return settings_view(
                    &ctx,
                    &format!("{part:?} is not an amount."),
                    false,
                    emails_text,
                    thresholds_text,
                )
            }
        }
    }
    let patch: routes::orgs::UpdateOrg = match serde_json::from_value(serde_json::json!({
        "billing_emails": emails,
        "low_thresholds": thresholds.iter().map(|m| m.0.to_string()).collect::<Vec<_>>(),
    })) {
        Ok(patch) => patch,
        Err(error) => return internal(&state, error),
    };
    match routes::orgs::update_org(
        State(state.clone()),
        ctx.caller(),
        Path(org_id.clone()),
        Body(patch),
    )
    .await
    {
        Ok(_) => redirect(&format!("{}/settings?saved=1", ctx.base())),
        Err(error) => settings_view(&ctx, &error.message, false, emails_text, thresholds_text),
    }
}

// ----- members ------------------------------------------------------------------------------

fn role_select(name: &str, id: &str, selected: Role, allowed: &[Role]) -> String {
    let options: String = allowed
        .iter()
        .map(|role| {
            let mark = if *role == selected { " selected" } else { "" };
            format!(
                "<option value=\"{}\"{mark}>{}</option>",
                role.as_str(),
                role.label()
            )
        })
        .collect();
    format!("<select name=\"{name}\" id=\"{id}\">{options}</select>")
}

async fn members_view(ctx: &Ctx, note: &str) -> Response {
    let members = match ctx.state.store().members(&ctx.org.id).await {
        Ok(members) => members,
        Err(error) => return internal(&ctx.state, error),
    };
    let can_manage = allows(ctx.role(), Action::ManageMembers);
    // Only owners grant or change the owner role.
    let grantable: Vec<Role> = Role::ALL
        .into_iter()
        .filter(|role| *role != Role::Owner || ctx.role() == Role::Owner)
        .collect();
    let rows: String = members
        .iter()
        .map(|m| {
            let editable = can_manage && (m.role != Role::Owner || ctx.role() == Role::Owner);
            let role = if editable {
                format!(
                    "<form method=\"post\" action=\"{base}/members/{id}\" class=\"inline\">{csrf}\
                     <label class=\"sr-only\" for=\"role-{id}\">Role of {email}</label>{select}\
                     <button type=\"submit\" name=\"op\" value=\"role\" class=\"secondary\">Change</button>\
                     <button type=\"submit\" name=\"op\" value=\"remove\" class=\"danger\" aria-label=\"Remove {email}\">Remove</button></form>",
                    base = ctx.base(),
                    id = esc(&m.id),
                    csrf = ctx.csrf(),
                    email = esc(&m.email),
                    select = role_select("role", &format!("role-{}", esc(&m.id)), m.role, &grantable),
                )
            } else {
                m.role.label().to_owned()
            };
            format!(
                "<tr><td>{}</td><td>{}</td><td>{role}</td></tr>",
                esc(&m.email),
                esc(&m.name)
            )
        })
        .collect();
    let invite = if can_manage {
        format!(
            "<form method=\"post\" class=\"card\">{csrf}<h2>Invite a member</h2>\
             <label for=\"invite-email\">Email address</label><input type=\"email\" id=\"invite-email\" name=\"email\" required>\
             <label for=\"invite-name\">Name <span class=\"hint\">(optional)</span></label><input type=\"text\" id=\"invite-name\" name=\"name\" maxlength=\"100\">\
             <label for=\"invite-role\">Role</label>{select}\
             <p class=\"hint\">Developers see usage and API keys, not payments. Billing members see payments, not keys.</p>\
             <button type=\"submit\" id=\"invite\">Send invitation</button></form>",
            csrf = ctx.csrf(),
            select = role_select("role", "invite-role", Role::Developer, &grantable),
        )
    } else {
        String::new()
    };
    let body = format!(
        "{note}{invite}<div class=\"table-wrap\"><table id=\"members\"><thead><tr><th scope=\"col\">Email</th>\
         <th scope=\"col\">Name</th><th scope=\"col\">Role</th></tr></thead><tbody>{rows}</tbody></table></div>"
    );
    ctx.page("/members", "Members", &body)
}

async fn members_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(org_id): Path<String>,
) -> Response {
    let ctx = match enter(&state, &headers, &org_id, Action::ViewMembers, None).await {
        Ok(ctx) => ctx,
        Err(response) => return response,
    };
    members_view(&ctx, "").await
}

async fn members_invite(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(org_id): Path<String>,
    Form(fields): Form<Fields>,
) -> Response {
    let ctx = match enter(
        &state,
        &headers,
        &org_id,
        Action::ManageMembers,
        Some(&fields),
    )
    .await
    {
        Ok(ctx) => ctx,
        Err(response) => return response,
    };
    let body = members::CreateMember {
        email: field(&fields, "email").to_owned(),
        name: field(&fields, "name").trim().to_owned(),
        role: field(&fields, "role").to_owned(),
        invite: Some(true),
    };
    let note = match members::create_member(
        State(state.clone()),
        ctx.caller(),
        Path(org_id.clone()),
        Body(body),
    )
    .await
    {
        Ok((_, Json(member))) => {
            message("notice", &format!("Invitation sent to {}.", member.email))
        }
        Err(error) => message("error", &error.message),
    };
    members_view(&ctx, &note).await
}

async fn members_change(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((org_id, member_id)): Path<(String, String)>,
    Form(fields): Form<Fields>,
) -> Response {
    let ctx = match enter(
        &state,
        &headers,
        &org_id,
        Action::ManageMembers,
        Some(&fields),
    )
    .await
    {
        Ok(ctx) => ctx,
        Err(response) => return response,
    };
    let result = if field(&fields, "op") == "remove" {
        members::remove_member(
            State(state.clone()),
            ctx.caller(),
            Path((org_id.clone(), member_id)),
        )
        .await
        .map(|Json(m)| format!("{} was removed.", m.email))
    } else {
        members::update_member(
            State(state.clone()),
            ctx.caller(),
            Path((org_id.clone(), member_id)),
            Body(members::UpdateMember {
                role: Some(field(&fields, "role").to_owned()),
                name: None,
            }),
        )
        .await
        .map(|Json(m)| format!("{} is now {}.", m.email, m.role))
    };
    let note = match result {
        Ok(text) => message("notice", &text),
        Err(error) => message("error", &error.message),
    };
    members_view(&ctx, &note).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runway_is_exact() {
        let m = |units: i64| Amount::from_micros(units * 1_000_000);
        assert_eq!(runway_days(m(70), m(7), 7), Some(70));
        assert_eq!(runway_days(m(5), m(7), 7), Some(5));
        assert_eq!(runway_days(m(0), m(7), 7), Some(0));
        assert_eq!(runway_days(m(10), Amount::ZERO, 7), None);
        assert_eq!(runway_days(Amount::from_micros(-5), m(7), 7), Some(0));
    }

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
