//! Column encodings shared by both backends: enums as their snake_case names, a hold's
//! allocations as `"micros grant_id"` lines.

use creditgate_domain::ledger::{
    AccountKind, Allocation, GrantId, HoldState, Origin, TransferKind,
};
use creditgate_domain::Amount;

use crate::StoreError;

pub fn account_kind(text: &str) -> Result<AccountKind, StoreError> {
    AccountKind::parse(text).ok_or_else(|| corrupt("account kind", text))
}

pub fn transfer_kind(text: &str) -> Result<TransferKind, StoreError> {
    TransferKind::parse(text).ok_or_else(|| corrupt("transfer kind", text))
}

pub fn hold_state(text: &str) -> Result<HoldState, StoreError> {
    HoldState::parse(text).ok_or_else(|| corrupt("hold state", text))
}

pub fn origin(text: &str) -> Result<Origin, StoreError> {
    Origin::parse(text).ok_or_else(|| corrupt("grant origin", text))
}

pub fn priority(value: i64) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| corrupt("grant priority", &value.to_string()))
}

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
