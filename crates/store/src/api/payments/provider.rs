//! What creditgate keeps of the provider's side: an org's customer and saved card, the
//! provider events already handled (webhooks are delivered at least once), and the sandbox
//! provider's own record of its charges.

use creditgate_domain::{Amount, Timestamp};

use crate::codec::Columns;
use crate::sql::{values, Row};
use crate::{Store, StoreError};

/// An org's customer at the provider and its saved card.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PaymentProfile {
    /// The provider's customer, if one was made.
    pub customer_id: Option<String>,
    /// The saved card.
    pub payment_method: Option<String>,
    /// How the card is shown ("visa •••• 4242").
    pub card_label: Option<String>,
}

/// The sandbox provider's record of a charge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxCharge {
    /// `ch_sandbox_…`.
    pub id: String,
    /// The payment it charges.
    pub payment_id: String,
    /// How much.
    pub amount: Amount,
    /// `succeeded`, `failed` or `requires_action`.
    pub status: String,
    /// The test card.
    pub payment_method: String,
    /// When.
    pub created_at: Timestamp,
}

impl Store {
    /// An org's customer and saved card.
    pub async fn payment_profile(&self, org_id: &str) -> Result<PaymentProfile, StoreError> {
        let rows = self
            .db()
            .query(
                "SELECT customer_id, payment_method, card_label FROM payment_profiles WHERE org_id = $1",
                &values![org_id],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(PaymentProfile::default());
        };
        Ok(PaymentProfile {
            customer_id: row.opt_text(0)?,
            payment_method: row.opt_text(1)?,
            card_label: row.opt_text(2)?,
        })
    }

    /// Records an org's customer at the provider (kept if one is already recorded); answers
    /// the one recorded.
    pub async fn set_payment_customer(
        &self,
        org_id: &str,
        customer_id: &str,
        now: Timestamp,
    ) -> Result<String, StoreError> {
        let mut tx = self.db().transaction().await?;
        tx.execute(
            "INSERT INTO payment_profiles (org_id, customer_id, payment_method, card_label, updated_at)
             VALUES ($1, $2, NULL, NULL, $3)
             ON CONFLICT (org_id) DO UPDATE SET customer_id = COALESCE(payment_profiles.customer_id, excluded.customer_id)",
            &values![org_id, customer_id, now.unix_ms()],
        )
        .await?;
        let rows = tx
            .query(
                "SELECT customer_id FROM payment_profiles WHERE org_id = $1",
                &values![org_id],
            )
            .await?;
        tx.commit().await?;
        rows.first()
            .map(|row| row.text(0))
            .transpose()?
            .ok_or_else(|| StoreError::Corrupt("payment profile vanished".into()))
    }

    /// Saves an org's card (the one auto-reload and saved-card top-ups charge).
    pub async fn set_payment_method(
        &self,
        org_id: &str,
        payment_method: &str,
        card_label: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.db()
            .execute(
                "INSERT INTO payment_profiles (org_id, customer_id, payment_method, card_label, updated_at)
                 VALUES ($1, NULL, $2, $3, $4)
                 ON CONFLICT (org_id) DO UPDATE SET payment_method = excluded.payment_method,
                 card_label = excluded.card_label, updated_at = excluded.updated_at",
                &values![org_id, payment_method, card_label, now.unix_ms()],
            )
            .await?;
        Ok(())
    }

    /// Marks a provider event handled; answers whether it is new (a repeat answers `false`).
    pub async fn record_provider_event(
        &self,
        id: &str,
        kind: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let inserted = self
            .db()
            .execute(
                "INSERT INTO provider_events (id, type, received_at) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO NOTHING",
                &values![id, kind, now.unix_ms()],
            )
            .await?;
        Ok(inserted == 1)
    }

    /// Forgets a provider event (its handling failed; the provider's retry handles it anew).
    pub async fn forget_provider_event(&self, id: &str) -> Result<(), StoreError> {
        self.db()
            .execute("DELETE FROM provider_events WHERE id = $1", &values![id])
            .await?;
        Ok(())
    }

    /// The sandbox's charge of a payment, if it made one: (id, status, amount).
    pub async fn sandbox_charge(
        &self,
        payment_id: &str,
    ) -> Result<Option<SandboxCharge>, StoreError> {
        let rows = self
            .db()
            .query(
                "SELECT id, payment_id, amount, status, payment_method, created_at
                 FROM sandbox_charges WHERE payment_id = $1",
                &values![payment_id],
            )
            .await?;
        rows.first().map(sandbox_row).transpose()
    }

    /// Records the sandbox's charge of a payment once; answers the one recorded (a repeat
    /// answers the first: the sandbox's idempotency).
    pub async fn sandbox_charge_once(
        &self,
        charge: &SandboxCharge,
    ) -> Result<SandboxCharge, StoreError> {
        self.db()
            .execute(
                "INSERT INTO sandbox_charges (id, payment_id, amount, status, payment_method, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (payment_id) DO NOTHING",
                &values![
                    charge.id.as_str(),
                    charge.payment_id.as_str(),
                    charge.amount.micros(),
                    charge.status.as_str(),
                    charge.payment_method.as_str(),
                    charge.created_at.unix_ms()
                ],
            )
            .await?;
        self.sandbox_charge(&charge.payment_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("sandbox charge vanished".into()))
    }

    /// Changes a sandbox charge's status (a confirmed authentication).
    pub async fn set_sandbox_charge_status(
        &self,
        payment_id: &str,
        status: &str,
    ) -> Result<(), StoreError> {
        self.db()
            .execute(
                "UPDATE sandbox_charges SET status = $2 WHERE payment_id = $1",
                &values![payment_id, status],
            )
            .await?;
        Ok(())
    }
}

pub(super) fn sandbox_row(row: &Row) -> Result<SandboxCharge, StoreError> {
    Ok(SandboxCharge {
        id: row.text(0)?,
        payment_id: row.text(1)?,
        amount: row.amount(2)?,
        status: row.text(3)?,
        payment_method: row.text(4)?,
        created_at: row.time(5)?,
    })
}
