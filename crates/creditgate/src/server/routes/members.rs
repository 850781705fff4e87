//! Members of an org (operator, or a member whose role manages members): invite by email,
//! list, change role or name, remove. An org keeps at least one owner, and only owners
//! manage owners (`creditgate_domain::member::check_change`, decided in the store's
//! transaction).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use creditgate_domain::member::{self, ChangeError, Role};
use creditgate_domain::Timestamp;
use creditgate_store::api::{Added, Member, NewLink};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{org_for, path_id, text, Path};
use crate::server::auth::Caller;
use crate::server::error::{ApiError, ErrorBody};
use crate::server::json::Body;
use crate::server::views::ListView;
use crate::server::{billing, AppState};

/// Longest email address.
pub const EMAIL_LEN_MAX: usize = 254;
/// Longest member name.
pub const NAME_LEN_MAX: usize = 100;

/// A member of an org.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberView {
    /// `mem_…`
    pub id: String,
    /// Always `member`.
    pub object: &'static str,
    /// The org.
    pub org_id: String,
    /// The email address (normalized).
    pub email: String,
    /// The name.
    pub name: String,
    /// `owner`, `admin`, `billing` or `developer`.
    pub role: String,
    /// Who added it: a member's id or `operator`.
    pub invited_by: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the last sign-in.
    pub last_sign_in_at: Option<i64>,
}

impl From<&Member> for MemberView {
    fn from(member: &Member) -> MemberView {
        MemberView {
            id: member.id.clone(),
            object: "member",
            org_id: member.org_id.clone(),
            email: member.email.clone(),
            name: member.name.clone(),
            role: member.role.as_str().to_owned(),
            invited_by: member.invited_by.clone(),
            created_at: member.created_at.unix_ms().div_euclid(1000),
            last_sign_in_at: member.last_sign_in_at.map(|t| t.unix_ms().div_euclid(1000)),
        }
    }
}

/// A new member.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ada@example.com", "name": "Ada", "role": "admin"}))]
pub struct CreateMember {
    /// The email address the sign-in links go to.
    #[schema(max_length = 254)]
    pub email: String,
    /// A name (up to 100 characters).
    #[serde(default)]
    #[schema(max_length = 100)]
    pub name: String,
    /// `owner`, `admin`, `billing` or `developer`.
    pub role: String,
    /// Email an invitation with a sign-in link (default true).
    pub invite: Option<bool>,
}

/// A change to a member.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMember {
    /// A new role.
    pub role: Option<String>,
    /// A new name.
    pub name: Option<String>,
}

fn role(param: &str, text: &str) -> Result<Role, ApiError> {
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
    let secret = billing::new_secret();
    let ttl = i64::try_from(ttl_ms).unwrap_or(i64::MAX);
    NewLink {
        token_hash: billing::secret_hash(&secret),
        secret,
        expires_at: Timestamp::from_unix_ms(now.unix_ms().saturating_add(ttl)),
        notice_id: state.new_id("ntc"),
        notice_kind: kind,
    }
}

