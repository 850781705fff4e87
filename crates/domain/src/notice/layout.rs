//! How an email reads and looks: values as people read them (money, UTC times), text made
//! safe (on one line), and the two parts laid out from a message's blocks: the plain text
//! wrapped at [`TEXT_WIDTH`] columns (plain text, so built with `format!`), and one
//! inline-styled HTML document (a `maud` template: every value escaped by default).

use super::email::{Block, Message};
use super::TEXT_WIDTH;
use crate::money::Amount;
use crate::time::{civil_from_days, Timestamp};
use maud::{html, Markup, Render, DOCTYPE};

/// `amount` in `currency` as a person reads it: "$12.50" for USD, "12.50 EUR" otherwise.
pub fn format_money(amount: Amount, currency: &str) -> String {
    if currency.eq_ignore_ascii_case("USD") {
        match amount.checked_neg() {
            Some(magnitude) if amount.is_negative() => format!("-${magnitude}"),
            // i64::MIN has no positive counterpart; its Display carries the sign.
            _ => format!("${amount}"),
        }
    } else {
        format!("{amount} {currency}")
    }
}

/// `at` as a person reads it, in UTC to the minute: "2026-11-24 14:05 UTC". Seconds are
/// dropped, not rounded, so the time shown is never later than `at`.
pub fn format_utc(at: Timestamp) -> String {
    const DAY_MS: i64 = 86_400_000;
    const MINUTE_MS: i64 = 60_000;
    let (year, month, day) = civil_from_days(at.unix_ms().div_euclid(DAY_MS));
    let minute_of_day = at.unix_ms().rem_euclid(DAY_MS) / MINUTE_MS;
    let (hour, minute) = (minute_of_day / 60, minute_of_day % 60);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02} UTC")
}

