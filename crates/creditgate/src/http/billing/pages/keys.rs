//! API keys: the list, creating one (its secret shown once) and revoking one.

use axum::extract::{Form, State};
use axum::http::HeaderMap;
use axum::response::Response;
use creditgate_domain::member::Action;

use super::{enter, field, redirect, utc_date, Ctx, Fields};
use crate::app::keys::{self, NewKey};
use crate::http::billing::html::message;
use crate::http::extract::Path;
use crate::state::AppState;
use creditgate_store::api::ApiKey;
use maud::{html, Markup};

async fn keys_view(ctx: &Ctx, created: Option<(&str, &str)>, error: &str) -> Response {
    let state = &ctx.state;
    let keys = match keys::list(state, &ctx.caller(), &ctx.org.id).await {
        Ok(keys) => keys,
        Err(error) => return ctx.page("/keys", "API keys", message("error", &error.message)),
    };
    let can_manage = ctx.can(Action::ManageKeys);
    let body = html! {
        @if !error.is_empty() { (message("error", error)) }
        @if let Some((name, secret)) = created {
            section.notice role="status" {
                p {
                    "Key " strong { (name) } " created. Copy its secret now: it is not shown again."
                }
                p.secret #new-secret { (secret) }
            }
        }
        @if can_manage {
            form.card method="post" {
                (ctx.csrf())
                label for="name" { "New key's name" }
                input type="text" #name name="name" maxlength="100" placeholder="e.g. production";
                button type="submit" #create-key { "Create key" }
            }
        }
        p #org-rate-limits {
            "Rate limits of the organization, all keys together: "
            strong { (ctx.org.rate_limits.describe()) } "."
        }
        div.table-wrap {
            table #keys {
                thead {
                    tr {
                        th scope="col" { "Name" }
                        th scope="col" { "Key" }
                        th scope="col" { "Rate limits" }
                        th scope="col" { "Created (UTC)" }
                        th scope="col" { span.sr-only { "Actions" } }
                    }
                }
                tbody {
                    @for k in &keys {
                        tr {
                            td { (k.name) }
                            td { code { (k.prefix) "…" } }
                            td { (k.rate_limits.describe()) }
                            td { (utc_date(k.created_at.unix_ms().div_euclid(1000))) }
                            td {
                                @if k.revoked_at.is_some() {
                                    span.muted { "Revoked" }
                                } @else if can_manage {
                                    (revoke_form(ctx, k))
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    ctx.page("/keys", "API keys", body)
}

/// The button that revokes key `k`.
fn revoke_form(ctx: &Ctx, k: &ApiKey) -> Markup {
    let name = if k.name.is_empty() {
        &k.prefix
    } else {
        &k.name
    };
    html! {
        form.inline method="post" action={ (ctx.base()) "/keys/" (k.id) "/revoke" } {
            (ctx.csrf())
            button.danger type="submit" aria-label={ "Revoke " (name) } { "Revoke" }
        }
    }
}

pub(super) async fn keys_page(
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

pub(super) async fn keys_create(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(org_id): Path<String>,
    Form(fields): Form<Fields>,
) -> Response {
    let ctx = match enter(&state, &headers, &org_id, Action::ManageKeys, Some(&fields)).await {
        Ok(ctx) => ctx,
        Err(response) => return response,
    };
    let new = NewKey {
        name: field(&fields, "name").trim().to_owned(),
        spend_limit_monthly: None,
        rate_limits: Default::default(),
    };
    match keys::create(&state, &ctx.caller(), &org_id, new).await {
        Ok(created) => {
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

pub(super) async fn keys_revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((org_id, key_id)): Path<(String, String)>,
    Form(fields): Form<Fields>,
) -> Response {
    let ctx = match enter(&state, &headers, &org_id, Action::ManageKeys, Some(&fields)).await {
        Ok(ctx) => ctx,
        Err(response) => return response,
    };
    match keys::revoke(&state, &ctx.caller(), &key_id).await {
        Ok(_) => redirect(&format!("{}/keys", ctx.base())),
        Err(error) => keys_view(&ctx, None, &error.message).await,
    }
}
