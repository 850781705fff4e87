//! Members of an org, their roles, what each role may do, and the rules of sign-in links and
//! sessions.
//!
//! Roles, from most to least trusted: owner, admin, billing, developer. What a role may do is
//! one table, [`allows`]: every billing page and every session-authenticated API call asks it
//! on the server. Developers see usage and keys, not payment settings; billing members see
//! payments, not keys.
//!
//! Membership changes keep an org with at least one owner ([`check_change`]), and only an
//! owner makes, changes or removes an owner.

use crate::time::Timestamp;

/// A member's role in an org.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Everything, including managing owners.
    Owner,
    /// Everything but managing owners.
    Admin,
    /// Balance, payments, auto-reload, history, usage, billing settings; not keys or members.
    Billing,
    /// Balance, usage and API keys; not payments, settings or members.
    Developer,
}

impl Role {
    /// Every role, most trusted first.
    pub const ALL: [Role; 4] = [Role::Owner, Role::Admin, Role::Billing, Role::Developer];

    /// The role's stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Billing => "billing",
            Role::Developer => "developer",
        }
    }

    /// The role named `text`.
    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == text)
    }

    /// The role's name for people ("Owner").
    pub fn label(self) -> &'static str {
        match self {
            Role::Owner => "Owner",
            Role::Admin => "Admin",
            Role::Billing => "Billing",
            Role::Developer => "Developer",
        }
    }
}

/// Something a member may be allowed to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// See the balance, the access state and the runway.
    ViewBalance,
    /// See usage (chart, table, CSV).
    ViewUsage,
    /// See the ledger history and receipts.
    ViewHistory,
    /// See payments and the auto-reload settings.
    ViewPayments,
    /// Add credits (a top-up).
    AddCredits,
    /// Change auto-reload and the card on file.
    ManageAutoReload,
    /// See API keys.
    ViewKeys,
    /// Create and revoke API keys.
    ManageKeys,
    /// Change billing contacts and low-balance thresholds.
    ManageSettings,
    /// See the members.
    ViewMembers,
    /// Invite, change and remove members (owners only by owners).
    ManageMembers,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 11] = [
        Action::ViewBalance,
        Action::ViewUsage,
        Action::ViewHistory,
        Action::ViewPayments,
        Action::AddCredits,
        Action::ManageAutoReload,
        Action::ViewKeys,
        Action::ManageKeys,
        Action::ManageSettings,
        Action::ViewMembers,
        Action::ManageMembers,
    ];
}

/// Whether `role` may do `action`: the one table every check asks.
///
/// | action | owner | admin | billing | developer |
/// |---|---|---|---|---|
/// | view balance, usage | ✓ | ✓ | ✓ | ✓ |
/// | view history, payments; add credits; manage auto-reload, settings | ✓ | ✓ | ✓ | |
/// | view and manage keys | ✓ | ✓ | | ✓ |
/// | view members | ✓ | ✓ | ✓ | ✓ |
/// | manage members | ✓ | ✓ | | |
pub fn allows(role: Role, action: Action) -> bool {
    use Action::*;
    match action {
        ViewBalance | ViewUsage | ViewMembers => true,
        ViewHistory | ViewPayments | AddCredits | ManageAutoReload | ManageSettings => {
            matches!(role, Role::Owner | Role::Admin | Role::Billing)
        }
        ViewKeys | ManageKeys => matches!(role, Role::Owner | Role::Admin | Role::Developer),
        ManageMembers => matches!(role, Role::Owner | Role::Admin),
    }
}

/// Whether an org's API key may do `action` on its own org: read its balance, usage,
/// history and payments. Everything else needs a member's role or the operator.
pub fn key_allows(action: Action) -> bool {
    use Action::*;
    matches!(action, ViewBalance | ViewUsage | ViewHistory | ViewPayments)
}

/// A change to an org's membership.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// A new member with this role.
    Add(Role),
    /// A member's role becomes this one.
    SetRole {
        /// The role it has now.
        from: Role,
        /// The role it gets.
        to: Role,
    },
    /// A member with this role leaves.
    Remove(Role),
}

