//! The payment emails: the receipt for an auto-reload charge, an auto-reload charge that
//! failed, auto-reload turned off after repeated failures, and a payment waiting for the
//! card holder's confirmation, and the receipt of a refund.

use super::email::{when_credits_run_out, Block, Common, Message};
use super::layout::format_utc;

pub(super) fn auto_reload_charged(common: &Common) -> Message {
    let Common { product, org, .. } = common;
    let added = common.context.amount.map(|amount| common.money(amount));
    let (subject, credits) = match &added {
        Some(added) => (
            format!("Receipt: {added} of {product} credits added by auto-reload"),
            format!("{added} of usage credits were"),
        ),
        None => (
            format!("Receipt: {product} credits added by auto-reload"),
            "Usage credits were".to_owned(),
        ),
    };
    let threshold = match common.context.threshold {
        Some(threshold) => format!("the auto-reload threshold of {}", common.money(threshold)),
        None => "the auto-reload threshold".to_owned(),
    };
    let mut blocks = vec![Block::Paragraph(format!(
        "{credits} added to {org} on {product} by auto-reload: the saved card was charged \
         automatically because the balance reached {threshold}."
    ))];
    blocks.extend(added.map(|value| Block::Figure {
        label: "Credits added",
        value,
    }));
    blocks.extend(common.receipt());
    blocks.push(common.balance());
    blocks.push(Block::Action {
        lead: "See your balance and history, or change the auto-reload settings, on the \
               Billing page"
            .to_owned(),
        button: "Open the Billing page",
        url: common.billing_url.clone(),
    });
    if let Some(url) = common.context.link.and_then(web_url) {
        let until = match common.context.expires_at {
            Some(at) => format!(" until {}", format_utc(at)),
            None => String::new(),
        };
        blocks.push(Block::Action {
            lead: format!(
                "Did not expect this charge? You can undo it{until}: the credits it added that \
                 are not used yet go back to the card, and auto-reload is turned off"
            ),
            button: "Undo this charge",
            url: url.to_owned(),
        });
    }
    blocks.push(common.help());
    common.message(subject, "Credits added by auto-reload", blocks)
}

pub(super) fn auto_reload_failed(common: &Common) -> Message {
    let Common { product, org, .. } = common;
    let charge = match common.context.amount {
        Some(amount) => format!("the charge of {} on the saved card", common.money(amount)),
        None => "the charge on the saved card".to_owned(),
    };
    let mut blocks = vec![Block::Paragraph(format!(
        "Auto-reload could not add usage credits to {org} on {product}: {charge} failed."
    ))];
    blocks.extend(
        common
            .failure_reason()
            .map(|reason| Block::Paragraph(format!("Reason: {reason}"))),
    );
    let next = match common.context.next_attempt_at {
        Some(at) => format!(
            "The charge will be tried again at {}; update the card before then so that \
             it goes through.",
            format_utc(at)
        ),
        None => "The charge will not be tried again automatically.".to_owned(),
    };
    blocks.push(Block::Paragraph(next));
    blocks.push(Block::Paragraph(when_credits_run_out(
        common,
        &format!("the credits of {org}"),
    )));
    blocks.push(common.balance());
    blocks.push(Block::Action {
        lead: "Update the saved card on the Billing page".to_owned(),
        button: "Update your card",
        url: common.auto_reload_url(),
    });
    blocks.push(common.help());
    common.message(
        format!("[action needed] Auto-reload of your {product} credits failed"),
        "Auto-reload failed",
        blocks,
    )
}

pub(super) fn auto_reload_disabled(common: &Common) -> Message {
    let Common { product, org, .. } = common;
    let mut blocks = vec![Block::Paragraph(format!(
        "Auto-reload for {org} on {product} was turned off after repeated failed charges on \
         the saved card."
    ))];
    blocks.extend(
        common
            .failure_reason()
            .map(|reason| Block::Paragraph(format!("Reason for the last failure: {reason}"))),
    );
    blocks.push(Block::Paragraph(format!(
        "Credits are no longer added automatically. {}",
        when_credits_run_out(common, &format!("the credits of {org}"))
    )));
    blocks.push(common.balance());
    blocks.push(Block::Action {
        lead: "Update the card and turn auto-reload back on from the Billing page".to_owned(),
        button: "Turn auto-reload back on",
        url: common.auto_reload_url(),
    });
    blocks.push(common.help());
    common.message(
        format!("[action needed] Auto-reload of your {product} credits is turned off"),
        "Auto-reload is turned off",
        blocks,
    )
}

pub(super) fn payment_action_required(common: &Common) -> Message {
    let Common { product, org, .. } = common;
    let payment = match common.context.amount {
        Some(amount) => format!("A payment of {}", common.money(amount)),
        None => "A payment".to_owned(),
    };
    let action = match common.context.action_url.and_then(web_url) {
        Some(url) => Block::Action {
            lead: "Confirm the payment with your bank".to_owned(),
            button: "Confirm the payment",
            url: url.to_owned(),
        },
        None => Block::Action {
            lead: "Confirm the payment on the Billing page".to_owned(),
            button: "Open the Billing page",
            url: common.billing_url.clone(),
        },
    };
    common.message(
        format!("[action needed] Confirm your {product} payment"),
        "Confirm your payment",
        vec![
            Block::Paragraph(format!(
                "{payment} for usage credits of {org} on {product} needs the card holder's \
                 confirmation: the card's bank asked to authenticate it (for example with \
                 3-D Secure). The credits are added as soon as the payment is confirmed."
            )),
            common.balance(),
            action,
            common.help(),
        ],
    )
}

/// `url` when it can be a link's target: an absolute `https` or `http` URL without
/// whitespace or control characters (which would break the text part's link line). Anything
/// else — a `javascript:` URL above all — is refused rather than made a button.
fn web_url(url: &str) -> Option<&str> {
    let web = ["https://", "http://"].iter().any(|scheme| {
        url.get(..scheme.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(scheme))
    });
    let one_word = !url.chars().any(|c| c.is_whitespace() || c.is_control());
    (web && one_word).then_some(url)
}

pub(super) fn refund_issued(common: &Common) -> Message {
    let Common { product, org, .. } = common;
    let refunded = common.context.amount.map(|amount| common.money(amount));
    let (subject, what) = match &refunded {
        Some(refunded) => (
            format!("Receipt: {refunded} of {product} credits refunded"),
            format!("{refunded} was"),
        ),
        None => (
            format!("Receipt: {product} credits refunded"),
            "A payment was".to_owned(),
        ),
    };
    let mut blocks = vec![Block::Paragraph(format!(
        "{what} refunded to the card that paid for credits of {org} on {product}. The \
         refunded credits were taken from the balance; credits already used are not refunded."
    ))];
    blocks.extend(
        common
            .failure_reason()
            .map(|reason| Block::Paragraph(format!("Reason: {reason}"))),
    );
    blocks.extend(refunded.map(|value| Block::Figure {
        label: "Refunded",
        value,
    }));
    blocks.extend(common.receipt());
    blocks.push(common.balance());
    blocks.push(Block::Action {
        lead: "See your balance and history on the Billing page".to_owned(),
        button: "Open the Billing page",
        url: common.billing_url.clone(),
    });
    blocks.push(common.help());
    common.message(subject, "Refund issued", blocks)
}
