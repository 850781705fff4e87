//! Members, their sign-in links and their sessions.
//!
//! Membership changes are decided by `creditgate_domain::member::check_change` inside the
//! transaction that makes them, under the org row's lock (PostgreSQL; SQLite's write
//! transaction locks the database), so two concurrent changes cannot both remove the last
//! owner. A sign-in link is used up by one guarded UPDATE, so it works once however many
//! requests race with it. An invitation or a sign-in link writes its email to the outbox in
//! the same transaction.

use creditgate_domain::member::{self, Change, ChangeError, Lifetime, Role};
use creditgate_domain::Timestamp;

use crate::codec::Columns;
use crate::sql::{values, Row, Tx};
use crate::{Store, StoreError};

/// A member of an org.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// `mem_…`.
    pub id: String,
    /// Its org.
    pub org_id: String,
    /// Its email address, normalized.
    pub email: String,
    /// Its name (may be empty).
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Who added it: a member's id or `operator`.
    pub invited_by: String,
    /// When it was added.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// When it last signed in.
    pub last_sign_in_at: Option<Timestamp>,
}

/// A sign-in link (or an invitation's) to write with its email.
#[derive(Clone, Debug)]
pub struct NewLink {
    /// SHA-256 of the link's secret, hex.
    pub token_hash: String,
    /// The secret itself, kept on the notice until the email is sent.
    pub secret: String,
    /// When it stops working.
    pub expires_at: Timestamp,
    /// The notice's id (`ntc_…`).
    pub notice_id: String,
    /// The notice's kind (`member.sign_in`, `member.invited`).
    pub notice_kind: &'static str,
}

/// A billing-page session with its member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// SHA-256 of the cookie's secret, hex.
    pub id_hash: String,
    /// The CSRF token of its forms.
    pub csrf_token: String,
    /// Its lifetime.
    pub lifetime: Lifetime,
    /// Whose it is.
    pub member: Member,
}

/// What adding a member came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Added {
    /// Added (and invited, when a link was given).
    Added(Member),
    /// The org has a member with that email already.
    EmailTaken,
    /// The change is refused.
    Refused(ChangeError),
}

/// What using a sign-in link came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkUse {
    /// The link was good: it is used up now, and this session is open.
    SignedIn(Member),
    /// No such link, or its member is gone.
    NotFound,
    /// Used before.
    Used,
    /// Its time is up.
    Expired,
}

const MEMBER_COLUMNS: &str =
    "id, org_id, email, name, role, invited_by, created_at, updated_at, last_sign_in_at";
const MEMBER_COLUMNS_M: &str = "m.id, m.org_id, m.email, m.name, m.role, m.invited_by, \
     m.created_at, m.updated_at, m.last_sign_in_at";

fn member_row(row: &Row) -> Result<Member, StoreError> {
    let role = row.text(4)?;
    Ok(Member {
        id: row.text(0)?,
        org_id: row.text(1)?,
        email: row.text(2)?,
        name: row.text(3)?,
        role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("role {role}")))?,
        invited_by: row.text(5)?,
        created_at: row.time(6)?,
        updated_at: row.time(7)?,
        last_sign_in_at: row.opt_time(8)?,
    })
}

async fn lock_org(tx: &mut Tx<'_>, org_id: &str) -> Result<bool, StoreError> {
    let sql = format!("SELECT id FROM orgs WHERE id = $1{}", tx.for_update());
    Ok(!tx.query(&sql, &values![org_id]).await?.is_empty())
}

async fn owners(tx: &mut Tx<'_>, org_id: &str) -> Result<usize, StoreError> {
    let rows = tx
        .query(
            "SELECT COUNT(*) FROM members WHERE org_id = $1 AND role = 'owner'",
            &values![org_id],
        )
        .await?;
    let count = rows.first().map(|row| row.int(0)).transpose()?.unwrap_or(0);
    Ok(usize::try_from(count).unwrap_or(0))
}

