//! Extractors every transport shares: query strings and path parameters whose refusals are
//! 400s naming the field, in the one error envelope.

use super::error::ApiError;

/// Query strings parsed with the field named on failure.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequestParts<S>
    for Query<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Query<T>, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(Query)
            .map_err(|error| {
                let param = error.path().to_string();
                ApiError::invalid(
                    if param == "." {
                        "query".to_owned()
                    } else {
                        param
                    },
                    "parameter_invalid",
                    error.into_inner().to_string(),
                )
            })
    }
}

/// A path parameter; a value axum cannot decode (not UTF-8, say) is a 400 naming it.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> axum::extract::FromRequestParts<S>
    for Path<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Path<T>, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => {
                let param = parts
                    .extensions
                    .get::<axum::extract::MatchedPath>()
                    .and_then(|path| path.as_str().split('{').nth(1))
                    .and_then(|rest| rest.split('}').next())
                    .unwrap_or("path")
                    .to_owned();
                tracing::debug!(%rejection, "path refused");
                Err(ApiError::invalid(
                    param.clone(),
                    "invalid_id",
                    format!("{param} is not a valid id."),
                ))
            }
        }
    }
}
