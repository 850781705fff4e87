//! Money: [`Amount`] in integer micro-units (1e-6 of the currency unit).
//!
//! Why integers: every figure the ledger stores must be exact and every sum must be
//! checkable, so there is no float anywhere on the money path (`clippy::float_arithmetic`
//! is denied workspace-wide). Arithmetic is checked; an overflow is a named error, never a
//! wrap. Decimal strings ("12.50", "0.000375") are the only text form: [`Amount::parse`]
//! is strict, [`std::fmt::Display`] prints at least two decimals and at most six.

use std::fmt;
use std::str::FromStr;

/// Micro-units in one currency unit.
pub const MICROS_PER_UNIT: i64 = 1_000_000;
/// Longest decimal string [`Amount::parse`] looks at; anything longer is refused before parsing.
pub const AMOUNT_TEXT_LEN_MAX: usize = 32;

/// An exact amount of money in micro-units. The field is private so that every amount
/// is built through a constructor that states its unit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(i64);

/// Why a decimal string is not an amount.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseAmountError {
    #[error("amount is empty")]
    /// The string is empty.
    Empty,
    #[error("amount is longer than {AMOUNT_TEXT_LEN_MAX} characters")]
    /// The string is longer than [`AMOUNT_TEXT_LEN_MAX`].
    TooLong,
    #[error("amount has leading or trailing whitespace")]
    /// The string starts or ends with whitespace.
    Padded,
    #[error("amount may not carry a sign here")]
    /// A `+`, or a `-` where only non-negative amounts are accepted.
    SignNotAllowed,
    #[error("amount may not use an exponent")]
    /// The string uses an exponent (`1e3`).
    Exponent,
    #[error("amount has more than 6 decimals")]
    /// More than six decimals: finer than a micro-unit.
    TooManyDecimals,
    #[error("amount must have digits before and after the decimal point")]
    /// No digits before or after the decimal point (`.5`, `5.`).
    MissingDigits,
    #[error("amount contains a character that is not a digit")]
    /// A character other than a digit, one `.` and a leading `-`.
    InvalidCharacter,
    #[error("amount is too large")]
    /// The value does not fit an `i64` of micro-units.
    Overflow,
}

/// Whether a leading `-` is accepted by [`Amount::parse_with`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sign {
    /// Only amounts ≥ 0, written without any sign.
    NonNegative,
    /// An optional leading `-` (never `+`).
    Signed,
}

impl Amount {
    /// No money.
    pub const ZERO: Amount = Amount(0);
    /// The largest amount (`i64::MAX` micro-units).
    pub const MAX: Amount = Amount(i64::MAX);

    /// An amount of `micros` micro-units.
    pub const fn from_micros(micros: i64) -> Amount {
        Amount(micros)
    }

    /// `units` whole currency units, or `None` on overflow.
    pub const fn from_units(units: i64) -> Option<Amount> {
        match units.checked_mul(MICROS_PER_UNIT) {
            Some(micros) => Some(Amount(micros)),
            None => None,
        }
    }

    /// The amount in micro-units.
    pub const fn micros(self) -> i64 {
        self.0
    }

    /// True for zero.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// True below zero (e.g. an available balance under an overdraft floor).
    pub const fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// True above zero.
    pub const fn is_positive(self) -> bool {
        self.0 > 0
    }

