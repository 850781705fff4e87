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
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
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
    })?;
    deserializer
        .end()
        .map_err(|_| ApiError::bad_request("invalid_json", "The body has trailing characters."))?;
    Ok(value)
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
    fn the_documented_patterns_hold_only_amounts_that_parse() {
        // The longest strings MONEY_PATTERN and SIGNED_MONEY_PATTERN admit.
        assert!(MONEY_PATTERN.contains("{1,12}") && SIGNED_MONEY_PATTERN.contains("{1,12}"));
        assert!(Amount::parse_with("999999999999.999999", Sign::NonNegative).is_ok());
        assert!(Amount::parse_with("-999999999999.999999", Sign::Signed).is_ok());
    }
}
