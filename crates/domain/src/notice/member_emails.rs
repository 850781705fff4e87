//! The member emails, each for one member only (never the org's billing contacts, never
//! webhooks): the sign-in link a member asked for, and the invitation of a member added to
//! an org. Both carry a link that signs its reader in.

use super::email::{Block, Common, Message};
use super::layout::one_line;

pub(super) fn member_sign_in(common: &Common) -> Message {
    let Common { product, org, .. } = common;
    common.message_because(
        format!("Your sign-in link for {product} billing"),
        "Sign in to the Billing page",
        vec![
            Block::Paragraph(format!(
                "Here is the link you asked for to sign in to the Billing page of {org} on \
                 {product}. {}",
                common.link_validity()
            )),
            common.sign_in_action("Sign in to the Billing page", "Sign in"),
            Block::Paragraph(
                "If you didn't ask for this, ignore this email: nobody can sign in without \
                 the link."
                    .to_owned(),
            ),
            common.help(),
        ],
        "a sign-in link was asked for with your address, as a member of",
    )
}

pub(super) fn member_invited(common: &Common) -> Message {
    let Common { product, org, .. } = common;
    let role = common
        .context
        .member_role
        .map(one_line)
        .filter(|role| !role.is_empty());
    let added = match &role {
        Some(role) => format!("You were added to {org} on {product} as {role}."),
        None => format!("You were added to {org} on {product}."),
    };
    let mut blocks = vec![Block::Paragraph(format!(
        "{added} Its Billing page shows the org's credits, usage and API keys, as far as \
         your role allows."
    ))];
    blocks.extend(role.map(|value| Block::Figure {
        label: "Role",
        value,
    }));
    blocks.push(Block::Paragraph(format!(
        "Accept the invitation by signing in with the link below. {}",
        common.link_validity()
    )));
    blocks.push(common.sign_in_action(
        "Accept the invitation and sign in to the Billing page",
        "Accept the invitation",
    ));
    blocks.push(Block::Paragraph(
        "If you didn't expect this invitation, ignore this email.".to_owned(),
    ));
    blocks.push(common.help());
    common.message_because(
        format!("You're invited to {org} on {product}"),
        &format!("You're invited to {org}"),
        blocks,
        "you were added as a member of",
    )
}
