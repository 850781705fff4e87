//! The overview: the access banner, the balance and the runway at the last days' rate.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use creditgate_domain::member::Action;
use creditgate_domain::{Amount, Timestamp};

use super::{enter, internal, parse_amount, Ctx, Fields, DAY_MS};
use crate::app;
use crate::http::billing::html::message;
use crate::http::extract::Path;
use crate::state::AppState;
use maud::{html, Markup};

/// Days of usage the runway's burn rate is measured over.
const BURN_DAYS: i64 = 7;

fn banner(ctx: &Ctx, access_state: &str, calls_refused: Option<&str>) -> Markup {
    let base = ctx.base();
    let fix = html! {
        @if ctx.can(Action::AddCredits) {
            a.button href={ (base) "/credits" } { "Add credits" }
            a.button href={ (base) "/auto-reload" } { "Turn on auto-reload" }
        } @else {
            p { "Ask an owner, admin or billing member of your org to add credits." }
        }
    };
    let org = &ctx.org.name;
    match (access_state, calls_refused) {
        ("active" | "low", Some("spend_limit_reached")) => html! {
            section.banner.off role="alert" #access-banner {
                h2 { "API calls are refused: spend limit reached" }
                p {
                    (org) " has used its monthly spend limit, so API calls are refused until it \
                     resets on the 1st of next month or an owner, admin or billing member \
                     raises it in Settings."
                }
            }
        },
        ("depleted", _) => html! {
            section.banner.off role="alert" #access-banner {
                h2 { "API access is off" }
                p {
                    (org) " is out of usage credits, so API calls are refused. Add credits and \
                     access comes back within a second. With auto-reload, credits are added \
                     automatically when the balance reaches a minimum you choose."
                }
                (fix)
            }
        },
        ("suspended", _) => html! {
            section.banner.off role="alert" #access-banner {
                h2 { "API access is suspended" }
                p { "The provider has suspended this org. Contact support." }
            }
        },
        ("low", _) => html! {
            section.banner.low role="status" #access-banner {
                h2 { "Your balance is low" }
                p { "API access is on, but credits are running low." }
                (fix)
            }
        },
        _ => html! {
            section.banner.ok role="status" #access-banner { h2 { "API access is on" } }
        },
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

pub(super) async fn overview(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(org_id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<Fields>,
) -> Response {
    let ctx = match enter(&state, &headers, &org_id, Action::ViewBalance, None).await {
        Ok(ctx) => ctx,
        Err(response) => return response,
    };
    let balance = match app::balance::balance(&state, &ctx.caller(), &org_id).await {
        Ok(balance) => balance,
        Err(error) => return internal(&state, error.message),
    };
    let now = state.now();
    let since = Timestamp::from_unix_ms(now.unix_ms() - BURN_DAYS * DAY_MS);
    let spent = match state.store().spend(&org_id, since, None).await {
        Ok(spend) => spend.charged,
        Err(error) => return internal(&state, error),
    };
    let available = balance.account.available();
    let runway = match runway_days(available, spent, BURN_DAYS) {
        None => "No usage in the last 7 days".to_owned(),
        Some(0) => "Less than a day".to_owned(),
        Some(1) => "About 1 day".to_owned(),
        Some(days) => format!("About {days} days"),
    };
    let note = query
        .get("added")
        .and_then(|a| parse_amount(a))
        .map(|amount| {
            message(
                "notice",
                &format!("{} of credits added.", ctx.money(amount)),
            )
        });
    let banner = banner(
        &ctx,
        balance.org.access.state.as_str(),
        balance.refused.map(|r| r.code),
    );
    let figures = [
        ("Available", Some("available"), ctx.money(available)),
        (
            "Reserved by calls in flight",
            Some("reserved"),
            ctx.money(balance.account.reserved),
        ),
        ("Runway at the last 7 days' rate", Some("runway"), runway),
        ("Spent in the last 7 days", None, ctx.money(spent)),
    ];
    let body = html! {
        @if let Some(note) = note { (note) }
        (banner)
        section.card.figures aria-label="Balance" {
            @for (label, id, value) in &figures {
                div.figure {
                    div.label { (label) }
                    div.value id=[*id] { (value) }
                }
            }
        }
    };
    ctx.page("", "Overview", body)
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
}
