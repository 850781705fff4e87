//! `creditgate balance ORG_ID`.

use clap::Args;
use serde_json::Value;

use super::client::Client;
use super::view::{fields, show, text};
use super::{Connection, Failure};

/// `creditgate balance ORG_ID`
#[derive(Args, Debug)]
pub struct BalanceArgs {
    #[command(flatten)]
    connection: Connection,
    /// `org_…`
    org_id: String,
}

pub(super) async fn run_balance(args: BalanceArgs) -> Result<(), Failure> {
    let client = Client::new(&args.connection)?;
    let answer = client
        .get(&["v1", "orgs", &args.org_id, "balance"], &[])
        .await?;
    let view = balance_view(&answer.body);
    show(&client, &answer, &view);
    Ok(())
}

fn balance_view(balance: &Value) -> String {
    fields(&[
        ("org", text(&balance["org_id"])),
        ("available", text(&balance["available"])),
        ("posted", text(&balance["posted"])),
        ("reserved", text(&balance["reserved"])),
        ("floor", text(&balance["floor"])),
        ("overspend", text(&balance["overspend"])),
        ("access state", text(&balance["access_state"])),
        ("currency", text(&balance["currency"])),
    ])
}
