//! Request bodies: JSON only, size-limited, and every refusal names the field at fault.
//! Money travels as decimal strings ([`Money`], [`SignedMoney`]); a number is refused.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use creditgate_domain::money::{Amount, Sign};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use super::error::ApiError;

/// A JSON body of type `T`.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Body<T>, ApiError> {
        let bytes = read(request, state).await?;
        parse(&bytes).map(Body)
    }
}

/// The body of a JSON request: refused (nothing read) unless its `Content-Type` is JSON or
/// absent; 413 past the body limit.
pub async fn read<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    let content_type_ok = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.to_ascii_lowercase().starts_with("application/json"));
    if !content_type_ok {
        return Err(ApiError::bad_request(
            "invalid_content_type",
            "The body must be JSON (Content-Type: application/json).",
        ));
    }
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large("The request body is too large.")
            } else {
                ApiError::bad_request("invalid_body", "The request body could not be read.")
            }
        })
}

/// Parses `bytes` as `T`, naming the field at fault.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // A request body is an object: an array would otherwise fill a struct's fields in order.
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') | Some(b'n') | None => {}
        Some(b'[') | Some(b'"') | Some(b'0'..=b'9') | Some(b'-') | Some(b't') | Some(b'f') => {
            return Err(ApiError::bad_request(
                "invalid_body",
                "The body must be a JSON object.",
            ));
        }
        Some(_) => {}
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = match serde_path_to_error::deserialize(&mut deserializer) {
        Ok(value) => value,
        // `2.0` is the integer 2 to JSON Schema, and so to the document: read again with whole
        // floats as integers. Only then, so every other refusal (a duplicate field, say) stays.
        Err(error) if is_whole_float(error.inner()) => {
            return parse_whole_floats(bytes).ok_or_else(|| refusal(error));
        }
        Err(error) => return Err(refusal(error)),
    };
    deserializer
        .end()
        .map_err(|_| ApiError::bad_request("invalid_json", "The body has trailing characters."))?;
    Ok(value)
}

/// Whether `error` is a type error about a float with no fraction (`95.0`).
fn is_whole_float(error: &serde_json::Error) -> bool {
    let message = error.to_string();
    message
        .strip_prefix("invalid type: floating point `")
        .and_then(|rest| rest.split('`').next())
        .and_then(|number| number.parse::<f64>().ok())
        .is_some_and(|number| whole_float_as_integer(number).is_some())
}

/// A float that spells an integer exactly (no fraction, within ±2^53), as that integer.
fn whole_float_as_integer(number: f64) -> Option<i64> {
    const EXACT_MAX: f64 = 9_007_199_254_740_992.0;
    // Casting is exact here: no fraction, and within the range every integer of which an f64 holds.
    #[allow(clippy::float_arithmetic, clippy::cast_possible_truncation)]
    (number.is_finite() && number.fract() == 0.0 && number.abs() <= EXACT_MAX)
        .then_some(number as i64)
}

/// `bytes` parsed with every whole float made an integer; `None` if it still does not parse.
fn parse_whole_floats<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    fn integers(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Number(number) if number.is_f64() => {
                if let Some(integer) = number.as_f64().and_then(whole_float_as_integer) {
                    *value = serde_json::Value::from(integer);
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(integers),
            serde_json::Value::Object(fields) => fields.values_mut().for_each(integers),
            _ => {}
        }
    }
    // A Value keeps the last of a repeated key, where the direct read refuses it.
    serde_json::from_slice::<UniqueKeys>(bytes).ok()?;
    let mut value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    integers(&mut value);
    serde_json::from_value(value).ok()
}

/// Any JSON value in which no object repeats a key.
struct UniqueKeys;

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<UniqueKeys, D::Error> {
        deserializer.deserialize_any(UniqueKeysVisitor)
    }
}

struct UniqueKeysVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueKeysVisitor {
    type Value = UniqueKeys;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON with no repeated key")
    }
    fn visit_bool<E>(self, _: bool) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_i64<E>(self, _: i64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_u64<E>(self, _: u64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_f64<E>(self, _: f64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_str<E>(self, _: &str) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_unit<E>(self) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<UniqueKeys, A::Error> {
        while seq.next_element::<UniqueKeys>()?.is_some() {}
        Ok(UniqueKeys)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<UniqueKeys, A::Error> {
        let mut keys = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !keys.insert(key) {
                return Err(serde::de::Error::custom("a repeated key"));
            }
            map.next_value::<UniqueKeys>()?;
        }
        Ok(UniqueKeys)
    }
}

/// A body that does not parse as a 400 naming the field at fault.
fn refusal(error: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = error.path().to_string();
    let inner = error.into_inner();
    if inner.is_syntax() || inner.is_eof() {
        return ApiError::bad_request(
            "invalid_json",
            format!("The body is not valid JSON: {inner}"),
        );
    }
    let message = strip_position(&inner.to_string());
    let param = match missing_field(&message) {
        Some(field) if path == "." => field.to_owned(),
        Some(field) => format!("{path}.{field}"),
        None if path == "." => String::new(),
        None => path,
    };
    if param.is_empty() {
        ApiError::bad_request("invalid_body", message)
    } else if message.starts_with("missing field") {
        ApiError::invalid(param, "parameter_missing", message)
    } else if message.starts_with("unknown field") {
        ApiError::invalid(param, "parameter_unknown", message)
    } else {
        ApiError::invalid(param, "parameter_invalid", message)
    }
}

fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

/// A non-negative amount given as a decimal string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Money(pub Amount);

/// A possibly negative amount given as a decimal string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignedMoney(pub Amount);

fn money<'de, D: Deserializer<'de>>(deserializer: D, sign: Sign) -> Result<Amount, D::Error> {
    struct Visitor(Sign);
    impl serde::de::Visitor<'_> for Visitor {
        type Value = Amount;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an amount as a decimal string, such as \"12.50\"")
        }
        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Amount, E> {
            Amount::parse_with(text, self.0).map_err(|e| E::custom(format!("{e} ({text:?})")))
        }
    }
    deserializer.deserialize_str(Visitor(sign))
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Money, D::Error> {
        money(deserializer, Sign::NonNegative).map(Money)
    }
}