async fn member_in(tx: &mut Tx<'_>, org_id: &str, id: &str) -> Result<Option<Member>, StoreError> {
    let rows = tx
        .query(
            &format!("SELECT {MEMBER_COLUMNS} FROM members WHERE id = $1 AND org_id = $2"),
            &values![id, org_id],
        )
        .await?;
    rows.first().map(member_row).transpose()
}

async fn insert_link(
    tx: &mut Tx<'_>,
    member: &Member,
    link: &NewLink,
    now: Timestamp,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO sign_in_links (token_hash, member_id, created_at, expires_at, used_at)
         VALUES ($1, $2, $3, $4, NULL)",
        &values![
            link.token_hash.as_str(),
            member.id.as_str(),
            now.unix_ms(),
            link.expires_at.unix_ms()
        ],
    )
    .await?;
    tx.execute(
        "INSERT INTO notices (id, kind, org_id, available, level, state, attempts,
         next_attempt_at, last_error, created_at, sent_at, amount, transfer_id, payment_id,
         reason, retry_at, member_id, secret)
         VALUES ($1, $2, $3, 0, 0, 'pending', 0, $4, NULL, $4, NULL, NULL, NULL, NULL, NULL, $5, $6, $7)",
        &values![
            link.notice_id.as_str(),
            link.notice_kind,
            member.org_id.as_str(),
            now.unix_ms(),
            link.expires_at.unix_ms(),
            member.id.as_str(),
            link.secret.as_str()
        ],
    )
    .await?;
    Ok(())
}

impl Store {
    /// Adds `member` to its org, checked by `check_change(actor, Add(role))`, and when `link`
    /// is given writes its invitation (link and email) in the same transaction.
    pub async fn add_member(
        &self,
        member: &Member,
        actor: Option<Role>,
        link: Option<&NewLink>,
        now: Timestamp,
    ) -> Result<Added, StoreError> {
        let mut tx = self.db().transaction().await?;
        if !lock_org(&mut tx, &member.org_id).await? {
            return Err(StoreError::Corrupt(format!(
                "org {} is gone",
                member.org_id
            )));
        }
        let owners = owners(&mut tx, &member.org_id).await?;
        if let Err(error) = member::check_change(actor, Change::Add(member.role), owners) {
            return Ok(Added::Refused(error));
        }
        let taken = tx
            .query(
                "SELECT id FROM members WHERE org_id = $1 AND email = $2",
                &values![member.org_id.as_str(), member.email.as_str()],
            )
            .await?;
        if !taken.is_empty() {
            return Ok(Added::EmailTaken);
        }
        tx.execute(
            &format!("INSERT INTO members ({MEMBER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $7, NULL)"),
            &values![
                member.id.as_str(),
                member.org_id.as_str(),
                member.email.as_str(),
                member.name.as_str(),
                member.role.as_str(),
                member.invited_by.as_str(),
                now.unix_ms()
            ],
        )
        .await?;
        if let Some(link) = link {
            insert_link(&mut tx, member, link, now).await?;
        }
        tx.commit().await?;
        Ok(Added::Added(Member {
            created_at: now,
            updated_at: now,
            last_sign_in_at: None,
            ..member.clone()
        }))
    }

    /// The member `id` of org `org_id`.
    pub async fn member(&self, org_id: &str, id: &str) -> Result<Option<Member>, StoreError> {
        let rows = self
            .db()
            .query(
                &format!("SELECT {MEMBER_COLUMNS} FROM members WHERE id = $1 AND org_id = $2"),
                &values![id, org_id],
            )
            .await?;
        rows.first().map(member_row).transpose()
    }

    /// An org's members, owners first, then by email.
    pub async fn members(&self, org_id: &str) -> Result<Vec<Member>, StoreError> {
        let rows = self
            .db()
            .query(
                &format!(
                    "SELECT {MEMBER_COLUMNS} FROM members WHERE org_id = $1
                     ORDER BY CASE role WHEN 'owner' THEN 0 WHEN 'admin' THEN 1 WHEN 'billing' THEN 2 ELSE 3 END, email"
                ),
                &values![org_id],
            )
            .await?;
        rows.iter().map(member_row).collect()
    }

