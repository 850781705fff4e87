//! What both backends share about rows: the column lists, one decoder per record (over the
//! [`Columns`] of either driver's row), enums as their snake_case names, and a hold's
//! allocations as `"micros grant_id"` lines.

use creditgate_domain::ledger::{
    Account, AccountId, AccountKind, Allocation, Grant, GrantId, GrantTerms, Hold, HoldId,
    HoldState, Origin, Transfer, TransferId, TransferKind,
};
use creditgate_domain::{Amount, Timestamp};

use crate::StoreError;

/// The columns each backend selects, in the order its row readers expect.
pub const ACCOUNT_COLUMNS: &str = "id, kind, floor, posted, reserved, unbacked, overspend";
/// The grant columns, in the order [`grant`] reads them.
pub const GRANT_COLUMNS: &str =
    "id, account_id, origin, priority, expires_at, amount, consumed, reserved, expired, expired_at, created_at";
/// The hold columns, in the order [`hold`] reads them.
pub const HOLD_COLUMNS: &str =
    "id, debit_account_id, credit_account_id, amount, reference, ttl_ms, expires_at, state, \
     allocations, unbacked, closed_by, settled_amount, created_at, closed_at";
/// The transfer columns, in the order [`transfer`] reads them.
pub const TRANSFER_COLUMNS: &str =
    "id, debit_account_id, credit_account_id, amount, kind, reference, hold_id, grant_id, \
     debit_balance_after, credit_balance_after, overspend, created_at";

/// A result row of either backend, read by column index.
pub trait Columns {
    /// A non-null text column.
    fn text(&self, index: usize) -> Result<String, StoreError>;
    /// A nullable text column.
    fn opt_text(&self, index: usize) -> Result<Option<String>, StoreError>;
    /// A non-null integer column.
    fn int(&self, index: usize) -> Result<i64, StoreError>;
    /// A nullable integer column.
    fn opt_int(&self, index: usize) -> Result<Option<i64>, StoreError>;

    /// An amount stored as integer micro-units.
    fn amount(&self, index: usize) -> Result<Amount, StoreError> {
        self.int(index).map(Amount::from_micros)
    }

    /// A nullable amount stored as integer micro-units.
    fn opt_amount(&self, index: usize) -> Result<Option<Amount>, StoreError> {
        Ok(self.opt_int(index)?.map(Amount::from_micros))
    }

    /// A timestamp stored as integer unix ms.
    fn time(&self, index: usize) -> Result<Timestamp, StoreError> {
        self.int(index).map(Timestamp::from_unix_ms)
    }

    /// A nullable timestamp stored as integer unix ms.
    fn opt_time(&self, index: usize) -> Result<Option<Timestamp>, StoreError> {
        Ok(self.opt_int(index)?.map(Timestamp::from_unix_ms))
    }
}

impl Columns for rusqlite::Row<'_> {
    fn text(&self, index: usize) -> Result<String, StoreError> {
        Ok(self.get(index)?)
    }

    fn opt_text(&self, index: usize) -> Result<Option<String>, StoreError> {
        Ok(self.get(index)?)
    }

    fn int(&self, index: usize) -> Result<i64, StoreError> {
        Ok(self.get(index)?)
    }

    fn opt_int(&self, index: usize) -> Result<Option<i64>, StoreError> {
        Ok(self.get(index)?)
    }
}

impl Columns for tokio_postgres::Row {
    fn text(&self, index: usize) -> Result<String, StoreError> {
        Ok(self.try_get(index)?)
    }

    fn opt_text(&self, index: usize) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(index)?)
    }

    fn int(&self, index: usize) -> Result<i64, StoreError> {
        Ok(self.try_get(index)?)
    }

    fn opt_int(&self, index: usize) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get(index)?)
    }
}

/// An account from a row of [`ACCOUNT_COLUMNS`].
pub fn account(row: &impl Columns) -> Result<Account, StoreError> {
    Ok(Account {
        id: AccountId::new(row.text(0)?),
        kind: account_kind(&row.text(1)?)?,
        floor: row.opt_amount(2)?,
        posted: row.amount(3)?,
        reserved: row.amount(4)?,
        unbacked: row.amount(5)?,
        overspend: row.amount(6)?,
    })
}

/// A grant from a row of [`GRANT_COLUMNS`].
pub fn grant(row: &impl Columns) -> Result<Grant, StoreError> {
    Ok(Grant {
        id: GrantId::new(row.text(0)?),
        account_id: AccountId::new(row.text(1)?),
        terms: GrantTerms {
            origin: origin(&row.text(2)?)?,
            priority: priority(row.int(3)?)?,
            expires_at: row.opt_time(4)?,
        },
        amount: row.amount(5)?,
        consumed: row.amount(6)?,
        reserved: row.amount(7)?,
        expired: row.amount(8)?,
        expired_at: row.opt_time(9)?,
        created_at: row.time(10)?,
    })
}

