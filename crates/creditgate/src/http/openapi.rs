//! The OpenAPI document, generated from the handlers themselves: the router and the document
//! come out of one [`OpenApiRouter`], so a route cannot exist without being documented.

use std::sync::OnceLock;

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::api::{
    credits, holds, keys, members, notices, orgs, payments, prices, recoveries, refunds, system,
    usage, webhooks,
};
use super::proxy;
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "creditgate", description = "Prepaid usage credits: orgs, keys, prices, holds, usage, balances."),
    modifiers(&Security),
    security(("bearer" = []), ("api_key" = []), ("session" = [])),
    components(schemas(super::error::ErrorBody, super::error::ErrorDetail))
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The operator token, or an org's API key."))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))),
        );
        // A member's billing-page session; its writes also carry x-csrf-token.
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("cg_session"))),
        );
    }
}

/// Every route with its documentation.
pub fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(orgs::create_org, orgs::list_orgs))
        .routes(routes!(orgs::get_org, orgs::update_org))
        .routes(routes!(orgs::list_access_transitions))
        .routes(routes!(keys::create_key, keys::list_keys))
        .routes(routes!(keys::revoke_key))
        .routes(routes!(credits::create_grant))
        .routes(routes!(credits::create_adjustment))
        .routes(routes!(credits::get_balance))
        .routes(routes!(credits::list_transfers))
        .routes(routes!(prices::set_price))
        .routes(routes!(prices::list_prices))
        .routes(routes!(holds::place_hold))
        .routes(routes!(holds::get_hold))
        .routes(routes!(holds::settle_hold))
        .routes(routes!(holds::void_hold))
        .routes(routes!(usage::record_usage))
        .routes(routes!(system::healthz))
        .routes(routes!(system::readyz))
        .routes(routes!(system::metrics))
        .routes(routes!(system::openapi_json))
        .routes(routes!(notices::list_notices))
        .routes(routes!(recoveries::list_recoveries))
        .routes(routes!(notices::retry_notice))
        .routes(routes!(
            webhooks::create_webhook_endpoint,
            webhooks::list_webhook_endpoints
        ))
        .routes(routes!(webhooks::disable_webhook_endpoint))
        .routes(routes!(webhooks::list_webhook_deliveries))
        .routes(routes!(webhooks::resend_webhook_delivery))
        .routes(routes!(payments::create_top_up))
        .routes(routes!(payments::list_payments))
        .routes(routes!(payments::get_payment))
        .routes(routes!(refunds::create_refund, refunds::list_refunds))
        .routes(routes!(
            payments::get_auto_reload,
            payments::put_auto_reload
        ))
        .routes(routes!(payments::stripe_webhook))
        .routes(routes!(members::create_member, members::list_members))
        .routes(routes!(members::update_member, members::remove_member))
        .routes(routes!(proxy::anthropic_messages))
        .routes(routes!(proxy::openai_chat_completions))
        .routes(routes!(proxy::openai_responses))
        .routes(routes!(proxy::openai_embeddings))
        .routes(routes!(proxy::anthropic_count_tokens))
        .routes(routes!(proxy::anthropic_models))
        .routes(routes!(proxy::anthropic_model))
        .routes(routes!(proxy::openai_models))
        .routes(routes!(proxy::openai_model))
}

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    api_router().split_for_parts().1
}

/// The document as JSON, made once.
pub fn document_json() -> String {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        document()
            .to_pretty_json()
            .expect("the document serializes")
    })
    .clone()
}
