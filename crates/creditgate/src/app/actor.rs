//! Who acts: the operator, an org through one of its keys, or a member of an org through
//! the billing page. The transports authenticate and build it (`http::auth`); the operations
//! take it and authorize.

use creditgate_domain::member::Role;
use creditgate_store::api::{ApiKey, Member, Org};

use super::error::ApiError;

/// The authenticated caller.
// One per request, built once and borrowed: the size difference of the variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Caller {
    /// The operator.
    Operator,
    /// An org, through one of its keys.
    Key {
        /// The key used.
        key: ApiKey,
        /// Its org, as of this request.
        org: Org,
    },
    /// A member of an org, through its billing-page session.
    Member {
        /// The member.
        member: Member,
        /// Its org, as of this request.
        org: Org,
    },
}

impl Caller {
    /// Refuses anyone but the operator.
    pub fn require_operator(&self) -> Result<(), ApiError> {
        match self {
            Caller::Operator => Ok(()),
            Caller::Key { .. } | Caller::Member { .. } => {
                Err(ApiError::forbidden("This call needs the operator token."))
            }
        }
    }

    /// Refuses anyone but the operator and members (whose role was checked for the route
    /// before the handler ran).
    pub fn require_operator_or_member(&self) -> Result<(), ApiError> {
        match self {
            Caller::Operator | Caller::Member { .. } => Ok(()),
            Caller::Key { .. } => Err(ApiError::forbidden("This call needs the operator token.")),
        }
    }

    /// The member's role; `None` for the operator and keys.
    pub fn role(&self) -> Option<Role> {
        match self {
            Caller::Member { member, .. } => Some(member.role),
            Caller::Operator | Caller::Key { .. } => None,
        }
    }

    /// Refuses callers that may not act on org `org_id`. An org's key sees another org as
    /// not found, so ids of other tenants are not confirmed.
    pub fn require_org(&self, org_id: &str) -> Result<(), ApiError> {
        match self {
            Caller::Operator => Ok(()),
            Caller::Key { org, .. } | Caller::Member { org, .. } if org.id == org_id => Ok(()),
            Caller::Key { .. } | Caller::Member { .. } => {
                Err(ApiError::not_found("org_not_found", "No such org."))
            }
        }
    }

    /// The org a metering call acts for: the key's own, or `org_id` for the operator.
    pub fn metering_org(&self, org_id: Option<&str>) -> Result<String, ApiError> {
        match (self, org_id) {
            (Caller::Key { org, .. }, None) => Ok(org.id.clone()),
            (Caller::Key { org, .. }, Some(id)) if id == org.id => Ok(org.id.clone()),
            (Caller::Key { .. }, Some(_)) => {
                Err(ApiError::not_found("org_not_found", "No such org."))
            }
            (Caller::Operator, Some(id)) => Ok(id.to_owned()),
            (Caller::Member { .. }, _) => Err(ApiError::forbidden(
                "Metering calls need an API key or the operator token.",
            )),
            (Caller::Operator, None) => Err(ApiError::invalid(
                "org_id",
                "parameter_missing",
                "org_id is required when calling with the operator token.",
            )),
        }
    }

    /// The key's id, when called with a key.
    pub fn key_id(&self) -> Option<&str> {
        match self {
            Caller::Operator | Caller::Member { .. } => None,
            Caller::Key { key, .. } => Some(&key.id),
        }
    }

    /// Whose Idempotency-Keys these are: keys are per caller (the operator, or the org).
    pub fn idempotency_scope(&self) -> String {
        match self {
            Caller::Operator => "operator".to_owned(),
            Caller::Key { org, .. } | Caller::Member { org, .. } => org.id.clone(),
        }
    }
}
