//! Members: the list, invitations, role changes and removals.

use axum::extract::{Form, State};
use axum::http::HeaderMap;
use axum::response::Response;
use creditgate_domain::member::{self, Action, Role};

use super::{enter, field, internal, Ctx, Fields};
use crate::app::members::{self, NewMember};
use crate::http::billing::html::message;
use crate::http::extract::Path;
use crate::state::AppState;
use creditgate_store::api::Member;
use maud::{html, Markup};

fn role_select(name: &str, id: &str, selected: Role, allowed: &[Role]) -> Markup {
    html! {
        select name=(name) id=(id) {
            @for role in allowed {
                option value=(role.as_str()) selected[*role == selected] { (role.label()) }
            }
        }
    }
}

async fn members_view(ctx: &Ctx, note: Option<Markup>) -> Response {
    let members = match members::list(&ctx.state, &ctx.caller(), &ctx.org.id).await {
        Ok(members) => members,
        Err(error) => return internal(&ctx.state, error.message),
    };
    let can_manage = ctx.can(Action::ManageMembers);
    // Only owners grant or change the owner role.
    let grantable = member::grantable_roles(ctx.role());
    let body = html! {
        @if let Some(note) = note { (note) }
        @if can_manage {
            form.card method="post" {
                (ctx.csrf())
                h2 { "Invite a member" }
                label for="invite-email" { "Email address" }
                input type="email" #invite-email name="email" required;
                label for="invite-name" { "Name " span.hint { "(optional)" } }
                input type="text" #invite-name name="name" maxlength="100";
                label for="invite-role" { "Role" }
                (role_select("role", "invite-role", Role::Developer, &grantable))
                p.hint {
                    "Developers see usage and API keys, not payments. Billing members see \
                     payments, not keys."
                }
                button type="submit" #invite { "Send invitation" }
            }
        }
        div.table-wrap {
            table #members {
                thead {
                    tr {
                        th scope="col" { "Email" }
                        th scope="col" { "Name" }
                        th scope="col" { "Role" }
                    }
                }
                tbody {
                    @for m in &members {
                        tr {
                            td { (m.email) }
                            td { (m.name) }
                            td {
                                @if can_manage && member::may_manage(ctx.role(), m.role) {
                                    (role_form(ctx, m, &grantable))
                                } @else {
                                    (m.role.label())
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    ctx.page("/members", "Members", body)
}

/// A member's role, with the forms that change it or remove the member.
fn role_form(ctx: &Ctx, m: &Member, grantable: &[Role]) -> Markup {
    let select_id = format!("role-{}", m.id);
    html! {
        form.inline method="post" action={ (ctx.base()) "/members/" (m.id) } {
            (ctx.csrf())
            label.sr-only for=(select_id) { "Role of " (m.email) }
            (role_select("role", &select_id, m.role, grantable))
            button.secondary type="submit" name="op" value="role" { "Change" }
            button.danger type="submit" name="op" value="remove"
                aria-label={ "Remove " (m.email) } { "Remove" }
        }
    }
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
    members_view(&ctx, None).await
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
    members_view(&ctx, Some(note)).await
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
    members_view(&ctx, Some(note)).await
}