/// Add a member to an org; by default emails it an invitation with a sign-in link.
#[utoipa::path(post, path = "/v1/orgs/{org_id}/members", tag = "members", params(("org_id" = String, Path, pattern = "^org_[A-Za-z0-9]{1,64}$")), request_body = CreateMember,
    responses((status = 201, body = MemberView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_member(
    State(state): State<AppState>,
    caller: Caller,
    Path(org_id): Path<String>,
    Body(body): Body<CreateMember>,
) -> Result<(StatusCode, Json<MemberView>), ApiError> {
    let org = org_for(&state, &caller, &org_id).await?;
    caller.require_operator_or_member()?;
    let email = member::normalize_email(&body.email, EMAIL_LEN_MAX).ok_or_else(|| {
        ApiError::invalid(
            "email",
            "parameter_invalid",
            "email is not an email address.",
        )
    })?;
    text("name", &body.name, 0, NAME_LEN_MAX)?;
    let role = role("role", &body.role)?;
    let now = state.now();
    let invited_by = match &caller {
        Caller::Member { member, .. } => member.id.clone(),
        _ => "operator".to_owned(),
    };
    let new = Member {
        id: state.new_id("mem"),
        org_id: org.id.clone(),
        email,
        name: body.name,
        role,
        invited_by,
        created_at: now,
        updated_at: now,
        last_sign_in_at: None,
    };
    let link = body.invite.unwrap_or(true).then(|| {
        new_link(
            &state,
            "member.invited",
            state.config().invite_link_ttl_ms,
            now,
        )
    });
    match state
        .store()
        .add_member(&new, caller.role(), link.as_ref(), now)
        .await?
    {
        Added::Added(member) => Ok((StatusCode::CREATED, Json(MemberView::from(&member)))),
        Added::EmailTaken => Err(ApiError::conflict_param(
            "email",
            "member_exists",
            "The org has a member with this email address.",
        )),
        Added::Refused(error) => Err(refused(error)),
    }
}

/// An org's members, owners first.
#[utoipa::path(get, path = "/v1/orgs/{org_id}/members", tag = "members", params(("org_id" = String, Path, pattern = "^org_[A-Za-z0-9]{1,64}$")),
    responses((status = 200, body = ListView<MemberView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_members(
    State(state): State<AppState>,
    caller: Caller,
    Path(org_id): Path<String>,
) -> Result<Json<ListView<MemberView>>, ApiError> {
    let org = org_for(&state, &caller, &org_id).await?;
    caller.require_operator_or_member()?;
    let members = state.store().members(&org.id).await?;
    Ok(Json(ListView::new(
        members.iter().map(MemberView::from).collect(),
        false,
    )))
}

/// Change a member's role or name.
#[utoipa::path(patch, path = "/v1/orgs/{org_id}/members/{member_id}", tag = "members", params(("org_id" = String, Path, pattern = "^org_[A-Za-z0-9]{1,64}$"), ("member_id" = String, Path, pattern = "^mem_[A-Za-z0-9]{1,64}$")), request_body = UpdateMember,
    responses((status = 200, body = MemberView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_member(
    State(state): State<AppState>,
    caller: Caller,
    Path((org_id, member_id)): Path<(String, String)>,
    Body(body): Body<UpdateMember>,
) -> Result<Json<MemberView>, ApiError> {
    let org = org_for(&state, &caller, &org_id).await?;
    caller.require_operator_or_member()?;
    path_id("member_id", "mem", &member_id)?;
    let new_role = body.role.as_deref().map(|r| role("role", r)).transpose()?;
    if let Some(name) = &body.name {
        text("name", name, 0, NAME_LEN_MAX)?;
    }
    match state
        .store()
        .update_member(
            &org.id,
            &member_id,
            new_role,
            body.name.as_deref(),
            caller.role(),
            state.now(),
        )
        .await?
    {
        None => Err(not_found()),
        Some(Err(error)) => Err(refused(error)),
        Some(Ok(member)) => Ok(Json(MemberView::from(&member))),
    }
}

/// Remove a member: its sessions and sign-in links end with it.
#[utoipa::path(delete, path = "/v1/orgs/{org_id}/members/{member_id}", tag = "members", params(("org_id" = String, Path, pattern = "^org_[A-Za-z0-9]{1,64}$"), ("member_id" = String, Path, pattern = "^mem_[A-Za-z0-9]{1,64}$")),
    responses((status = 200, body = MemberView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn remove_member(
    State(state): State<AppState>,
    caller: Caller,
    Path((org_id, member_id)): Path<(String, String)>,
) -> Result<Json<MemberView>, ApiError> {
    let org = org_for(&state, &caller, &org_id).await?;
    caller.require_operator_or_member()?;
    path_id("member_id", "mem", &member_id)?;
    match state
        .store()
        .remove_member(&org.id, &member_id, caller.role(), state.now())
        .await?
    {
        None => Err(not_found()),
        Some(Err(error)) => Err(refused(error)),
        Some(Ok(member)) => Ok(Json(MemberView::from(&member))),
    }
}
