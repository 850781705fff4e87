//! History: the org's transfers, newest first, and a receipt for each credit bought or
//! granted.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use creditgate_domain::member::Action;
use creditgate_domain::notice::format_money;
use creditgate_domain::Amount;

use super::{enter, internal, parse_amount, problem, utc_date, Fields};
use crate::server::billing::html::{esc, message};
use crate::server::routes::{self, Path};
use crate::server::AppState;

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