/// Why a membership change is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// The acting member's role may not manage members.
    #[error("Your role may not manage members.")]
    NotAllowed,
    /// Only an owner makes, changes or removes an owner.
    #[error("Only an owner can make, change or remove an owner.")]
    OwnersOnly,
    /// The change would leave the org without an owner.
    #[error("An org keeps at least one owner.")]
    LastOwner,
}

impl ChangeError {
    /// The stable error code.
    pub fn code(self) -> &'static str {
        match self {
            ChangeError::NotAllowed => "forbidden",
            ChangeError::OwnersOnly => "owners_only",
            ChangeError::LastOwner => "last_owner",
        }
    }
}

/// Checks a membership change by `actor` (`None`: the operator, who may do anything but
/// leave an org without owners) in an org that has `owners` owners now.
pub fn check_change(actor: Option<Role>, change: Change, owners: usize) -> Result<(), ChangeError> {
    if let Some(role) = actor {
        if !allows(role, Action::ManageMembers) {
            return Err(ChangeError::NotAllowed);
        }
        let touches_owner = match change {
            Change::Add(role) | Change::Remove(role) => role == Role::Owner,
            Change::SetRole { from, to } => from == Role::Owner || to == Role::Owner,
        };
        if touches_owner && role != Role::Owner {
            return Err(ChangeError::OwnersOnly);
        }
    }
    let loses_owner = matches!(
        change,
        Change::Remove(Role::Owner)
            | Change::SetRole {
                from: Role::Owner,
                ..
            }
    ) && !matches!(
        change,
        Change::SetRole {
            to: Role::Owner,
            ..
        }
    );
    if loses_owner && owners <= 1 {
        return Err(ChangeError::LastOwner);
    }
    Ok(())
}

/// Whether `actor` may change a member who has role `role` (its role, or remove it): only
/// owners touch owners; others need the members action. The same rule as
/// [`check_change`], for what a page offers.
pub fn may_manage(actor: Role, role: Role) -> bool {
    allows(actor, Action::ManageMembers) && (role != Role::Owner || actor == Role::Owner)
}

/// The roles `actor` may grant, in [`Role::ALL`]'s order: owners any, others all but owner
/// (none without the members action).
pub fn grantable_roles(actor: Role) -> Vec<Role> {
    Role::ALL
        .into_iter()
        .filter(|role| may_manage(actor, *role))
        .collect()
}

/// What a sign-in link or a session looks like to the rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetime {
    /// When it was made.
    pub created_at: Timestamp,
    /// When it stops working.
    pub expires_at: Timestamp,
    /// When it was used up (a link) or ended (a session), if it was.
    pub closed_at: Option<Timestamp>,
}

/// Whether a link or session works at `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validity {
    /// It works.
    Valid,
    /// It was used (a link) or ended (a session).
    Closed,
    /// Its time is up.
    Expired,
}

impl Lifetime {
    /// Its validity at `now`: closed first, then expired (at `expires_at` exactly it has
    /// expired).
    pub fn at(&self, now: Timestamp) -> Validity {
        if self.closed_at.is_some() {
            Validity::Closed
        } else if now >= self.expires_at {
            Validity::Expired
        } else {
            Validity::Valid
        }
    }
}

