//! What the demo prints: the list of things to try once it serves, and the tour's lines for
//! each call, with a balance bar and the percentage left.

use std::io::Write as _;
use std::path::Path;

use creditgate_domain::Amount;

use super::api::{Api, Balance};
use super::seed::DemoOrg;
use super::tour::Style;
use super::{BAR_WIDTH, BILLING_EMAIL, DEMO_LOW_THRESHOLD, DEMO_ORG_NAME, PRICES, STATE_FILE};

/// Writes a line to stdout, flushed (a closed pipe is not worth a panic).
pub(super) fn say(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

/// What `creditgate demo` prints once it serves.
pub(super) async fn print_try(
    api: &Api,
    data_dir: &Path,
    demo: &DemoOrg,
    billing_url: &dyn Fn(&str) -> String,
) -> anyhow::Result<()> {
    let base = &api.base;
    let balance = api.balance(demo).await?;
    let currency = &balance.currency;
    let key = &demo.key;
    let org = &demo.org_id;
    let dir = data_dir.display();
    // The operator token for a shell: from its file in the data directory, or from the
    // environment when it came from there.
    let token_file = data_dir.join("operator_token");
    let token = match std::fs::read_to_string(&token_file) {
        Ok(saved) if saved.trim() == api.operator => format!("$(cat {})", token_file.display()),
        _ => "$CREDITGATE_OPERATOR_TOKEN".to_owned(),
    };
    let top_up_key = format!("demo-top-up-{}", creditgate::ids::random_hex(4));
    let prices: Vec<String> = PRICES
        .iter()
        .map(|p| format!("{} {} in / {} out", p.model, p.input, p.output))
        .collect();
    let lines = [
        format!("creditgate demo: serving on {base} (SQLite, secrets and the demo key in {dir}; demo upstream for both proxy styles; sandbox payments)."),
        String::new(),
        format!("  org      {DEMO_ORG_NAME} ({org}), billing contact {BILLING_EMAIL}, low-balance alert at {DEMO_LOW_THRESHOLD}"),
        format!("  balance  {} {currency} available, access {}", balance.available, balance.access_state),
        format!("  API key  {key}  (kept in {dir}/{STATE_FILE}, reused on restart)"),
        format!("  prices   per million tokens: {}", prices.join("; ")),
        String::new(),
        "Try:".to_owned(),
        format!("  # An Anthropic-style call through the metering proxy (an SDK's base URL: {base}/anthropic)"),
        format!("  curl -s {base}/anthropic/v1/messages -H 'x-api-key: {key}' -H 'anthropic-version: 2023-06-01' -H 'content-type: application/json' -d '{{\"model\":\"claude-demo\",\"max_tokens\":64,\"messages\":[{{\"role\":\"user\",\"content\":\"Hello\"}}]}}'"),
        format!("  # An OpenAI-style call, streamed (an SDK's base URL: {base}/openai/v1)"),
        format!("  curl -sN {base}/openai/v1/chat/completions -H 'Authorization: Bearer {key}' -H 'content-type: application/json' -d '{{\"model\":\"gpt-demo\",\"max_tokens\":64,\"stream\":true,\"messages\":[{{\"role\":\"user\",\"content\":\"Hello\"}}]}}'"),
        "  # The balance and access state (each proxied answer carries them too: creditgate-balance-available, creditgate-access-state)".to_owned(),
        format!("  curl -s {base}/v1/orgs/{org}/balance -H 'x-api-key: {key}'"),
        "  # The story by itself: calls until the credits run out, the 402, a top-up paid on the sandbox checkout, access back".to_owned(),
        format!("  creditgate demo --tour --listen {} --data-dir {dir}", base.trim_start_matches("http://")),
        "  # Add credits as a customer does: a checkout top-up (a new Idempotency-Key for each top-up; a replay answers the same payment)".to_owned(),
        format!("  curl -s {base}/v1/orgs/{org}/top_ups -H \"Authorization: Bearer {token}\" -H 'Idempotency-Key: {top_up_key}' -H 'content-type: application/json' -d '{{\"amount\":\"25.00\"}}'"),
        "  # then open its action_url and pay with a test card (pm_card_visa succeeds, pm_card_visa_chargeDeclined is declined; in production the page is Stripe Checkout)".to_owned(),
        "  # The operator's way: grant credits directly (the CLI reads the token from the data directory)".to_owned(),
        format!("  CREDITGATE_DATA_DIR={dir} creditgate credits grant {org} 5.00 --url {base}"),
        String::new(),
        format!("Billing page: {}", billing_url(org)),
        format!("  sign in as {BILLING_EMAIL}: the sign-in link is emailed to {dir}/mail/ (open the newest .eml there)"),
        String::new(),
        "Serving until Ctrl-C.".to_owned(),
    ];
    say(&lines.join("\n"));
    Ok(())
}

/// `[#######.......]`: `available` of `full`.
pub(super) fn bar(available: Amount, full: Amount) -> String {
    let full_micros = full.micros().max(1);
    let filled = (i128::from(available.micros().clamp(0, full_micros)) * i128::from(BAR_WIDTH)
        / i128::from(full_micros))
    .clamp(0, i128::from(BAR_WIDTH));
    let filled = usize::try_from(filled).unwrap_or(0);
    let width = usize::try_from(BAR_WIDTH).unwrap_or(0);
    format!("[{}{}]", "#".repeat(filled), ".".repeat(width - filled))
}

/// `available` as a whole percentage of `full`.
pub(super) fn percent(available: Amount, full: Amount) -> i128 {
    i128::from(available.micros().max(0)) * 100 / i128::from(full.micros().max(1))
}

/// `percent` for a column: `96%`, or `>100%` once credits were added.
pub(super) fn percent_text(available: Amount, full: Amount) -> String {
    if available > full {
        ">100%".to_owned()
    } else {
        format!("{}%", percent(available, full))
    }
}

pub(super) fn call_line(
    n: u32,
    style: Style,
    stream: bool,
    status: &str,
    balance: &Balance,
    full: Amount,
) -> String {
    let mode = if stream { "stream" } else { "" };
    format!(
        "call {n:>3}  {:<9} {:<6} {status}  {}  {:>9} available {:>5}  {}",
        style.name(),
        mode,
        bar(balance.available, full),
        balance.available.to_string(),
        percent_text(balance.available, full),
        balance.access_state,
    )
}