    /// Every membership of an email address (normalized), oldest first.
    pub async fn members_by_email(&self, email: &str) -> Result<Vec<Member>, StoreError> {
        let rows = self
            .db()
            .query(
                &format!(
                    "SELECT {MEMBER_COLUMNS} FROM members WHERE email = $1 ORDER BY created_at, id"
                ),
                &values![email],
            )
            .await?;
        rows.iter().map(member_row).collect()
    }

    /// Changes a member's role (and name, when given), checked by `check_change(actor,
    /// SetRole)`. `Ok(None)`: no such member in the org.
    pub async fn update_member(
        &self,
        org_id: &str,
        id: &str,
        role: Option<Role>,
        name: Option<&str>,
        actor: Option<Role>,
        now: Timestamp,
    ) -> Result<Option<Result<Member, ChangeError>>, StoreError> {
        let mut tx = self.db().transaction().await?;
        lock_org(&mut tx, org_id).await?;
        let Some(current) = member_in(&mut tx, org_id, id).await? else {
            return Ok(None);
        };
        let role = role.unwrap_or(current.role);
        if role != current.role {
            let owners = owners(&mut tx, org_id).await?;
            let change = Change::SetRole {
                from: current.role,
                to: role,
            };
            if let Err(error) = member::check_change(actor, change, owners) {
                return Ok(Some(Err(error)));
            }
        } else if let Some(actor) = actor {
            if !member::allows(actor, member::Action::ManageMembers) {
                return Ok(Some(Err(ChangeError::NotAllowed)));
            }
        }
        let name = name.unwrap_or(&current.name).to_owned();
        tx.execute(
            "UPDATE members SET role = $3, name = $4, updated_at = $5 WHERE id = $1 AND org_id = $2",
            &values![id, org_id, role.as_str(), name.as_str(), now.unix_ms()],
        )
        .await?;
        tx.commit().await?;
        Ok(Some(Ok(Member {
            role,
            name,
            updated_at: now,
            ..current
        })))
    }

    /// Removes a member, checked by `check_change(actor, Remove)`, ending its sessions and
    /// links in the same transaction. `Ok(None)`: no such member in the org.
    pub async fn remove_member(
        &self,
        org_id: &str,
        id: &str,
        actor: Option<Role>,
        now: Timestamp,
    ) -> Result<Option<Result<Member, ChangeError>>, StoreError> {
        let mut tx = self.db().transaction().await?;
        lock_org(&mut tx, org_id).await?;
        let Some(current) = member_in(&mut tx, org_id, id).await? else {
            return Ok(None);
        };
        let owners = owners(&mut tx, org_id).await?;
        if let Err(error) = member::check_change(actor, Change::Remove(current.role), owners) {
            return Ok(Some(Err(error)));
        }
        tx.execute("DELETE FROM sessions WHERE member_id = $1", &values![id])
            .await?;
        tx.execute(
            "DELETE FROM sign_in_links WHERE member_id = $1",
            &values![id],
        )
        .await?;
        tx.execute(
            "UPDATE notices SET secret = NULL WHERE member_id = $1",
            &values![id],
        )
        .await?;
        tx.execute("DELETE FROM members WHERE id = $1", &values![id])
            .await?;
        tx.commit().await?;
        tracing::debug!(member = %id, at = now.unix_ms(), "member removed");
        Ok(Some(Ok(current)))
    }

    /// Writes a sign-in link for `member` and its email, in one transaction.
    pub async fn create_sign_in_link(
        &self,
        member: &Member,
        link: &NewLink,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.db().transaction().await?;
        insert_link(&mut tx, member, link, now).await?;
        tx.commit().await
    }

