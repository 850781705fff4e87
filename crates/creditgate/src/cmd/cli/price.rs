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
    Set(Box<SetArgs>),
    /// List price versions, by model and time.
    List {
        /// Only this model's versions.
        #[arg(long)]
        model: Option<String>,
    },
}

/// `creditgate price set`.
#[derive(Args, Debug)]
struct SetArgs {
    /// The model, e.g. claude-sonnet-4 or vendor/model.
    model: String,
    /// Per million input tokens.
    #[arg(long, value_name = "AMOUNT")]
    input: String,
    /// Per million output tokens.
    #[arg(long, value_name = "AMOUNT")]
    output: String,
    /// Per million tokens written to the 5-minute cache [server default: the input price].
    #[arg(long, value_name = "AMOUNT")]
    cache_write: Option<String>,
    /// Per million tokens written to the 1-hour cache [server default: --cache-write].
    #[arg(long = "cache-write-1h", value_name = "AMOUNT")]
    cache_write_1h: Option<String>,
    /// Per million cache-read tokens [server default: the input price].
    #[arg(long, value_name = "AMOUNT")]
    cache_read: Option<String>,
    /// Per call [server default: 0].
    #[arg(long, value_name = "AMOUNT")]
    request_fee: Option<String>,
    /// Per web search the provider runs for a call [server default: 0].
    #[arg(long, value_name = "AMOUNT")]
    web_search_request: Option<String>,
    /// Per web fetch the provider runs for a call [server default: 0].
    #[arg(long, value_name = "AMOUNT")]
    web_fetch_request: Option<String>,
    #[command(flatten)]
    long: LongInputArgs,
    /// Output tokens a hold assumes when its request does not say [server default: 4096].
    #[arg(long, value_name = "N")]
    max_output_tokens: Option<u64>,
    /// Unix seconds from which it is in force [default: now].
    #[arg(long, value_name = "UNIX_S")]
    effective_at: Option<i64>,
}

/// Rates for every token of a call whose input is above a number of tokens.
#[derive(Args, Debug)]
struct LongInputArgs {
    /// Calls whose input (cache included) is above this many tokens are priced at the
    /// --long-* rates [default: no such rates].
    #[arg(long, value_name = "N")]
    long_above_input_tokens: Option<u64>,
    /// Per million input tokens of such a call.
    #[arg(long, value_name = "AMOUNT")]
    long_input: Option<String>,
    /// Per million output tokens of such a call.
    #[arg(long, value_name = "AMOUNT")]
    long_output: Option<String>,
    /// Per million 5-minute cache writes of such a call [server default: --long-input].
    #[arg(long, value_name = "AMOUNT")]
    long_cache_write: Option<String>,
    /// Per million 1-hour cache writes of such a call [server default: --long-cache-write].
    #[arg(long = "long-cache-write-1h", value_name = "AMOUNT")]
    long_cache_write_1h: Option<String>,
    /// Per million cache reads of such a call [server default: --long-input].
    #[arg(long, value_name = "AMOUNT")]
    long_cache_read: Option<String>,
}

impl LongInputArgs {
    /// The `long_input` object, if any of its flags is given (the server names what is
    /// missing).
    fn body(self) -> Option<Value> {
        let fields = vec![
            (
                "above_input_tokens",
                self.long_above_input_tokens.map(Value::from),
            ),
            ("input", self.long_input.map(Value::from)),
            ("output", self.long_output.map(Value::from)),
            ("cache_write", self.long_cache_write.map(Value::from)),
            ("cache_write_1h", self.long_cache_write_1h.map(Value::from)),
            ("cache_read", self.long_cache_read.map(Value::from)),
        ];
        fields
            .iter()
            .any(|(_, v)| v.is_some())
            .then(|| object(fields))
    }
}

pub(super) async fn run_price(args: PriceArgs) -> Result<(), Failure> {
    let client = Client::new(&args.connection)?;
    let (answer, view) = match args.command {
        PriceCommand::Set(set) => {
            let SetArgs {
                model,
                input,
                output,
                cache_write,
                cache_write_1h,
                cache_read,
                request_fee,
                web_search_request,
                web_fetch_request,
                long,
                max_output_tokens,
                effective_at,
            } = *set;
            let body = object(vec![
                ("input", Some(input.into())),
                ("output", Some(output.into())),
                ("cache_write", cache_write.map(Value::from)),
                ("cache_write_1h", cache_write_1h.map(Value::from)),
                ("cache_read", cache_read.map(Value::from)),
                ("request_fee", request_fee.map(Value::from)),
                ("web_search_request", web_search_request.map(Value::from)),
                ("web_fetch_request", web_fetch_request.map(Value::from)),
                ("long_input", long.body()),
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
        ("cache write 1h", text(&price["cache_write_1h"])),
        ("cache read", text(&price["cache_read"])),
        ("request fee", text(&price["request_fee"])),
        ("web search", text(&price["web_search_request"])),
        ("web fetch", text(&price["web_fetch_request"])),
        ("long input", long_input_text(&price["long_input"])),
        ("max output tokens", text(&price["max_output_tokens"])),
        ("effective", time(&price["effective_at"])),
    ])
}

/// "above N tokens: input I, output O, …", or "none".
fn long_input_text(long: &Value) -> String {
    if !long.is_object() {
        return "none".to_owned();
    }
    format!(
        "above {} tokens: input {}, output {}, cache write {}, cache write 1h {}, cache read {}",
        text(&long["above_input_tokens"]),
        text(&long["input"]),
        text(&long["output"]),
        text(&long["cache_write"]),
        text(&long["cache_write_1h"]),
        text(&long["cache_read"]),
    )
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