    /// `self + other`, or `None` on overflow.
    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    /// `self - other`, or `None` on overflow.
    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }

    /// `-self`, or `None` on overflow (only for `i64::MIN` micro-units).
    pub fn checked_neg(self) -> Option<Amount> {
        self.0.checked_neg().map(Amount)
    }

    /// `self * factor`, or `None` on overflow.
    pub fn checked_mul(self, factor: i64) -> Option<Amount> {
        self.0.checked_mul(factor).map(Amount)
    }

    /// The larger of `self` and zero.
    pub fn max_zero(self) -> Amount {
        Amount(self.0.max(0))
    }

    /// Parses a non-negative decimal string such as `"12.50"` or `"0.000375"`.
    pub fn parse(text: &str) -> Result<Amount, ParseAmountError> {
        Amount::parse_with(text, Sign::NonNegative)
    }

    /// Parses a decimal string: digits, optionally `.` and 1 to 6 digits, and a leading `-`
    /// only when `sign` allows it. No whitespace, exponent, `+`, or bare `.`.
    pub fn parse_with(text: &str, sign: Sign) -> Result<Amount, ParseAmountError> {
        if text.is_empty() {
            return Err(ParseAmountError::Empty);
        }
        if text.len() > AMOUNT_TEXT_LEN_MAX {
            return Err(ParseAmountError::TooLong);
        }
        if text.trim() != text {
            return Err(ParseAmountError::Padded);
        }
        let (negative, body) = match text.as_bytes()[0] {
            b'+' => return Err(ParseAmountError::SignNotAllowed),
            b'-' if sign == Sign::NonNegative => return Err(ParseAmountError::SignNotAllowed),
            b'-' => (true, &text[1..]),
            _ => (false, text),
        };
        if body.bytes().any(|b| b == b'e' || b == b'E') {
            return Err(ParseAmountError::Exponent);
        }
        let (whole, fraction) = match body.split_once('.') {
            Some((whole, fraction)) => (whole, Some(fraction)),
            None => (body, None),
        };
        if whole.is_empty() || fraction.is_some_and(str::is_empty) {
            return Err(ParseAmountError::MissingDigits);
        }
        let fraction = fraction.unwrap_or("");
        if !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
        {
            return Err(ParseAmountError::InvalidCharacter);
        }
        if fraction.len() > 6 {
            return Err(ParseAmountError::TooManyDecimals);
        }
        let micros = digits_value(whole)
            .and_then(|units| units.checked_mul(MICROS_PER_UNIT))
            .and_then(|micros| micros.checked_add(fraction_micros(fraction)))
            .ok_or(ParseAmountError::Overflow)?;
        Ok(Amount(if negative { -micros } else { micros }))
    }
}

fn digits_value(digits: &str) -> Option<i64> {
    digits.bytes().try_fold(0i64, |value, digit| {
        value.checked_mul(10)?.checked_add(i64::from(digit - b'0'))
    })
}

/// The micro-units of up to six decimal digits ("5" → 500_000).
fn fraction_micros(fraction: &str) -> i64 {
    let value = digits_value(fraction).expect("at most six digits always fit");
    let missing = 6 - u32::try_from(fraction.len()).expect("at most six digits");
    value * 10i64.pow(missing)
}

impl fmt::Display for Amount {
    /// At least two decimals, at most six, no trailing zeros beyond two: "12.50", "0.000375".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let magnitude = self.0.unsigned_abs();
        let units = magnitude / MICROS_PER_UNIT.unsigned_abs();
        let micros = magnitude % MICROS_PER_UNIT.unsigned_abs();
        let mut fraction = format!("{micros:06}");
        while fraction.len() > 2 && fraction.ends_with('0') {
            fraction.pop();
        }
        write!(f, "{sign}{units}.{fraction}")
    }
}

impl FromStr for Amount {
    type Err = ParseAmountError;

