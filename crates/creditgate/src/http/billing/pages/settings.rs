//! Settings: billing contacts and low-balance alert thresholds.

use axum::extract::{Form, State};
use axum::http::HeaderMap;
use axum::response::Response;
use creditgate_domain::member::Action;
use creditgate_domain::Amount;

use creditgate_store::api::OrgPatch;

use super::{enter, field, parse_amount, redirect, Ctx, Fields};
use crate::app;
use crate::http::billing::html::message;
use crate::http::extract::Path;
use crate::state::AppState;
use maud::html;

fn settings_view(ctx: &Ctx, error: &str, saved: bool, emails: &str, thresholds: &str) -> Response {
    let note = match (error.is_empty(), saved) {
        (false, _) => Some(message("error", error)),
        (true, true) => Some(message("notice", "Settings saved.")),
        _ => None,
    };
    let body = html! {
        @if let Some(note) = note { (note) }
        form.card method="post" {
            (ctx.csrf())
            label for="billing_emails" {
                "Billing contacts "
                span.hint { "(one address per line; they get every billing email)" }
            }
            textarea #billing_emails name="billing_emails" rows="4" { (emails) }
            label for="low_thresholds" {
                "Low-balance alerts "
                span.hint {
                    "(amounts, comma-separated: an email when the balance falls below each)"
                }
            }
            input type="text" #low_thresholds name="low_thresholds" value=(thresholds);
            button type="submit" #save-settings { "Save settings" }
        }
        p.muted { "Owners and admins also get the billing emails." }
    };
    ctx.page("/settings", "Settings", body)
}

pub(super) async fn settings_page(
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

pub(super) async fn settings_save(
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
            Some(amount) => thresholds.push(amount),
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
    let patch = OrgPatch {
        billing_emails: Some(emails),
        low_thresholds: Some(thresholds),
        ..OrgPatch::default()
    };
    match app::orgs::update(&state, &ctx.caller(), &org_id, patch).await {
        Ok(_) => redirect(&format!("{}/settings?saved=1", ctx.base())),
        Err(error) => settings_view(&ctx, &error.message, false, emails_text, thresholds_text),
    }
}
