//! Settings every node of one database must agree on (see migration 0012).

use creditgate_domain::Timestamp;

use crate::codec::Columns;
use crate::sql::values;
use crate::{Store, StoreError};

impl Store {
    /// Records `value` under `name` unless a value is recorded already, and answers the one
    /// recorded: the first node's, whichever node asks (a race between two first nodes
    /// records one of the two, and both read it).
    pub async fn setting_once(
        &self,
        name: &str,
        value: &str,
        now: Timestamp,
    ) -> Result<String, StoreError> {
        self.db()
            .execute(
                "INSERT INTO settings (name, value, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO NOTHING",
                &values![name, value, now.unix_ms()],
            )
            .await?;
        let rows = self
            .db()
            .query("SELECT value FROM settings WHERE name = $1", &values![name])
            .await?;
        rows.first()
            .map(|row| row.text(0))
            .transpose()?
            .ok_or_else(|| StoreError::Corrupt(format!("setting {name} vanished")))
    }
}
