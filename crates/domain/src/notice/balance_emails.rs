//! The emails about an org's credits and access (to its billing contacts, owners and
//! admins): access turned off and back on, a low balance, a spend limit reached, the receipt
//! for credits added (a grant or a purchase), and credits about to expire.

use super::email::{when_credits_run_out, Block, Common, Message};
use super::layout::format_utc;

pub(super) fn access_turned_off(common: &Common) -> Message {
    let Common { api, org, .. } = common;
    let mut blocks = vec![
        Block::Paragraph(format!(
            "{org} is out of usage credits, so its {api} access is turned off: API requests \
             from {org} are refused until credits are added."
        )),
        common.balance(),
        Block::Action {
            lead: "Add credits on the Billing page to turn access back on".to_owned(),
            button: "Add credits",
            url: common.billing_url.clone(),
        },
    ];
    if common.context.auto_reload_enabled {
        blocks.extend(why_auto_reload_did_not_help(common));
    } else {
        blocks.extend(auto_reload_tip(common, "Avoid this next time:"));
    }
    blocks.push(common.help());
    common.message(
        format!("[action needed] Your {api} access is turned off"),
        "Your API access is turned off",
        blocks,
    )
}

pub(super) fn access_restored(common: &Common) -> Message {
    let Common { api, org, .. } = common;
    common.message(
        format!("Your {api} access is back on"),
        "Your API access is back on",
        vec![
            Block::Paragraph(format!(
                "{org} has new credits, and its {api} access is back on: API requests are \
                 accepted again."
            )),
            common.balance(),
            Block::Action {
                lead: "See the balance and add credits on the Billing page".to_owned(),
                button: "Open the Billing page",
                url: common.billing_url.clone(),
            },
            common.help(),
        ],
    )
}

pub(super) fn balance_low(common: &Common) -> Message {
    let Common { product, org, .. } = common;
    let below = match common.context.threshold {
        Some(threshold) => {
            format!(
                "The usage credits of {org} are below {}.",
                common.money(threshold)
            )
        }
        None => format!("The usage credits of {org} are running low."),
    };
    let mut blocks = vec![
        Block::Paragraph(format!("{below} {}", when_credits_run_out(common, "they"))),
        common.balance(),
        Block::Action {
            lead: "Add credits on the Billing page".to_owned(),
            button: "Add credits",
            url: common.billing_url.clone(),
        },
    ];
    if !common.context.auto_reload_enabled {
        blocks.extend(auto_reload_tip(common, "Avoid running out:"));
    }
    blocks.push(common.help());
    common.message(
        format!("Your {product} credit balance is low"),
        "Your credit balance is low",
        blocks,
    )
}

pub(super) fn spend_limit_reached(common: &Common) -> Message {
    let Common { api, org, .. } = common;
    let limit = common.context.amount.map(|amount| common.money(amount));
    let resets = common.context.resets_at.map(format_utc);
    let reached = match &limit {
        Some(limit) => format!("{org} reached a spend limit of {limit} on the {api}"),
        None => format!("{org} reached a spend limit on the {api}"),
    };
    let until = match &resets {
        Some(at) => format!("until the limit resets at {at}"),
        None => "until the limit resets".to_owned(),
    };
    let mut blocks = vec![Block::Paragraph(format!(
        "{reached}, so API requests are refused {until}, whatever the balance. The \
             limit is set for the whole org or for one of its API keys; a key's limit \
             refuses only the requests made with that key."
    ))];
    blocks.extend(limit.map(|value| Block::Figure {
        label: "Spend limit",
        value,
    }));
    blocks.extend(resets.map(|value| Block::Figure {
        label: "Resets",
        value,
    }));
    blocks.push(common.balance());
    blocks.push(Block::Action {
        lead: "See your usage and API keys on the Billing page".to_owned(),
        button: "Open the Billing page",
        url: common.billing_url.clone(),
    });
    blocks.push(common.help());
    common.message(
        format!("[action needed] Your {api} spend limit is reached"),
        "Your spend limit is reached",
        blocks,
    )
}