/// A hold from a row of [`HOLD_COLUMNS`].
pub fn hold(row: &impl Columns) -> Result<Hold, StoreError> {
    Ok(Hold {
        id: HoldId::new(row.text(0)?),
        debit_account_id: AccountId::new(row.text(1)?),
        credit_account_id: AccountId::new(row.text(2)?),
        amount: row.amount(3)?,
        reference: row.text(4)?,
        ttl_ms: row.int(5)?,
        expires_at: row.time(6)?,
        state: hold_state(&row.text(7)?)?,
        allocations: decode_allocations(&row.text(8)?)?,
        unbacked: row.amount(9)?,
        closed_by: row.opt_text(10)?.map(TransferId::new),
        settled_amount: row.opt_amount(11)?,
        created_at: row.time(12)?,
        closed_at: row.opt_time(13)?,
    })
}

/// A transfer from a row of [`TRANSFER_COLUMNS`].
pub fn transfer(row: &impl Columns) -> Result<Transfer, StoreError> {
    Ok(Transfer {
        id: TransferId::new(row.text(0)?),
        debit_account_id: AccountId::new(row.text(1)?),
        credit_account_id: AccountId::new(row.text(2)?),
        amount: row.amount(3)?,
        kind: transfer_kind(&row.text(4)?)?,
        reference: row.text(5)?,
        hold_id: row.opt_text(6)?.map(HoldId::new),
        grant_id: row.opt_text(7)?.map(GrantId::new),
        debit_balance_after: row.amount(8)?,
        credit_balance_after: row.amount(9)?,
        overspend: row.amount(10)?,
        created_at: row.time(11)?,
    })
}

/// Decodes a stored account kind; an unknown name is [`StoreError::Corrupt`].
pub fn account_kind(text: &str) -> Result<AccountKind, StoreError> {
    AccountKind::parse(text).ok_or_else(|| corrupt("account kind", text))
}

/// Decodes a stored transfer kind; an unknown name is [`StoreError::Corrupt`].
pub fn transfer_kind(text: &str) -> Result<TransferKind, StoreError> {
    TransferKind::parse(text).ok_or_else(|| corrupt("transfer kind", text))
}

/// Decodes a stored hold state; an unknown name is [`StoreError::Corrupt`].
pub fn hold_state(text: &str) -> Result<HoldState, StoreError> {
    HoldState::parse(text).ok_or_else(|| corrupt("hold state", text))
}

/// Decodes a stored grant origin; an unknown name is [`StoreError::Corrupt`].
pub fn origin(text: &str) -> Result<Origin, StoreError> {
    Origin::parse(text).ok_or_else(|| corrupt("grant origin", text))
}

/// Decodes a stored grant priority; a value outside `u32` is [`StoreError::Corrupt`].
pub fn priority(value: i64) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| corrupt("grant priority", &value.to_string()))
}

/// A hold's allocations as `"micros grant_id"` lines (ids hold no spaces or newlines).
pub fn encode_allocations(allocations: &[Allocation]) -> String {
    let mut text = String::new();
    for allocation in allocations {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&allocation.amount.micros().to_string());
        text.push(' ');
        text.push_str(allocation.grant_id.as_str());
    }
    text
}

/// Reads what [`encode_allocations`] wrote; a malformed line is [`StoreError::Corrupt`].
pub fn decode_allocations(text: &str) -> Result<Vec<Allocation>, StoreError> {
    text.lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (micros, grant_id) = line
                .split_once(' ')
                .ok_or_else(|| corrupt("allocation", line))?;
            let micros: i64 = micros
                .parse()
                .map_err(|_| corrupt("allocation amount", line))?;
            Ok(Allocation {
                grant_id: GrantId::new(grant_id),
                amount: Amount::from_micros(micros),
            })
        })
        .collect()
}

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("unknown {what}: {value:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_round_trip() {
        let allocations = vec![
            Allocation {
                grant_id: GrantId::new("txn_a b"),
                amount: Amount::from_micros(5),
            },
            Allocation {
                grant_id: GrantId::new("txn_c"),
                amount: Amount::from_micros(1_000_000),
            },
        ];
        let text = encode_allocations(&allocations);
        assert_eq!(decode_allocations(&text).unwrap(), allocations);
        assert!(decode_allocations("").unwrap().is_empty());
        assert!(decode_allocations("x y").is_err());
    }
}