impl<'de> Deserialize<'de> for SignedMoney {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SignedMoney, D::Error> {
        money(deserializer, Sign::Signed).map(SignedMoney)
    }
}

/// The grammar [`Amount::parse_with`] accepts, for the OpenAPI document, kept to 12 whole
/// digits so every match fits the `i64` range of micro-units (the parser itself takes longer
/// strings up to that range).
pub const MONEY_PATTERN: &str = r"^[0-9]{1,12}(\.[0-9]{1,6})?$";
/// [`MONEY_PATTERN`] with an optional minus sign.
pub const SIGNED_MONEY_PATTERN: &str = r"^-?[0-9]{1,12}(\.[0-9]{1,6})?$";

fn money_schema(
    pattern: &str,
    description: &str,
    example: &str,
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .pattern(Some(pattern))
        .description(Some(description))
        .examples([example])
        .into()
}

impl utoipa::PartialSchema for Money {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        money_schema(
            MONEY_PATTERN,
            "A non-negative amount as a decimal string: at most six decimals, no sign, no exponent.",
            "12.50",
        )
    }
}

impl utoipa::ToSchema for Money {}

impl utoipa::PartialSchema for SignedMoney {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        money_schema(
            SIGNED_MONEY_PATTERN,
            "An amount as a decimal string, possibly negative: at most six decimals, no exponent.",
            "-2.50",
        )
    }
}

impl utoipa::ToSchema for SignedMoney {}

/// An amount of zero or less as a decimal string (an org's floor), for the document: the
/// handler parses a [`SignedMoney`] and refuses a positive one with a 400.
pub struct NonPositiveMoney;

/// Zero (unsigned or `-0`), or a negative [`SIGNED_MONEY_PATTERN`].
pub const NON_POSITIVE_MONEY_PATTERN: &str =
    r"^(-?0{1,12}(\.0{1,6})?|-[0-9]{1,12}(\.[0-9]{1,6})?)$";

impl utoipa::PartialSchema for NonPositiveMoney {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        money_schema(
            NON_POSITIVE_MONEY_PATTERN,
            "An amount of zero or less as a decimal string: at most six decimals, no exponent.",
            "-20.00",
        )
    }
}

impl utoipa::ToSchema for NonPositiveMoney {}

/// A positive amount (more than zero) as a decimal string, for the document: the handler
/// parses a [`Money`] and refuses zero with a 400.
pub struct PositiveMoney;

/// [`MONEY_PATTERN`] without zero: a whole part from 1, or `0.` and a non-zero decimal.
pub const POSITIVE_MONEY_PATTERN: &str = r"^([1-9][0-9]{0,11}(\.[0-9]{1,6})?|0\.([1-9][0-9]{0,5}|0[1-9][0-9]{0,4}|00[1-9][0-9]{0,3}|000[1-9][0-9]{0,2}|0000[1-9][0-9]?|00000[1-9]))$";

impl utoipa::PartialSchema for PositiveMoney {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        money_schema(
            POSITIVE_MONEY_PATTERN,
            "A positive amount as a decimal string: more than zero, at most six decimals, no sign, no exponent.",
            "12.50",
        )
    }
}

impl utoipa::ToSchema for PositiveMoney {}

/// A non-zero amount, possibly negative, as a decimal string (adjustments), for the document.
pub struct NonZeroMoney;

/// [`POSITIVE_MONEY_PATTERN`] with an optional minus sign.
pub const NON_ZERO_MONEY_PATTERN: &str = r"^-?([1-9][0-9]{0,11}(\.[0-9]{1,6})?|0\.([1-9][0-9]{0,5}|0[1-9][0-9]{0,4}|00[1-9][0-9]{0,3}|000[1-9][0-9]{0,2}|0000[1-9][0-9]?|00000[1-9]))$";

impl utoipa::PartialSchema for NonZeroMoney {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        money_schema(
            NON_ZERO_MONEY_PATTERN,
            "A non-zero amount as a decimal string, possibly negative: at most six decimals, no exponent.",
            "-2.50",
        )
    }
}

