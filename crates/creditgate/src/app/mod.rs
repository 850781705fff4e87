//! The application layer: typed operations behind the transports.
//!
//! Each operation takes an actor (the authenticated [`Actor`]) and typed input, authorizes
//! once ([`org_for`]: the org must be the actor's, and the action one its kind may do, by
//! `creditgate_domain::member`'s one table), reads through `store`, decides in `domain`,
//! writes through `store` or the ledger writer, and answers a typed result (store and domain
//! types, not JSON views) or an [`ApiError`] with a stable code. The JSON API
//! (`http::api`), the billing pages (`http::billing`) and the proxy (`http::proxy`) are adapters over these
//! operations: they parse their input, call one operation, and render its result as JSON or
//! HTML. Neither calls the other.
//!
//! Operations here so far: API keys ([`keys`]), members ([`members`]), orgs ([`orgs`]),
//! balance and history ([`balance`]), top-ups and auto-reload ([`payments`]), refunds by the
//! operator ([`refunds`]).

pub mod actor;
pub mod balance;
pub mod charges;
pub mod error;
pub mod input;
pub mod keys;
pub mod members;
pub mod metering;
pub mod orgs;
pub mod payments;
pub mod rate_limit;
pub mod refunds;
pub mod undo;

use creditgate_domain::member::{self, Action};
use creditgate_store::api::Org;

use crate::state::AppState;
pub use actor::{Caller, Caller as Actor};
pub use error::ApiError;
use input::path_id;

/// Whether `actor` may do `action` (on an org it may see): the operator anything, a member
/// what its role allows, an org's key what [`member::key_allows`] says.
pub fn authorize(actor: &Actor, action: Action) -> Result<(), ApiError> {
    match actor {
        Actor::Operator => Ok(()),
        Actor::Member { member, .. } if member::allows(member.role, action) => Ok(()),
        Actor::Member { .. } => Err(ApiError::forbidden("Your role may not do this.")),
        Actor::Key { .. } if member::key_allows(action) => Ok(()),
        Actor::Key { .. } => Err(ApiError::forbidden("This call needs the operator token.")),
    }
}

/// The org `org_id` for `actor` to do `action` on: a 400 for a malformed id, a 404 for an
/// org that does not exist or is not the actor's (other tenants' ids are not confirmed), a
/// 403 for an action the actor may not do.
pub async fn org_for(
    state: &AppState,
    actor: &Actor,
    org_id: &str,
    action: Action,
) -> Result<Org, ApiError> {
    let org = visible_org(state, actor, org_id).await?;
    authorize(actor, action)?;
    Ok(org)
}

/// Loads org `org_id` if the actor may see it at all (the operator, or the org's own key or
/// member), or 404; what it may do there is [`authorize`]'s to say.
pub async fn visible_org(state: &AppState, actor: &Actor, org_id: &str) -> Result<Org, ApiError> {
    path_id("org_id", "org", org_id)?;
    actor.require_org(org_id)?;
    state
        .store()
        .org(org_id)
        .await?
        .ok_or_else(|| ApiError::not_found("org_not_found", "No such org."))
}