pub(super) fn credits_added(common: &Common) -> Message {
    let Common { product, org, .. } = common;
    let added = common
        .context
        .amount
        .map_or_else(|| "Credits".to_owned(), |amount| common.money(amount));
    let mut blocks = vec![
        Block::Paragraph(format!(
            "{added} of usage credits were added to {org} on {product}."
        )),
        Block::Figure {
            label: "Credits added",
            value: added.clone(),
        },
    ];
    blocks.extend(common.receipt());
    blocks.push(common.balance());
    blocks.push(Block::Action {
        lead: "See your balance and history on the Billing page".to_owned(),
        button: "Open the Billing page",
        url: common.billing_url.clone(),
    });
    blocks.push(common.help());
    common.message(
        format!("Receipt: {added} of {product} credits added"),
        "Credits added",
        blocks,
    )
}

pub(super) fn credits_expiring(common: &Common) -> Message {
    let Common { product, org, .. } = common;
    let expiring = common.context.amount.map(|amount| common.money(amount));
    let at = common.context.expires_at.map(format_utc);
    // The subject names the day ("2026-11-24 14:05 UTC" up to the space); the body the time.
    let day = at.as_deref().and_then(|at| at.split(' ').next());
    let subject = match (&expiring, day) {
        (Some(expiring), Some(day)) => {
            format!("{expiring} of your {product} credits expire on {day}")
        }
        (Some(expiring), None) => format!("{expiring} of your {product} credits expire soon"),
        (None, Some(day)) => format!("Some of your {product} credits expire on {day}"),
        (None, None) => format!("Some of your {product} credits expire soon"),
    };
    let credits = match &expiring {
        Some(expiring) => format!("{expiring} of the usage credits of {org} on {product} are"),
        None => format!("Some of the usage credits of {org} on {product} are"),
    };
    let when = match &at {
        Some(at) => format!("on {at}"),
        None => "soon".to_owned(),
    };
    let mut blocks = vec![Block::Paragraph(format!(
        "{credits} still unused and expire {when}. Use them before then: after that, they \
         are gone and no longer count towards the balance."
    ))];
    blocks.extend(expiring.map(|value| Block::Figure {
        label: "Credits expiring",
        value,
    }));
    blocks.extend(at.map(|value| Block::Figure {
        label: "Expires",
        value,
    }));
    blocks.push(common.balance());
    blocks.push(Block::Action {
        lead: "See your balance and credits on the Billing page".to_owned(),
        button: "Open the Billing page",
        url: common.billing_url.clone(),
    });
    blocks.push(common.help());
    common.message(subject, "Credits expire soon", blocks)
}

/// The recommendation of auto-reload, with its one line on what it does, and where to turn
/// it on: only for an org that has it off.
fn auto_reload_tip(common: &Common, lead: &str) -> [Block; 2] {
    [
        Block::Paragraph(format!(
            "{lead} turn on auto-reload. Credits are added automatically when your balance \
             reaches a minimum you choose."
        )),
        Block::Link {
            lead: "Set it up on the Billing page:",
            url: common.auto_reload_url(),
        },
    ]
}

/// For an org that has auto-reload on, in place of the recommendation: why it did not keep
/// access on (the reason it could not add credits, or that it added too little), and where
/// to fix it.
fn why_auto_reload_did_not_help(common: &Common) -> Vec<Block> {
    let org = &common.org;
    match common.failure_reason() {
        Some(reason) => vec![
            Block::Paragraph(format!(
                "Auto-reload is on, but it tried and could not add credits to {org}."
            )),
            Block::Paragraph(format!("Reason: {reason}")),
            Block::Link {
                lead: "Update the saved card or the auto-reload settings on the Billing page:",
                url: common.auto_reload_url(),
            },
        ],
        None => vec![
            Block::Paragraph(format!(
                "Auto-reload is on, but it did not add enough credits to {org} to cover the \
                 refused request. A higher threshold or a larger amount keeps more credits \
                 in reserve."
            )),
            Block::Link {
                lead: "Change the auto-reload settings on the Billing page:",
                url: common.auto_reload_url(),
            },
        ],
    }
}
