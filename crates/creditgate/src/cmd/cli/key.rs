//! `creditgate key create|list|revoke`.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::Value;

use super::client::{object, Client};
use super::rate::{limits_text, RateFlags};
use super::view::{fields, items, show, text, time, Align, Table};
use super::{Connection, Failure};

/// `creditgate key …`
#[derive(Args, Debug)]
pub struct KeyArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: KeyCommand,
}

#[derive(Subcommand, Debug)]
enum KeyCommand {
    /// Create an API key for an org; prints the secret, which is shown this once.
    Create {
        /// `org_…`
        org_id: String,
        /// A label.
        #[arg(long)]
        name: Option<String>,
        /// Monthly spend cap for calls made with this key.
        #[arg(long, value_name = "AMOUNT")]
        spend_limit_monthly: Option<String>,
        #[command(flatten)]
        rate: RateFlags,
    },
    /// List an org's keys, newest first (revoked ones included).
    List {
        /// `org_…`
        org_id: String,
    },
    /// Revoke a key: it authenticates nothing from the next request on.
    Revoke {
        /// `key_…`
        key_id: String,
    },
}

pub(super) async fn run_key(args: KeyArgs) -> Result<(), Failure> {
    let client = Client::new(&args.connection)?;
    let (answer, view) = match args.command {
        KeyCommand::Create {
            org_id,
            name,
            spend_limit_monthly,
            rate,
        } => {
            let body = object(vec![
                ("name", name.map(Value::from)),
                ("spend_limit_monthly", spend_limit_monthly.map(Value::from)),
                ("rate_limits", rate.given()),
            ]);
            let answer = client
                .send(
                    Method::POST,
                    &["v1", "orgs", &org_id, "keys"],
                    &[],
                    Some(body),
                    None,
                )
                .await?;
            let view = format!(
                "Created key {}.\n{}\nSecret (shown only this once; store it now):\n  {}",
                text(&answer.body["id"]),
                key_view(&answer.body),
                text(&answer.body["secret"])
            );
            (answer, view)
        }
        KeyCommand::List { org_id } => {
            let answer = client.get(&["v1", "orgs", &org_id, "keys"], &[]).await?;
            let view = key_list_view(&answer.body);
            (answer, view)
        }
        KeyCommand::Revoke { key_id } => {
            let answer = client
                .send(Method::DELETE, &["v1", "keys", &key_id], &[], None, None)
                .await?;
            let view = format!(
                "Revoked key {} of org {}.",
                text(&answer.body["id"]),
                text(&answer.body["org_id"])
            );
            (answer, view)
        }
    };
    show(&client, &answer, &view);
    Ok(())
}

fn key_status(key: &Value) -> String {
    match key["revoked_at"].as_i64() {
        Some(_) => format!("revoked {}", time(&key["revoked_at"])),
        None => "active".to_owned(),
    }
}

fn key_view(key: &Value) -> String {
    fields(&[
        ("id", text(&key["id"])),
        ("org", text(&key["org_id"])),
        ("name", text(&key["name"])),
        ("prefix", text(&key["prefix"])),
        ("spend limit monthly", text(&key["spend_limit_monthly"])),
        ("rate limits", limits_text(&key["rate_limits"])),
        ("status", key_status(key)),
        ("created", time(&key["created_at"])),
    ])
}

fn key_list_view(list: &Value) -> String {
    let keys = items(list);
    if keys.is_empty() {
        return "No keys.".to_owned();
    }
    let mut table = Table::new(&[
        ("ID", Align::Left),
        ("NAME", Align::Left),
        ("PREFIX", Align::Left),
        ("SPEND LIMIT", Align::Right),
        ("CREATED", Align::Left),
        ("STATUS", Align::Left),
    ]);
    for key in keys {
        table.row(vec![
            text(&key["id"]),
            text(&key["name"]),
            text(&key["prefix"]),
            text(&key["spend_limit_monthly"]),
            time(&key["created_at"]),
            key_status(key),
        ]);
    }
    table.render()
}