/// `text` on one line: every control character (line breaks included) becomes a space, and
/// runs of whitespace one space, so that a name cannot break a header or the layout.
pub(super) fn one_line(text: &str) -> String {
    let spaced: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    spaced.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// How an email names the product's API: `product` as it is when it already ends with the
/// word "API" (any case, as a whole word: "Example API", "Acme-api"), else "`product` API"
/// ("Acme AI API"), so that no email says "Example API API". An empty name is just "API".
pub(super) fn api_name(product: &str) -> String {
    if product.is_empty() {
        return "API".to_owned();
    }
    // For a name shorter than three bytes `split` is 0, and the end is the whole name: not "api".
    let split = product.len().saturating_sub(3);
    let names_the_api = product
        .get(split..)
        .is_some_and(|end| end.eq_ignore_ascii_case("api"))
        && product[..split]
            .chars()
            .next_back()
            .is_none_or(|before| !before.is_alphanumeric() && before != '_');
    if names_the_api {
        product.to_owned()
    } else {
        format!("{product} API")
    }
}

/// `text` wrapped at `width` columns on word boundaries (a longer word stays whole).
pub(super) fn wrap(text: &str, width: usize) -> String {
    let mut wrapped = String::with_capacity(text.len());
    let mut column = 0;
    for word in text.split_whitespace() {
        let length = word.chars().count();
        if column > 0 && column + 1 + length > width {
            wrapped.push('\n');
            column = 0;
        }
        if column > 0 {
            wrapped.push(' ');
            column += 1;
        }
        wrapped.push_str(word);
        column += length;
    }
    wrapped
}

pub(super) fn render_text(message: &Message) -> String {
    let mut parts: Vec<String> = Vec::with_capacity(message.blocks.len() + 1);
    for block in &message.blocks {
        parts.push(match block {
            Block::Paragraph(text) => wrap(text, TEXT_WIDTH),
            Block::Figure { label, value } => format!("{label}: {value}"),
            Block::Action { lead, url, .. } => format!("{}:\n{url}", wrap(lead, TEXT_WIDTH)),
            Block::Link { lead, url } => format!("{}\n{url}", wrap(lead, TEXT_WIDTH)),
        });
    }
    // "-- " (with the space) is the signature separator mail clients recognise.
    parts.push(format!("-- \n{}", wrap(&message.footer, TEXT_WIDTH)));
    let mut text = parts.join("\n\n");
    text.push('\n');
    text
}

const STYLE_BODY: &str = "margin:0;padding:0;background-color:#f4f4f5;";
const STYLE_CARD: &str = "max-width:600px;margin:0 auto;padding:32px 24px;\
    background-color:#ffffff;color:#18181b;\
    font-family:-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;\
    font-size:16px;line-height:1.5;";
const STYLE_HEADING: &str = "margin:0 0 16px;font-size:22px;line-height:1.3;color:#18181b;";
const STYLE_PARAGRAPH: &str = "margin:0 0 16px;";
const STYLE_FIGURE: &str = "margin:0 0 24px;font-size:18px;";
const STYLE_BUTTON_ROW: &str = "margin:0 0 24px;";
const STYLE_BUTTON: &str = "display:inline-block;padding:12px 24px;border-radius:6px;\
    background-color:#1d4ed8;color:#ffffff;font-weight:bold;text-decoration:none;";
const STYLE_LINK: &str = "color:#1d4ed8;text-decoration:underline;";
const STYLE_RULE: &str = "margin:32px 0 16px;border:0;border-top:1px solid #d4d4d8;";
const STYLE_FOOTER: &str = "margin:0;font-size:13px;color:#52525b;";

/// The HTML part: a `maud` template, so every interpolated value is escaped. Its elements
/// are laid out one to a line, as the snapshots hold them.
pub(super) fn render_html(message: &Message) -> String {
    let subject = Text(&message.subject);
    html! {
        (DOCTYPE) "\n"
        html lang="en" {
            "\n"
            head {
                "\n"
                meta charset="utf-8";
                "\n"
                meta name="viewport" content="width=device-width, initial-scale=1";
                "\n"
                title { (subject) }
                "\n"
            }
            "\n"
            body style=(STYLE_BODY) {
                "\n"
                div role="article" aria-label=(subject) style=(STYLE_CARD) {
                    "\n"
                    h1 style=(STYLE_HEADING) { (Text(&message.heading)) }
                    "\n"
                    @for block in &message.blocks {
                        (block_html(block))
                        "\n"
                    }
                    hr style=(STYLE_RULE);
                    "\n"
                    p style=(STYLE_FOOTER) { (Text(&message.footer)) }
                    "\n"
                }
                "\n"
            }
            "\n"
        }
        "\n"
    }
    .into_string()
}

fn block_html(block: &Block) -> Markup {
    match block {
        Block::Paragraph(text) => html! { p style=(STYLE_PARAGRAPH) { (Text(text)) } },
        Block::Figure { label, value } => html! {
            p style=(STYLE_FIGURE) { (Text(label)) ": " strong { (Text(value)) } }
        },
        Block::Action { lead, button, url } => html! {
            p style=(STYLE_PARAGRAPH) { (Text(lead)) "." }
            "\n"
            p style=(STYLE_BUTTON_ROW) {
                a href=(Text(url)) style=(STYLE_BUTTON) { (Text(button)) }
            }
        },
        Block::Link { lead, url } => html! {
            p style=(STYLE_PARAGRAPH) {
                (Text(lead)) " " a href=(Text(url)) style=(STYLE_LINK) { (Text(url)) }
            }
        },
    }
}

/// Text in the HTML part: escaped by `maud` (`&`, `<`, `>`, `"`), and `'` as `&#39;` too,
/// as the emails have always had it (the snapshots hold their bytes).
#[derive(Clone, Copy)]
pub(super) struct Text<'a>(pub(super) &'a str);

impl Render for Text<'_> {
    fn render_to(&self, buffer: &mut String) {
        for (index, part) in self.0.split('\'').enumerate() {
            if index > 0 {
                buffer.push_str("&#39;");
            }
            part.render_to(buffer);
        }
    }
}
