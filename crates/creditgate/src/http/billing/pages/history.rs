//! History: the org's transfers, newest first, and a receipt for each credit bought or
//! granted.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use creditgate_domain::member::Action;
use creditgate_domain::notice::format_money;

use super::{enter, internal, problem, utc_date, Fields};
use crate::app;
use crate::http::billing::html::message;
use crate::http::extract::Path;
use crate::state::AppState;
use maud::html;

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
        Err(error) => return ctx.page("/history", "History", message("error", &error.message)),
    };
    let currency = &state.config().currency;
    if list.items.is_empty() {
        return ctx.page("/history", "History", html! { p.muted { "Nothing yet." } });
    }
    let more = match (list.has_more, list.items.last()) {
        (true, Some(last)) => Some(format!("{}/history?after={}", ctx.base(), last.id.as_str())),
        _ => None,
    };
    let body = html! {
        div.table-wrap {
            table #history {
                thead {
                    tr {
                        th scope="col" { "Date (UTC)" }
                        th scope="col" { "What" }
                        th.num scope="col" { "Amount" }
                        th.num scope="col" { "Balance after" }
                        th scope="col" { span.sr-only { "Receipt" } }
                    }
                }
                tbody {
                    @for t in &list.items {
                        @let credit = t.credit_account_id.as_str() == org_id;
                        @let after =
                            if credit { t.credit_balance_after } else { t.debit_balance_after };
                        tr {
                            td { (utc_date(t.created_at.unix_ms().div_euclid(1000))) }
                            td { (kind_label(t.kind.as_str())) }
                            td.num {
                                (if credit { "+" } else { "−" })
                                (format_money(t.amount, currency))
                            }
                            td.num { (format_money(after, currency)) }
                            td {
                                @if receipted(t.kind.as_str()) && credit {
                                    a href={ (ctx.base()) "/receipts/" (t.id.as_str()) } {
                                        "Receipt"
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(more) = more { p { a href=(more) { "Older" } } }
    };
    ctx.page("/history", "History", body)
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
    let date = utc_date(transfer.created_at.unix_ms().div_euclid(1000));
    let body = html! {
        section.card #receipt {
            dl {
                dt { "Receipt number" } dd { (transfer.id.as_str()) }
                dt { "Date (UTC)" } dd { (date) }
                dt { "Org" } dd { (ctx.org.name) }
                dt { "What" } dd { (kind_label(transfer.kind.as_str())) }
                dt { "Credits added" } dd { strong { (ctx.money(transfer.amount)) } }
            }
            p.muted {
                "Issued by " (state.config().product_name) ". Print this page to keep a copy."
            }
        }
    };
    ctx.page("/history", "Receipt", body)
}
