//! Usage: spend by day and model as a chart and a table, filtered by period and API key,
//! and the same rows as CSV.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use creditgate_domain::member::Action;
use creditgate_domain::Timestamp;

use super::{chart, enter, internal, Ctx, Fields, DAY_MS};
use crate::http::extract::Path;
use crate::http::views::HoldTerms;
use crate::state::AppState;
use creditgate_store::api::ApiKey;
use maud::{html, Markup, PreEscaped};

/// Days the usage page shows by default, and at most.
const USAGE_DAYS_DEFAULT: i64 = 30;
const USAGE_DAYS_MAX: i64 = 366;
/// Usage groups read for one page, at most.
const USAGE_GROUPS_MAX: usize = 20_000;

/// What the usage page and its CSV show: the period and key asked for (or the defaults), and
/// the period's rows (every key's; the key filters them after).
struct Usage {
    days: i64,
    key: Option<String>,
    rows: Vec<chart::UsageRow>,
    first_day: i64,
    last_day: i64,
}

async fn read_usage(ctx: &Ctx, query: &Fields) -> Result<Usage, Response> {
    let days = usage_days(query);
    let key = usage_key(query);
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
    Ok(Usage {
        days,
        key,
        rows,
        first_day,
        last_day,
    })
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
        .filter(|k| crate::ids::is_valid("key", k))
        .cloned()
}

pub(super) async fn usage_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(org_id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<Fields>,
) -> Response {
    let ctx = match enter(&state, &headers, &org_id, Action::ViewUsage, None).await {
        Ok(ctx) => ctx,
        Err(response) => return response,
    };
    let Usage {
        days,
        key,
        rows,
        first_day,
        last_day,
    } = match read_usage(&ctx, &query).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let usage = chart::daily_by_model(&rows, first_day, last_day, key.as_deref());
    let currency = &state.config().currency;
    let svg = chart::svg(&usage, currency);
    let keys = state.store().keys(&org_id).await.unwrap_or_default();
    let csv_url = match &key {
        Some(key) => format!("{}/usage.csv?days={days}&key={key}", ctx.base()),
        None => format!("{}/usage.csv?days={days}", ctx.base()),
    };
    let body = html! {
        (filter_form(days, key.as_deref(), &keys))
        // The chart is our own SVG, its every text escaped by the chart module.
        section.card.chart #usage-chart { (PreEscaped(svg)) }
        section.card {
            h2 { "By model" }
            div.table-wrap {
                table #usage-table {
                    thead { tr { th scope="col" { "Model" } th.num scope="col" { "Spend" } } }
                    tbody {
                        @for (model, total) in usage.models.iter().zip(&usage.model_totals) {
                            tr { td { (model) } td.num { (ctx.money(*total)) } }
                        }
                    }
                    tfoot {
                        tr {
                            th scope="row" { "Total (" (usage.calls) " calls)" }
                            td.num #usage-total { (ctx.money(usage.total)) }
                        }
                    }
                }
            }
            p { a href=(csv_url) download { "Download CSV" } }
        }
    };
    ctx.page("/usage", "Usage", body)
}

/// The period and API key the page shows, `days` and `key` selected.
fn filter_form(days: i64, key: Option<&str>, keys: &[ApiKey]) -> Markup {
    html! {
        form.card method="get" aria-label="Filter" {
            label for="days" { "Period" }
            select #days name="days" {
                @for d in [7, 30, 90] {
                    option value=(d) selected[d == days] { "Last " (d) " days" }
                }
            }
            label for="key" { "API key" }
            select #key name="key" {
                option value="" { "All keys" }
                @for k in keys {
                    option value=(k.id) selected[key == Some(k.id.as_str())] {
                        (if k.name.is_empty() { &k.prefix } else { &k.name }) " (" (k.prefix) "…)"
                    }
                }
            }
            button type="submit" { "Show" }
        }
    }
}

pub(super) async fn usage_csv(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(org_id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<Fields>,
) -> Response {
    let ctx = match enter(&state, &headers, &org_id, Action::ViewUsage, None).await {
        Ok(ctx) => ctx,
        Err(response) => return response,
    };
    let Usage { key, rows, .. } = match read_usage(&ctx, &query).await {
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
