//! The overview: the access banner, the balance and the runway at the last days' rate.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use creditgate_domain::member::Action;
use creditgate_domain::{Amount, Timestamp};

use super::{enter, internal, parse_amount, Ctx, Fields, DAY_MS};
use crate::app;
use crate::http::api::Path;
use crate::http::billing::html::{esc, message};
use crate::node::AppState;

/// Days of usage the runway's burn rate is measured over.
const BURN_DAYS: i64 = 7;

fn banner(ctx: &Ctx, access_state: &str, calls_refused: Option<&str>) -> String {
    let base = ctx.base();
    let can_pay = ctx.can(Action::AddCredits);
    let fix = if can_pay {
        format!(
            "<a class=\"button\" href=\"{base}/credits\">Add credits</a>\
             <a class=\"button\" href=\"{base}/auto-reload\">Turn on auto-reload</a>"
        )
    } else {
        "<p>Ask an owner, admin or billing member of your org to add credits.</p>".to_owned()
    };
    match (access_state, calls_refused) {
        ("active" | "low", Some("spend_limit_reached")) => format!(
            "<section class=\"banner off\" role=\"alert\" id=\"access-banner\"><h2>API calls are refused: spend limit reached</h2>\
             <p>{org} has used its monthly spend limit, so API calls are refused until it resets on the 1st of next month \
             or an owner, admin or billing member raises it in Settings.</p></section>",
            org = esc(&ctx.org.name)
        ),
        ("depleted", _) => format!(
            "<section class=\"banner off\" role=\"alert\" id=\"access-banner\"><h2>API access is off</h2>\
             <p>{org} is out of usage credits, so API calls are refused. Add credits and access comes back \
             within a second. With auto-reload, credits are added automatically when the balance reaches \
             a minimum you choose.</p>{fix}</section>",
            org = esc(&ctx.org.name)
        ),
        ("suspended", _) => "<section class=\"banner off\" role=\"alert\" id=\"access-banner\"><h2>API access is suspended</h2>\
             <p>The provider has suspended this org. Contact support.</p></section>"
            .to_owned(),
        ("low", _) => format!(
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
    let note = match query.get("added").and_then(|a| parse_amount(a)) {
        Some(amount) => message(
            "notice",
            &format!("{} of credits added.", ctx.money(amount)),
        ),
        None => String::new(),
    };
    let body = format!(
        "{note}{banner}<section class=\"card figures\" aria-label=\"Balance\">\
         <div class=\"figure\"><div class=\"label\">Available</div><div class=\"value\" id=\"available\">{available}</div></div>\
         <div class=\"figure\"><div class=\"label\">Reserved by calls in flight</div><div class=\"value\" id=\"reserved\">{reserved}</div></div>\
         <div class=\"figure\"><div class=\"label\">Runway at the last 7 days' rate</div><div class=\"value\" id=\"runway\">{runway}</div></div>\
         <div class=\"figure\"><div class=\"label\">Spent in the last 7 days</div><div class=\"value\">{spent}</div></div>\
         </section>",
        banner = banner(
            &ctx,
            balance.org.access.state.as_str(),
            balance.refused.map(|r| r.code)
        ),
        available = ctx.money(available),
        reserved = ctx.money(balance.account.reserved),
        spent = ctx.money(spent),
    );
    ctx.page("", "Overview", &body)
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