    /// Sign-in links of `member_id` neither used nor expired at `now`.
    pub async fn open_sign_in_links(
        &self,
        member_id: &str,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let rows = self
            .db()
            .query(
                "SELECT COUNT(*) FROM sign_in_links WHERE member_id = $1 AND used_at IS NULL AND expires_at > $2",
                &values![member_id, now.unix_ms()],
            )
            .await?;
        let count = rows.first().map(|row| row.int(0)).transpose()?.unwrap_or(0);
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Uses up the link whose secret hashes to `token_hash` and opens a session for its
    /// member (`session_hash`, `csrf_token`, until `session_expires_at`), in one
    /// transaction; a second use finds it used.
    pub async fn use_sign_in_link(
        &self,
        token_hash: &str,
        session_hash: &str,
        csrf_token: &str,
        session_expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<LinkUse, StoreError> {
        let mut tx = self.db().transaction().await?;
        let rows = tx
            .query(
                &format!(
                    "SELECT l.created_at, l.expires_at, l.used_at, {MEMBER_COLUMNS_M}
                     FROM sign_in_links l JOIN members m ON m.id = l.member_id
                     WHERE l.token_hash = $1{}",
                    tx.for_update()
                ),
                &values![token_hash],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(LinkUse::NotFound);
        };
        let lifetime = Lifetime {
            created_at: row.time(0)?,
            expires_at: row.time(1)?,
            closed_at: row.opt_time(2)?,
        };
        let member = member_row(&row.skip(3))?;
        match lifetime.at(now) {
            member::Validity::Closed => return Ok(LinkUse::Used),
            member::Validity::Expired => return Ok(LinkUse::Expired),
            member::Validity::Valid => {}
        }
        let used = tx
            .execute(
                "UPDATE sign_in_links SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL",
                &values![token_hash, now.unix_ms()],
            )
            .await?;
        if used != 1 {
            return Ok(LinkUse::Used);
        }
        tx.execute(
            "INSERT INTO sessions (id_hash, member_id, csrf_token, created_at, expires_at, ended_at)
             VALUES ($1, $2, $3, $4, $5, NULL)",
            &values![
                session_hash,
                member.id.as_str(),
                csrf_token,
                now.unix_ms(),
                session_expires_at.unix_ms()
            ],
        )
        .await?;
        tx.execute(
            "UPDATE members SET last_sign_in_at = $2 WHERE id = $1",
            &values![member.id.as_str(), now.unix_ms()],
        )
        .await?;
        tx.commit().await?;
        Ok(LinkUse::SignedIn(Member {
            last_sign_in_at: Some(now),
            ..member
        }))
    }

    /// The session whose secret hashes to `id_hash`, with its member, if it is open at
    /// `now`.
    pub async fn session(
        &self,
        id_hash: &str,
        now: Timestamp,
    ) -> Result<Option<Session>, StoreError> {
        let rows = self
            .db()
            .query(
                &format!(
                    "SELECT s.id_hash, s.csrf_token, s.created_at, s.expires_at, s.ended_at, {MEMBER_COLUMNS_M}
                     FROM sessions s JOIN members m ON m.id = s.member_id WHERE s.id_hash = $1"
                ),
                &values![id_hash],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let session = Session {
            id_hash: row.text(0)?,
            csrf_token: row.text(1)?,
            lifetime: Lifetime {
                created_at: row.time(2)?,
                expires_at: row.time(3)?,
                closed_at: row.opt_time(4)?,
            },
            member: member_row(&row.skip(5))?,
        };
        Ok((session.lifetime.at(now) == member::Validity::Valid).then_some(session))
    }

    /// Ends a session (sign-out); ending it again changes nothing.
    pub async fn end_session(&self, id_hash: &str, now: Timestamp) -> Result<(), StoreError> {
        self.db()
            .execute(
                "UPDATE sessions SET ended_at = $2 WHERE id_hash = $1 AND ended_at IS NULL",
                &values![id_hash, now.unix_ms()],
            )
            .await?;
        Ok(())
    }

    /// The owners' and admins' addresses of an org: with its billing contacts, who its
    /// billing notices go to.
    pub async fn admin_emails(&self, org_id: &str) -> Result<Vec<String>, StoreError> {
        let rows = self
            .db()
            .query(
                "SELECT email FROM members WHERE org_id = $1 AND role IN ('owner', 'admin') ORDER BY email",
                &values![org_id],
            )
            .await?;
        rows.iter().map(|row| row.text(0)).collect()
    }
}
