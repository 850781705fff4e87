//! API keys: the list, creating one (its secret shown once) and revoking one.

use axum::extract::{Form, State};
use axum::http::HeaderMap;
use axum::response::Response;
use creditgate_domain::member::Action;

use super::{enter, field, redirect, utc_date, Ctx, Fields};
use crate::app::keys::{self, NewKey};
use crate::http::api::Path;
use crate::http::billing::html::{esc, message};
use crate::node::AppState;

async fn keys_view(ctx: &Ctx, created: Option<(&str, &str)>, error: &str) -> Response {
    let state = &ctx.state;
    let keys = match keys::list(state, &ctx.caller(), &ctx.org.id).await {
        Ok(keys) => keys,
        Err(error) => return ctx.page("/keys", "API keys", &message("error", &error.message)),
    };
    let can_manage = ctx.can(Action::ManageKeys);
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
                esc(&utc_date(k.created_at.unix_ms().div_euclid(1000))),
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
