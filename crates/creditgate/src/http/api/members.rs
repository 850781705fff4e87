//! Members of an org (operator, or a member whose role manages members): invite by email,
//! list, change role or name, remove. An org keeps at least one owner, and only owners
//! manage owners (`creditgate_domain::member::check_change`, decided in the store's
//! transaction).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use creditgate_domain::member::Action;
use creditgate_store::api::Member;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{path_id, Path};
use crate::app;
use crate::app::members::{self, NewMember};
use crate::http::auth::Caller;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::json::Body;
use crate::http::views::ListView;
use crate::state::AppState;

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
    #[schema(value_type = crate::http::json::Email)]
    pub email: String,
    /// A name (up to 100 characters, no control characters).
    #[serde(default)]
    #[schema(max_length = 100, pattern = r"^[^\x00-\x1F\x7F-\x9F]*$")]
    pub name: String,
    /// `owner`, `admin`, `billing` or `developer`.
    #[schema(value_type = MemberRole)]
    pub role: String,
    /// Email an invitation with a sign-in link (default true).
    pub invite: Option<bool>,
}

/// A change to a member.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMember {
    /// A new role.
    #[schema(value_type = Option<MemberRole>)]
    pub role: Option<String>,
    /// A new name (up to 100 characters, no control characters).
    #[schema(max_length = 100, pattern = r"^[^\x00-\x1F\x7F-\x9F]*$")]
    pub name: Option<String>,
}

/// A member's role (for the document; the handler parses the string).
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum MemberRole {
    Owner,
    Admin,
    Billing,
    Developer,
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
    app::org_for(&state, &caller, &org_id, Action::ManageMembers).await?;
    let new = NewMember {
        email: body.email,
        name: body.name,
        role: members::role("role", &body.role)?,
        invite: body.invite.unwrap_or(true),
    };
    let member = members::add(&state, &caller, &org_id, new).await?;
    Ok((StatusCode::CREATED, Json(MemberView::from(&member))))
}

/// An org's members, owners first.
#[utoipa::path(get, path = "/v1/orgs/{org_id}/members", tag = "members", params(("org_id" = String, Path, pattern = "^org_[A-Za-z0-9]{1,64}$")),
    responses((status = 200, body = ListView<MemberView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_members(
    State(state): State<AppState>,
    caller: Caller,
    Path(org_id): Path<String>,
) -> Result<Json<ListView<MemberView>>, ApiError> {
    let list = members::list(&state, &caller, &org_id).await?;
    Ok(Json(ListView::new(
        list.iter().map(MemberView::from).collect(),
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
    app::org_for(&state, &caller, &org_id, Action::ManageMembers).await?;
    path_id("member_id", "mem", &member_id)?;
    let new_role = body
        .role
        .as_deref()
        .map(|r| members::role("role", r))
        .transpose()?;
    let member = members::update(
        &state,
        &caller,
        &org_id,
        &member_id,
        new_role,
        body.name.as_deref(),
    )
    .await?;
    Ok(Json(MemberView::from(&member)))
}

/// Remove a member: its sessions and sign-in links end with it.
#[utoipa::path(delete, path = "/v1/orgs/{org_id}/members/{member_id}", tag = "members", params(("org_id" = String, Path, pattern = "^org_[A-Za-z0-9]{1,64}$"), ("member_id" = String, Path, pattern = "^mem_[A-Za-z0-9]{1,64}$")),
    responses((status = 200, body = MemberView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn remove_member(
    State(state): State<AppState>,
    caller: Caller,
    Path((org_id, member_id)): Path<(String, String)>,
) -> Result<Json<MemberView>, ApiError> {
    let member = members::remove(&state, &caller, &org_id, &member_id).await?;
    Ok(Json(MemberView::from(&member)))
}
