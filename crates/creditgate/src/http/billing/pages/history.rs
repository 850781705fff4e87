//! History: the org's transfers, newest first, and a receipt for each credit bought or
//! granted.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use creditgate_domain::member::Action;
use creditgate_domain::notice::format_money;

use super::{enter, internal, problem, utc_date, Fields};
use crate::app;
use crate::http::api::Path;
use crate::http::billing::html::{esc, message};
use crate::node::AppState;

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

pub(super) async fn history_page(
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
        .filter(|id| crate::ids::is_valid("txn", id) || id.len() <= 128)
        .cloned();
    let list = app::balance::transfers(&state, &ctx.caller(), &org_id, 50, after.as_deref()).await;
    let (_, list) = match list {
        Ok(list) => list,
        Err(error) => return ctx.page("/history", "History", &message("error", &error.message)),
    };
    let currency = &state.config().currency;
    let rows: String = list
        .items
        .iter()
        .map(|t| {
            let credit = t.credit_account_id.as_str() == org_id;
            let sign = if credit { "+" } else { "−" };
            let receipt = if receipted(t.kind.as_str()) && credit {
                format!(
                    "<a href=\"{}/receipts/{}\">Receipt</a>",
                    ctx.base(),
                    esc(t.id.as_str())
                )
            } else {
                String::new()
            };
            format!(
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{sign}{}</td><td class=\"num\">{}</td><td>{receipt}</td></tr>",
                esc(&utc_date(t.created_at.unix_ms().div_euclid(1000))),
                kind_label(t.kind.as_str()),
                esc(&format_money(t.amount, currency)),
                esc(&format_money(
                    if credit { t.credit_balance_after } else { t.debit_balance_after },
                    currency
                )),
            )
        })
        .collect();
    let more = match (list.has_more, list.items.last()) {
        (true, Some(last)) => format!(
            "<p><a href=\"{}/history?after={}\">Older</a></p>",
            ctx.base(),
            esc(last.id.as_str())
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

pub(super) async fn receipt_page(
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