impl utoipa::ToSchema for NonZeroMoney {}

/// A whole number of cents as a decimal string (top-ups and reload amounts), for the document:
/// the handler parses a [`Money`] and refuses other amounts with a 400.
pub struct Cents;

/// Whole cents: at most two decimals.
pub const CENTS_PATTERN: &str = r"^[0-9]{1,12}(\.[0-9]{1,2})?$";

impl utoipa::PartialSchema for Cents {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        money_schema(
            CENTS_PATTERN,
            "A non-negative amount in whole cents as a decimal string: at most two decimals.",
            "25.00",
        )
    }
}

impl utoipa::ToSchema for Cents {}

/// An email address, for the document: printable ASCII, one `@`, a dotted domain that neither
/// starts nor ends with a dot, at most 254 characters. The server's own check is a little wider
/// (it takes other Unicode letters too); this is the form every version of it accepts.
pub struct Email;

/// [`Email`]'s grammar: `[!-?A-~]` is printable ASCII without `@`, `.` left out of the
/// domain's labels.
pub const EMAIL_PATTERN: &str = r"^[!-?A-~]+@([!-\-/-?A-~]+\.)+[!-\-/-?A-~]+$";

impl utoipa::PartialSchema for Email {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(EMAIL_PATTERN))
            .max_length(Some(254))
            .description(Some("An email address."))
            .examples(["ada@example.com"])
            .into()
    }
}

impl utoipa::ToSchema for Email {}

/// An amount as JSON shows it.
pub fn show(amount: Amount) -> String {
    amount.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Grant {
        amount: Money,
        nested: Option<Nested>,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Nested {
        tokens: u64,
    }

    fn refusal(body: &str) -> (String, Option<String>) {
        let error = parse::<Grant>(body.as_bytes()).unwrap_err();
        (error.code.to_owned(), error.param)
    }

    #[test]
    fn refusals_name_the_field() {
        let table = [
            (r#"{"amount": 5}"#, "parameter_invalid", Some("amount")),
            (r#"{"amount": "-5"}"#, "parameter_invalid", Some("amount")),
            (
                r#"{"amount": "1.0000001"}"#,
                "parameter_invalid",
                Some("amount"),
            ),
            (r#"{"amount": "1e3"}"#, "parameter_invalid", Some("amount")),
            (
                r#"{"amount": "99999999999999999999"}"#,
                "parameter_invalid",
                Some("amount"),
            ),
            (r#"{}"#, "parameter_missing", Some("amount")),
            (r#"{"amount": "1", "x": 1}"#, "parameter_unknown", Some("x")),
            (
                r#"{"amount": "1", "nested": {"tokens": "a"}}"#,
                "parameter_invalid",
                Some("nested.tokens"),
            ),
            (
                r#"{"amount": "1", "nested": {}}"#,
                "parameter_missing",
                Some("nested.tokens"),
            ),
            (r#"{"amount": "#, "invalid_json", None),
            (r#"[1]"#, "invalid_body", None),
        ];
        for (body, code, param) in table {
            assert_eq!(
                refusal(body),
                (code.to_owned(), param.map(str::to_owned)),
                "{body}"
            );
        }
        assert!(parse::<Grant>(br#"{"amount": "12.50"}"#).is_ok());
    }

    #[test]
    fn a_whole_float_is_an_integer_and_only_that() {
        // JSON Schema (and so the document) counts 5.0 as the integer 5.
        let grant = parse::<Grant>(br#"{"amount": "1", "nested": {"tokens": 5.0}}"#).unwrap();
        assert_eq!(grant.nested.map(|n| n.tokens), Some(5));
        let table = [
            (
                r#"{"amount": "1", "nested": {"tokens": 5.5}}"#,
                "nested.tokens",
            ),
            (
                r#"{"amount": "1", "nested": {"tokens": -1.0}}"#,
                "nested.tokens",
            ),
            (
                r#"{"amount": "1", "nested": {"tokens": 1e300}}"#,
                "nested.tokens",
            ),
            (r#"{"amount": 5.0}"#, "amount"),
            // Read again with 5.0 as 5, the body still repeats a field: the first refusal stands.
            (
                r#"{"nested": {"tokens": 5.0}, "amount": "1", "amount": "2"}"#,
                "nested.tokens",
            ),
        ];
        for (body, param) in table {
            assert_eq!(
                refusal(body),
                ("parameter_invalid".to_owned(), Some(param.to_owned())),
                "{body}"
            );
        }
    }

    #[test]
    fn the_documented_patterns_hold_only_amounts_that_parse() {
        // The longest strings MONEY_PATTERN and SIGNED_MONEY_PATTERN admit.
        assert!(MONEY_PATTERN.contains("{1,12}") && SIGNED_MONEY_PATTERN.contains("{1,12}"));
        assert!(Amount::parse_with("999999999999.999999", Sign::NonNegative).is_ok());
        assert!(Amount::parse_with("-999999999999.999999", Sign::Signed).is_ok());
    }
}
