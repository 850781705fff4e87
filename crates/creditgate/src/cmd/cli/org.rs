//! `creditgate org create|list|show|rate-limits|suspend|unsuspend`.

use std::fmt::Write as _;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::Value;

use super::client::{object, Answer, Client};
use super::rate::{limits_text, RateFlags};
use super::view::{fields, items, show, text, time, Align, Table};
use super::{Connection, Failure};

/// `creditgate org …`
#[derive(Args, Debug)]
pub struct OrgArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: OrgCommand,
}

#[derive(Subcommand, Debug)]
enum OrgCommand {
    /// Create an org (with its credit account); prints its id.
    Create {
        /// Its name.
        #[arg(long)]
        name: String,
        /// A billing contact (repeat for several).
        #[arg(long = "billing-email", value_name = "EMAIL")]
        billing_emails: Vec<String>,
        /// A low-balance threshold, e.g. 10.00 (repeat for several).
        #[arg(long = "low-threshold", value_name = "AMOUNT")]
        low_thresholds: Vec<String>,
        /// The lowest available balance it may reach: 0 (default) or negative (an overdraft).
        #[arg(long, value_name = "AMOUNT", allow_negative_numbers = true)]
        floor: Option<String>,
        /// Monthly spend cap.
        #[arg(long, value_name = "AMOUNT")]
        spend_limit_monthly: Option<String>,
        #[command(flatten)]
        rate: RateFlags,
    },
    /// Set an org's rate limits, all three at once (a flag left out: no limit).
    RateLimits {
        /// `org_…`
        org_id: String,
        #[command(flatten)]
        rate: RateFlags,
    },
    /// List orgs, in id order, one page at a time.
    List {
        /// Orgs per page (1 to 100; the server's default is 20).
        #[arg(long)]
        limit: Option<u32>,
        /// The last id of the previous page.
        #[arg(long, value_name = "ORG_ID")]
        starting_after: Option<String>,
    },
    /// Show an org.
    Show {
        /// `org_…`
        org_id: String,
    },
    /// Suspend an org: its calls are refused until it is unsuspended.
    Suspend {
        /// `org_…`
        org_id: String,
    },
    /// Lift an org's suspension.
    Unsuspend {
        /// `org_…`
        org_id: String,
    },
}

pub(super) async fn run_org(args: OrgArgs) -> Result<(), Failure> {
    let client = Client::new(&args.connection)?;
    let (answer, view) = match args.command {
        OrgCommand::Create {
            name,
            billing_emails,
            low_thresholds,
            floor,
            spend_limit_monthly,
            rate,
        } => {
            let body = object(vec![
                ("name", Some(name.into())),
                (
                    "billing_emails",
                    (!billing_emails.is_empty()).then(|| billing_emails.into()),
                ),
                (
                    "low_thresholds",
                    (!low_thresholds.is_empty()).then(|| low_thresholds.into()),
                ),
                ("floor", floor.map(Value::from)),
                ("spend_limit_monthly", spend_limit_monthly.map(Value::from)),
                ("rate_limits", rate.given()),
            ]);
            let answer = client
                .send(Method::POST, &["v1", "orgs"], &[], Some(body), None)
                .await?;
            let view = format!(
                "Created org {}.\n{}",
                text(&answer.body["id"]),
                org_view(&answer.body)
            );
            (answer, view)
        }
        OrgCommand::List {
            limit,
            starting_after,
        } => {
            let mut query = Vec::new();
            if let Some(limit) = limit {
                query.push(("limit", limit.to_string()));
            }
            if let Some(after) = starting_after {
                query.push(("starting_after", after));
            }
            let answer = client.get(&["v1", "orgs"], &query).await?;
            let view = org_list_view(&answer.body);
            (answer, view)
        }
        OrgCommand::Show { org_id } => {
            let answer = client.get(&["v1", "orgs", &org_id], &[]).await?;
            let view = org_view(&answer.body);
            (answer, view)
        }
        OrgCommand::RateLimits { org_id, rate } => set_rate_limits(&client, &org_id, &rate).await?,
        OrgCommand::Suspend { org_id } => set_suspended(&client, &org_id, true).await?,
        OrgCommand::Unsuspend { org_id } => set_suspended(&client, &org_id, false).await?,
    };
    show(&client, &answer, &view);
    Ok(())
}

/// `PATCH /v1/orgs/{org_id}` with `body`; the view says what changed.
async fn patch_org(
    client: &Client,
    org_id: &str,
    body: Value,
    view: impl Fn(&Value) -> String,
) -> Result<(Answer, String), Failure> {
    let answer = client
        .send(
            Method::PATCH,
            &["v1", "orgs", org_id],
            &[],
            Some(body),
            None,
        )
        .await?;
    let view = view(&answer.body);
    Ok((answer, view))
}

/// `PATCH /v1/orgs/{org_id}` with `rate_limits`.
async fn set_rate_limits(
    client: &Client,
    org_id: &str,
    rate: &RateFlags,
) -> Result<(Answer, String), Failure> {
    let body = serde_json::json!({ "rate_limits": rate.body() });
    patch_org(client, org_id, body, |org| {
        format!(
            "Org {} rate limits: {}.",
            text(&org["id"]),
            limits_text(&org["rate_limits"])
        )
    })
    .await
}

/// `PATCH /v1/orgs/{org_id}` with `suspended`.
async fn set_suspended(
    client: &Client,
    org_id: &str,
    suspend: bool,
) -> Result<(Answer, String), Failure> {
    let body = serde_json::json!({ "suspended": suspend });
    patch_org(client, org_id, body, |org| {
        format!(
            "Org {} {} (access state: {}).",
            text(&org["id"]),
            if suspend { "suspended" } else { "unsuspended" },
            text(&org["access_state"])
        )
    })
    .await
}

fn org_view(org: &Value) -> String {
    fields(&[
        ("id", text(&org["id"])),
        ("name", text(&org["name"])),
        ("access state", text(&org["access_state"])),
        ("suspended", text(&org["suspended"])),
        ("floor", text(&org["floor"])),
        ("low thresholds", text(&org["low_thresholds"])),
        ("spend limit monthly", text(&org["spend_limit_monthly"])),
        ("rate limits", limits_text(&org["rate_limits"])),
        ("billing emails", text(&org["billing_emails"])),
        ("created", time(&org["created_at"])),
    ])
}

fn org_list_view(list: &Value) -> String {
    let orgs = items(list);
    if orgs.is_empty() {
        return "No orgs.".to_owned();
    }
    let mut table = Table::new(&[
        ("ID", Align::Left),
        ("NAME", Align::Left),
        ("ACCESS", Align::Left),
        ("FLOOR", Align::Right),
        ("SPEND LIMIT", Align::Right),
        ("CREATED", Align::Left),
    ]);
    for org in orgs {
        table.row(vec![
            text(&org["id"]),
            text(&org["name"]),
            text(&org["access_state"]),
            text(&org["floor"]),
            text(&org["spend_limit_monthly"]),
            time(&org["created_at"]),
        ]);
    }
    let mut view = table.render();
    if list["has_more"].as_bool() == Some(true) {
        if let Some(last) = orgs.last() {
            let _ = write!(
                view,
                "More follow: creditgate org list --starting-after {}",
                text(&last["id"])
            );
        }
    }
    view
}
