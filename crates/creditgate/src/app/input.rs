//! The checks every operation's input shares: ids, free text, and the ledger's refusals as
//! errors naming the field.

use creditgate_domain::ledger::Rejection;
use creditgate_domain::rate::RateLimits;

use super::error::ApiError;

/// Validates a path id: a malformed one is a 400 naming it, so it never reaches a query.
pub fn path_id(param: &str, prefix: &str, id: &str) -> Result<(), ApiError> {
    if crate::ids::is_valid(prefix, id) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            param,
            "invalid_id",
            format!("{param} must look like {prefix}_…."),
        ))
    }
}

/// A ledger refusal as an API error, for the refusals the API's own checks do not catch first.
pub fn rejection(rejection: Rejection, param: &str) -> ApiError {
    match rejection {
        Rejection::ExistsWithDifferentFields => ApiError::conflict(
            "idempotency_conflict",
            "This id was used before with different parameters.",
        ),
        Rejection::HoldNotFound => ApiError::not_found("hold_not_found", "No such hold."),
        Rejection::HoldAlreadyClosed => ApiError::conflict(
            "hold_already_closed",
            "The hold is already settled, voided or expired.",
        ),
        Rejection::HoldExpired => ApiError::conflict("hold_expired", "The hold has expired."),
        Rejection::AccountNotFound
        | Rejection::DebitAccountNotFound
        | Rejection::CreditAccountNotFound => ApiError::not_found("org_not_found", "No such org."),
        other => ApiError::invalid(param, other.code(), other.to_string()),
    }
}

/// Checks free text: length and no control characters.
pub fn text(param: &str, value: &str, len_min: usize, len_max: usize) -> Result<(), ApiError> {
    let len = value.chars().count();
    if len < len_min || len > len_max {
        return Err(ApiError::invalid(
            param,
            "parameter_invalid",
            format!("{param} must be {len_min} to {len_max} characters."),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            param,
            "parameter_invalid",
            format!("{param} may not contain control characters."),
        ));
    }
    Ok(())
}

/// Checks rate limits: each 1 to `rate::PER_MINUTE_MAX`, or absent.
pub fn check_rate_limits(limits: &RateLimits) -> Result<(), ApiError> {
    match limits.invalid_field() {
        None => Ok(()),
        Some(field) => Err(ApiError::invalid(
            format!("rate_limits.{field}"),
            "parameter_invalid",
            format!(
                "rate_limits.{field} must be a whole number from 1 to {}, or null.",
                creditgate_domain::rate::PER_MINUTE_MAX
            ),
        )),
    }
}