/// The normal form of an email address for membership (trimmed, lower-cased), or `None` if
/// it is not one: one `@`, a non-empty local part, a dotted domain, no spaces or control
/// characters, at most `len_max` bytes.
pub fn normalize_email(text: &str, len_max: usize) -> Option<String> {
    let email = text.trim().to_lowercase();
    let valid = !email.is_empty()
        && email.len() <= len_max
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.contains('@')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        });
    valid.then_some(email)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_grants_which_roles() {
        use Role::*;
        assert_eq!(grantable_roles(Owner), Role::ALL.to_vec());
        assert_eq!(grantable_roles(Admin), vec![Admin, Billing, Developer]);
        assert_eq!(grantable_roles(Billing), Vec::<Role>::new());
        assert_eq!(grantable_roles(Developer), Vec::<Role>::new());
        // What a page offers agrees with what a change is allowed.
        for actor in Role::ALL {
            for role in Role::ALL {
                let change = Change::SetRole {
                    from: role,
                    to: role,
                };
                assert_eq!(
                    may_manage(actor, role),
                    check_change(Some(actor), change, 2).is_ok(),
                    "{actor:?} on {role:?}"
                );
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("Owner"), None);
        assert_eq!(Role::parse(""), None);
    }

    #[test]
    fn the_role_table() {
        use Action::*;
        // (action, owner, admin, billing, developer)
        let table = [
            (ViewBalance, true, true, true, true),
            (ViewUsage, true, true, true, true),
            (ViewHistory, true, true, true, false),
            (ViewPayments, true, true, true, false),
            (AddCredits, true, true, true, false),
            (ManageAutoReload, true, true, true, false),
            (ViewKeys, true, true, false, true),
            (ManageKeys, true, true, false, true),
            (ManageSettings, true, true, true, false),
            (ViewMembers, true, true, true, true),
            (ManageMembers, true, true, false, false),
        ];
        assert_eq!(table.len(), Action::ALL.len());
        for (action, owner, admin, billing, developer) in table {
            for (role, expected) in [
                (Role::Owner, owner),
                (Role::Admin, admin),
                (Role::Billing, billing),
                (Role::Developer, developer),
            ] {
                assert_eq!(allows(role, action), expected, "{role:?} {action:?}");
            }
        }
    }

    #[test]
    fn membership_changes() {
        use Change::*;
        use ChangeError::*;
        use Role::*;
        type Case = (Option<Role>, Change, usize, Result<(), ChangeError>);
        let cases: [Case; 14] = [
            (Some(Owner), Add(Owner), 1, Ok(())),
            (Some(Admin), Add(Developer), 1, Ok(())),
            (Some(Admin), Add(Owner), 1, Err(OwnersOnly)),
            (Some(Billing), Add(Developer), 1, Err(NotAllowed)),
            (Some(Developer), Remove(Developer), 1, Err(NotAllowed)),
            (Some(Owner), Remove(Owner), 1, Err(LastOwner)),
            (Some(Owner), Remove(Owner), 2, Ok(())),
            (Some(Admin), Remove(Owner), 2, Err(OwnersOnly)),
            (
                Some(Owner),
                SetRole {
                    from: Owner,
                    to: Admin,
                },
                1,
                Err(LastOwner),
            ),
            (
                Some(Owner),
                SetRole {
                    from: Owner,
                    to: Owner,
                },
                1,
                Ok(()),
            ),
            (
                Some(Admin),
                SetRole {
                    from: Billing,
                    to: Owner,
                },
                1,
                Err(OwnersOnly),
            ),
            (
                Some(Admin),
                SetRole {
                    from: Billing,
                    to: Developer,
                },
                1,
                Ok(()),
            ),
            (None, Remove(Owner), 1, Err(LastOwner)),
            (None, Add(Owner), 0, Ok(())),
        ];
        for (actor, change, owners, expected) in cases {
            assert_eq!(
                check_change(actor, change, owners),
                expected,
                "{actor:?} {change:?} owners={owners}"
            );
        }
    }

    #[test]
    fn lifetimes() {
        let at = Timestamp::from_unix_ms;
        let open = Lifetime {
            created_at: at(1_000),
            expires_at: at(2_000),
            closed_at: None,
        };
        assert_eq!(open.at(at(1_000)), Validity::Valid);
        assert_eq!(open.at(at(1_999)), Validity::Valid);
        assert_eq!(open.at(at(2_000)), Validity::Expired);
        let closed = Lifetime {
            closed_at: Some(at(1_500)),
            ..open
        };
        assert_eq!(closed.at(at(1_600)), Validity::Closed);
        assert_eq!(closed.at(at(9_000)), Validity::Closed);
    }

    #[test]
    fn emails() {
        let cases = [
            ("Ada@Example.com", Some("ada@example.com")),
            ("  ada@example.com ", Some("ada@example.com")),
            ("ada@example", None),
            ("@example.com", None),
            ("ada@@example.com", None),
            ("a da@example.com", None),
            ("ada@.example.com", None),
            ("ada@example.com.", None),
            ("", None),
        ];
        for (text, expected) in cases {
            assert_eq!(normalize_email(text, 254).as_deref(), expected, "{text:?}");
        }
        assert_eq!(normalize_email("a@b.co", 5), None);
    }
}