    /// Same as [`Amount::parse_with`] with [`Sign::Signed`].
    fn from_str(text: &str) -> Result<Amount, ParseAmountError> {
        Amount::parse_with(text, Sign::Signed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_table() {
        use ParseAmountError::*;
        let table: &[(&str, Sign, Result<i64, ParseAmountError>)] = &[
            ("0", Sign::NonNegative, Ok(0)),
            ("12.50", Sign::NonNegative, Ok(12_500_000)),
            ("0.000375", Sign::NonNegative, Ok(375)),
            ("0.000001", Sign::NonNegative, Ok(1)),
            ("7", Sign::NonNegative, Ok(7_000_000)),
            ("007.5", Sign::NonNegative, Ok(7_500_000)),
            ("9223372036854.775807", Sign::NonNegative, Ok(i64::MAX)),
            ("-9223372036854.775807", Sign::Signed, Ok(-i64::MAX)),
            ("-1.5", Sign::Signed, Ok(-1_500_000)),
            ("9223372036854.775808", Sign::NonNegative, Err(Overflow)),
            ("99999999999999999999", Sign::NonNegative, Err(Overflow)),
            ("", Sign::NonNegative, Err(Empty)),
            (" 1", Sign::NonNegative, Err(Padded)),
            ("1 ", Sign::NonNegative, Err(Padded)),
            ("1\n", Sign::NonNegative, Err(Padded)),
            ("-1", Sign::NonNegative, Err(SignNotAllowed)),
            ("+1", Sign::Signed, Err(SignNotAllowed)),
            ("+1", Sign::NonNegative, Err(SignNotAllowed)),
            ("1e3", Sign::NonNegative, Err(Exponent)),
            ("1.5E2", Sign::NonNegative, Err(Exponent)),
            ("0.0000001", Sign::NonNegative, Err(TooManyDecimals)),
            ("1.1234567", Sign::NonNegative, Err(TooManyDecimals)),
            (".5", Sign::NonNegative, Err(MissingDigits)),
            ("5.", Sign::NonNegative, Err(MissingDigits)),
            ("-", Sign::Signed, Err(MissingDigits)),
            (".", Sign::NonNegative, Err(MissingDigits)),
            ("1,5", Sign::NonNegative, Err(InvalidCharacter)),
            ("1.2.3", Sign::NonNegative, Err(InvalidCharacter)),
            ("0x10", Sign::NonNegative, Err(InvalidCharacter)),
            ("１", Sign::NonNegative, Err(InvalidCharacter)),
            ("NaN", Sign::NonNegative, Err(InvalidCharacter)),
            ("--1", Sign::Signed, Err(InvalidCharacter)),
            (
                "123456789012345678901234567890123",
                Sign::NonNegative,
                Err(TooLong),
            ),
        ];
        for (text, sign, expected) in table {
            let got = Amount::parse_with(text, *sign).map(Amount::micros);
            assert_eq!(&got, expected, "parse {text:?} ({sign:?})");
        }
    }

    #[test]
    fn display_table() {
        let table: &[(i64, &str)] = &[
            (0, "0.00"),
            (12_500_000, "12.50"),
            (375, "0.000375"),
            (1, "0.000001"),
            (10, "0.00001"),
            (-1_500_000, "-1.50"),
            (1_230_000, "1.23"),
            (1_234_000, "1.234"),
            (i64::MAX, "9223372036854.775807"),
            (i64::MIN, "-9223372036854.775808"),
        ];
        for (micros, text) in table {
            assert_eq!(Amount::from_micros(*micros).to_string(), *text);
        }
    }

    #[test]
    fn checked_arithmetic_reports_overflow() {
        assert_eq!(Amount::MAX.checked_add(Amount::from_micros(1)), None);
        assert_eq!(
            Amount::from_micros(i64::MIN).checked_sub(Amount::from_micros(1)),
            None
        );
        assert_eq!(Amount::from_micros(i64::MIN).checked_neg(), None);
        assert_eq!(Amount::from_units(i64::MAX / 1_000_000 + 1), None);
        assert_eq!(Amount::from_units(3), Some(Amount::from_micros(3_000_000)));
    }

    proptest! {
        #[test]
        fn display_then_parse_round_trips(micros in (i64::MIN + 1)..=i64::MAX) {
            let amount = Amount::from_micros(micros);
            prop_assert_eq!(Amount::parse_with(&amount.to_string(), Sign::Signed), Ok(amount));
        }

        #[test]
        fn parse_never_panics(text in "\\PC{0,40}") {
            let _ = Amount::parse_with(&text, Sign::Signed);
        }
    }
}
