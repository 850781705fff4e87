//! `creditgate price set|list`.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::Value;

use super::client::{object, Client};
use super::view::{fields, items, show, text, time, Align, Table};
use super::{Connection, Failure};

/// `creditgate price …`
#[derive(Args, Debug)]
pub struct PriceArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: PriceCommand,
}

#[derive(Subcommand, Debug)]
enum PriceCommand {
    /// Add a version of a model's prices, per million tokens.
    Set {
        /// The model, e.g. claude-sonnet-4 or vendor/model.
        model: String,
        /// Per million input tokens.
        #[arg(long, value_name = "AMOUNT")]
        input: String,
        /// Per million output tokens.
        #[arg(long, value_name = "AMOUNT")]
        output: String,
        /// Per million cache-write tokens [server default: the input price].
        #[arg(long, value_name = "AMOUNT")]
        cache_write: Option<String>,
        /// Per million cache-read tokens [server default: the input price].
        #[arg(long, value_name = "AMOUNT")]
        cache_read: Option<String>,
        /// Per call [server default: 0].
        #[arg(long, value_name = "AMOUNT")]
        request_fee: Option<String>,
        /// Output tokens a hold assumes when its request does not say [server default: 4096].
        #[arg(long, value_name = "N")]
        max_output_tokens: Option<u64>,
        /// Unix seconds from which it is in force [default: now].
        #[arg(long, value_name = "UNIX_S")]
        effective_at: Option<i64>,
    },
    /// List price versions, by model and time.
    List {
        /// Only this model's versions.
        #[arg(long)]
        model: Option<String>,
    },
}

pub(super) async fn run_price(args: PriceArgs) -> Result<(), Failure> {
    let client = Client::new(&args.connection)?;
    let (answer, view) = match args.command {
        PriceCommand::Set {
            model,
            input,
            output,
            cache_write,
            cache_read,
            request_fee,
            max_output_tokens,
            effective_at,
        } => {
            let body = object(vec![
                ("input", Some(input.into())),
                ("output", Some(output.into())),
                ("cache_write", cache_write.map(Value::from)),
                ("cache_read", cache_read.map(Value::from)),
                ("request_fee", request_fee.map(Value::from)),
                ("max_output_tokens", max_output_tokens.map(Value::from)),
                ("effective_at", effective_at.map(Value::from)),
            ]);
            let answer = client
                .send(
                    Method::PUT,
                    &["v1", "prices", &model],
                    &[],
                    Some(body),
                    None,
                )
                .await?;
            let view = format!(
                "Set the price of {} (per million tokens).\n{}",
                text(&answer.body["model"]),
                price_view(&answer.body)
            );
            (answer, view)
        }
        PriceCommand::List { model } => {
            let query: Vec<(&str, String)> = model.map(|m| ("model", m)).into_iter().collect();
            let answer = client.get(&["v1", "prices"], &query).await?;
            let view = price_list_view(&answer.body);
            (answer, view)
        }
    };
    show(&client, &answer, &view);
    Ok(())
}

fn price_view(price: &Value) -> String {
    fields(&[
        ("id", text(&price["id"])),
        ("model", text(&price["model"])),
        ("input", text(&price["input"])),
        ("output", text(&price["output"])),
        ("cache write", text(&price["cache_write"])),
        ("cache read", text(&price["cache_read"])),
        ("request fee", text(&price["request_fee"])),
        ("max output tokens", text(&price["max_output_tokens"])),
        ("effective", time(&price["effective_at"])),
    ])
}

fn price_list_view(list: &Value) -> String {
    let prices = items(list);
    if prices.is_empty() {
        return "No prices.".to_owned();
    }
    let mut table = Table::new(&[
        ("MODEL", Align::Left),
        ("INPUT/M", Align::Right),
        ("OUTPUT/M", Align::Right),
        ("CACHE WRITE/M", Align::Right),
        ("CACHE READ/M", Align::Right),
        ("REQUEST FEE", Align::Right),
        ("MAX OUTPUT", Align::Right),
        ("EFFECTIVE", Align::Left),
        ("ID", Align::Left),
    ]);
    for price in prices {
        table.row(vec![
            text(&price["model"]),
            text(&price["input"]),
            text(&price["output"]),
            text(&price["cache_write"]),
            text(&price["cache_read"]),
            text(&price["request_fee"]),
            text(&price["max_output_tokens"]),
            time(&price["effective_at"]),
            text(&price["id"]),
        ]);
    }
    table.render()
}
