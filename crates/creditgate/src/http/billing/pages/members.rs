//! Members: the list, invitations, role changes and removals.

use axum::extract::{Form, State};
use axum::http::HeaderMap;
use axum::response::Response;
use creditgate_domain::member::{self, Action, Role};

use super::{enter, field, internal, Ctx, Fields};
use crate::app::members::{self, NewMember};
use crate::http::api::Path;
use crate::http::billing::html::{esc, message};
use crate::node::AppState;

fn role_select(name: &str, id: &str, selected: Role, allowed: &[Role]) -> String {
    let options: String = allowed
        .iter()
        .map(|role| {
            let mark = if *role == selected { " selected" } else { "" };
            format!(
                "<option value=\"{}\"{mark}>{}</option>",
                role.as_str(),
                role.label()
            )
        })
        .collect();
    format!("<select name=\"{name}\" id=\"{id}\">{options}</select>")
}

async fn members_view(ctx: &Ctx, note: &str) -> Response {
    let members = match members::list(&ctx.state, &ctx.caller(), &ctx.org.id).await {
        Ok(members) => members,
        Err(error) => return internal(&ctx.state, error.message),
    };
    let can_manage = ctx.can(Action::ManageMembers);
    // Only owners grant or change the owner role.
    let grantable = member::grantable_roles(ctx.role());
    let rows: String = members
        .iter()
        .map(|m| {
            let editable = can_manage && member::may_manage(ctx.role(), m.role);
            let role = if editable {
                format!(
                    "<form method=\"post\" action=\"{base}/members/{id}\" class=\"inline\">{csrf}\
                     <label class=\"sr-only\" for=\"role-{id}\">Role of {email}</label>{select}\
                     <button type=\"submit\" name=\"op\" value=\"role\" class=\"secondary\">Change</button>\
                     <button type=\"submit\" name=\"op\" value=\"remove\" class=\"danger\" aria-label=\"Remove {email}\">Remove</button></form>",
                    base = ctx.base(),
                    id = esc(&m.id),
                    csrf = ctx.csrf(),
                    email = esc(&m.email),
                    select = role_select("role", &format!("role-{}", esc(&m.id)), m.role, &grantable),
                )
            } else {
                m.role.label().to_owned()
            };
            format!(
                "<tr><td>{}</td><td>{}</td><td>{role}</td></tr>",
                esc(&m.email),
                esc(&m.name)
            )
        })
        .collect();
    let invite = if can_manage {
        format!(
            "<form method=\"post\" class=\"card\">{csrf}<h2>Invite a member</h2>\
             <label for=\"invite-email\">Email address</label><input type=\"email\" id=\"invite-email\" name=\"email\" required>\
             <label for=\"invite-name\">Name <span class=\"hint\">(optional)</span></label><input type=\"text\" id=\"invite-name\" name=\"name\" maxlength=\"100\">\
             <label for=\"invite-role\">Role</label>{select}\
             <p class=\"hint\">Developers see usage and API keys, not payments. Billing members see payments, not keys.</p>\
             <button type=\"submit\" id=\"invite\">Send invitation</button></form>",
            csrf = ctx.csrf(),
            select = role_select("role", "invite-role", Role::Developer, &grantable),
        )
    } else {
        String::new()
    };
    let body = format!(
        "{note}{invite}<div class=\"table-wrap\"><table id=\"members\"><thead><tr><th scope=\"col\">Email</th>\
         <th scope=\"col\">Name</th><th scope=\"col\">Role</th></tr></thead><tbody>{rows}</tbody></table></div>"
    );
    ctx.page("/members", "Members", &body)
}

pub(super) async fn members_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(org_id): Path<String>,
) -> Response {
    let ctx = match enter(&state, &headers, &org_id, Action::ViewMembers, None).await {
        Ok(ctx) => ctx,
        Err(response) => return response,
    };
    members_view(&ctx, "").await
}

pub(super) async fn members_invite(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(org_id): Path<String>,
    Form(fields): Form<Fields>,
) -> Response {
    let ctx = match enter(
        &state,
        &headers,
        &org_id,
        Action::ManageMembers,
        Some(&fields),
    )
    .await
    {
        Ok(ctx) => ctx,
        Err(response) => return response,
    };
    let added = match members::role("role", field(&fields, "role")) {
        Ok(role) => {
            let new = NewMember {
                email: field(&fields, "email").to_owned(),
                name: field(&fields, "name").trim().to_owned(),
                role,
                invite: true,
            };
            members::add(&state, &ctx.caller(), &org_id, new).await
        }
        Err(error) => Err(error),
    };
    let note = match added {
        Ok(member) => message("notice", &format!("Invitation sent to {}.", member.email)),
        Err(error) => message("error", &error.message),
    };
    members_view(&ctx, &note).await
}

pub(super) async fn members_change(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((org_id, member_id)): Path<(String, String)>,
    Form(fields): Form<Fields>,
) -> Response {
    let ctx = match enter(
        &state,
        &headers,
        &org_id,
        Action::ManageMembers,
        Some(&fields),
    )
    .await
    {
        Ok(ctx) => ctx,
        Err(response) => return response,
    };
    let actor = ctx.caller();
    let result = if field(&fields, "op") == "remove" {
        members::remove(&state, &actor, &org_id, &member_id)
            .await
            .map(|m| format!("{} was removed.", m.email))
    } else {
        match members::role("role", field(&fields, "role")) {
            Ok(role) => members::update(&state, &actor, &org_id, &member_id, Some(role), None)
                .await
                .map(|m| format!("{} is now {}.", m.email, m.role.as_str())),
            Err(error) => Err(error),
        }
    };
    let note = match result {
        Ok(text) => message("notice", &text),
        Err(error) => message("error", &error.message),
    };
    members_view(&ctx, &note).await
}
