//! Members of an org: invite (with a sign-in link by email), list, change role or name,
//! remove. An org keeps at least one owner, and only owners manage owners
//! (`creditgate_domain::member::check_change`, decided in the store's transaction).

use creditgate_domain::member::{self, Action, ChangeError, Role};
use creditgate_domain::Timestamp;
use creditgate_store::api::{Added, Member, NewLink};

use super::error::ApiError;
use super::input::{path_id, text};
use super::{org_for, Actor};
use crate::state::AppState;

/// Longest email address.
pub const EMAIL_LEN_MAX: usize = 254;
/// Longest member name.
pub const NAME_LEN_MAX: usize = 100;

/// A member to add.
#[derive(Clone, Debug)]
pub struct NewMember {
    /// The email address the sign-in links go to (normalized here).
    pub email: String,
    /// A name (up to [`NAME_LEN_MAX`] characters; may be empty).
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Whether to email it an invitation with a sign-in link.
    pub invite: bool,
}

/// A role named by `text`, or a 400 naming `param`.
pub fn role(param: &str, text: &str) -> Result<Role, ApiError> {
    Role::parse(text).ok_or_else(|| {
        ApiError::invalid(
            param,
            "parameter_invalid",
            "role must be owner, admin, billing or developer.",
        )
    })
}

fn refused(error: ChangeError) -> ApiError {
    match error {
        ChangeError::NotAllowed => ApiError::forbidden(error.to_string()),
        ChangeError::OwnersOnly | ChangeError::LastOwner => {
            ApiError::forbidden_code(error.code(), error.to_string())
        }
    }
}

fn not_found() -> ApiError {
    ApiError::not_found("member_not_found", "No such member.")
}

/// A new sign-in link, lasting `ttl_ms`, to be written with its email (`kind`).
pub fn new_link(state: &AppState, kind: &'static str, ttl_ms: u64, now: Timestamp) -> NewLink {
    let secret = crate::ids::new_secret();
    let ttl = i64::try_from(ttl_ms).unwrap_or(i64::MAX);
    NewLink {
        token_hash: crate::ids::secret_hash(&secret),
        secret,
        expires_at: Timestamp::from_unix_ms(now.unix_ms().saturating_add(ttl)),
        notice_id: state.new_id("ntc"),
        notice_kind: kind,
    }
}

/// Adds a member to the org (and by default writes its invitation).
pub async fn add(
    state: &AppState,
    actor: &Actor,
    org_id: &str,
    new: NewMember,
) -> Result<Member, ApiError> {
    let org = org_for(state, actor, org_id, Action::ManageMembers).await?;
    let email = member::normalize_email(&new.email, EMAIL_LEN_MAX).ok_or_else(|| {
        ApiError::invalid(
            "email",
            "parameter_invalid",
            "email is not an email address.",
        )
    })?;
    text("name", &new.name, 0, NAME_LEN_MAX)?;
    let now = state.now();
    let invited_by = match actor {
        Actor::Member { member, .. } => member.id.clone(),
        _ => "operator".to_owned(),
    };
    let member = Member {
        id: state.new_id("mem"),
        org_id: org.id.clone(),
        email,
        name: new.name,
        role: new.role,
        invited_by,
        created_at: now,
        updated_at: now,
        last_sign_in_at: None,
    };
    let link = new.invite.then(|| {
        new_link(
            state,
            "member.invited",
            state.config().invite_link_ttl_ms,
            now,
        )
    });
    match state
        .store()
        .add_member(&member, actor.role(), link.as_ref(), now)
        .await?
    {
        Added::Added(member) => Ok(member),
        Added::EmailTaken => Err(ApiError::conflict_param(
            "email",
            "member_exists",
            "The org has a member with this email address.",
        )),
        Added::Refused(error) => Err(refused(error)),
    }
}

/// The org's members, owners first.
pub async fn list(state: &AppState, actor: &Actor, org_id: &str) -> Result<Vec<Member>, ApiError> {
    let org = org_for(state, actor, org_id, Action::ViewMembers).await?;
    Ok(state.store().members(&org.id).await?)
}

/// Changes a member's role or name.
pub async fn update(
    state: &AppState,
    actor: &Actor,
    org_id: &str,
    member_id: &str,
    new_role: Option<Role>,
    name: Option<&str>,
) -> Result<Member, ApiError> {
    let org = org_for(state, actor, org_id, Action::ManageMembers).await?;
    path_id("member_id", "mem", member_id)?;
    if let Some(name) = name {
        text("name", name, 0, NAME_LEN_MAX)?;
    }
    match state
        .store()
        .update_member(
            &org.id,
            member_id,
            new_role,
            name,
            actor.role(),
            state.now(),
        )
        .await?
    {
        None => Err(not_found()),
        Some(Err(error)) => Err(refused(error)),
        Some(Ok(member)) => Ok(member),
    }
}

/// Removes a member: its sessions and sign-in links end with it.
pub async fn remove(
    state: &AppState,
    actor: &Actor,
    org_id: &str,
    member_id: &str,
) -> Result<Member, ApiError> {
    let org = org_for(state, actor, org_id, Action::ManageMembers).await?;
    path_id("member_id", "mem", member_id)?;
    match state
        .store()
        .remove_member(&org.id, member_id, actor.role(), state.now())
        .await?
    {
        None => Err(not_found()),
        Some(Err(error)) => Err(refused(error)),
        Some(Ok(member)) => Ok(member),
    }
}
