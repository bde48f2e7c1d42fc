//! The OpenAPI 3 document (`GET /v1/openapi.json`) and a Swagger UI page
//! (`GET /v1/docs`) served by the API itself. The Swagger UI assets come from
//! the `swagger-ui-dist` crate, i.e. from the package registry at build time:
//! the page loads nothing from any other host.

use std::sync::LazyLock;

use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ordertrail_commands::service::{AppendedEvent, CommandOutcome};
use swagger_ui_dist::{ApiDefinition, OpenApiSource};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::AppState;
use crate::error::{self, ERROR_CODES, ErrorBody};
use crate::extract::{IDEMPOTENCY_KEY, MAX_IDEMPOTENCY_KEY_LEN};
use crate::routes::{deliveries, health, orders, payments, queries, reference_data};

/// Where the docs page loads its Swagger UI assets from.
const ASSETS_PREFIX: &str = "/v1/docs/assets";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Ordertrail API",
        description = "Commands of the Ordertrail delivery-commerce platform. Every `/v1` route except \
this document and the docs page needs `Authorization: Bearer <JWT>` (roles `customer`, \
`restaurant`, `rider`, `ops`, `admin`, and the read-only `auditor`, which may read every query and \
audit route and is answered 403 by every command): HS256 with the local secret, or RS256/EdDSA/ES256 keys of an \
identity provider chosen by the token's `kid`; `exp` is required, the lifetime is at most 24 hours \
(configurable), `nbf` is honoured, `iss` and `aud` are required when the server is configured with \
them. Requests are rate limited per token subject and per client address, commands and queries \
separately: over the budget the answer is 429 `rate_limited` with `Retry-After`. An order, payment or \
delivery the caller may not see answers 404, exactly like one that does not exist. Every command \
accepts an `Idempotency-Key`: a retry returns the first answer (with `Idempotent-Replayed: true`) and \
appends nothing; a UUIDv7 key keeps the store's indexes time-ordered (the order id and the command log \
entry take its timestamp). Errors are `{\"code\", \"message\", \"details\"}`; the codes are listed per status \
on each operation."
    ),
    paths(
        orders::place_order,
        orders::confirm_order,
        orders::accept_order,
        orders::reject_order,
        orders::mark_ready,
        orders::mark_picked_up,
        orders::mark_delivered,
        orders::cancel_order,
        orders::record_cash_collected,
        payments::authorize_payment,
        payments::capture_payment,
        payments::void_payment,
        payments::refund_payment,
        deliveries::request_delivery,
        deliveries::assign_rider,
        deliveries::unassign_rider,
        deliveries::report_location,
        deliveries::confirm_pickup,
        deliveries::complete_delivery,
        deliveries::fail_delivery,
        deliveries::cancel_delivery,
        reference_data::put_restaurant,
        reference_data::list_restaurants,
        reference_data::set_restaurant_open,
        reference_data::put_menu_item,
        reference_data::restaurant_menu,
        reference_data::put_rider,
        reference_data::list_riders,
        health::live,
        health::ready,
        openapi_json,
        docs_page,
    ),
    components(schemas(ErrorBody, CommandOutcome, AppendedEvent)),
    modifiers(&BearerAuth, &IdempotencyKeyContract, &RequestBodyContract),
    tags(
        (name = "orders", description = "An order from placement to delivery"),
        (name = "payments", description = "Card authorizations, captures, voids, refunds"),
        (name = "deliveries", description = "A rider's trip from the restaurant to the customer"),
        (name = "reference data", description = "Restaurants, menus and riders"),
        (name = "health", description = "Liveness and readiness"),
        (name = "docs", description = "This document and its rendering"),
        (name = "audit", description = "Event-store history, past states, business flows and money reconciliation (ops, admin, auditor)"),
    )
)]
#[derive(Debug)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.bearer_format = Some("JWT".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
        let table: Vec<String> = ERROR_CODES
            .iter()
            .map(|(code, status, meaning)| {
                format!("| `{code}` | {} | {meaning} |", status.as_u16())
            })
            .collect();
        let description = openapi.info.description.get_or_insert_with(String::new);
        description.push_str("\n\n| code | status | meaning |\n|---|---|---|\n");
        description.push_str(&table.join("\n"));
        description.push_str(
            "\n\nDomain errors carry their own codes; their status follows their kind: invalid 422, \
not found 404, state conflict 409, forbidden 403, unavailable 503.",
        );
    }
}

/// States what the server enforces on `Idempotency-Key` (1..=255 visible
/// ASCII characters) on every operation that takes it, from one place.
struct IdempotencyKeyContract;

/// The `Idempotency-Key` header's pattern: visible ASCII only.
pub const IDEMPOTENCY_KEY_PATTERN: &str = "^[!-~]+$";

impl Modify for IdempotencyKeyContract {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                for parameter in operation.parameters.iter_mut().flatten() {
                    if parameter
                        .name
                        .eq_ignore_ascii_case(IDEMPOTENCY_KEY.as_str())
                    {
                        parameter.schema = Some(
                            ObjectBuilder::new()
                                .schema_type(Type::String)
                                .min_length(Some(1))
                                .max_length(Some(MAX_IDEMPOTENCY_KEY_LEN))
                                .pattern(Some(IDEMPOTENCY_KEY_PATTERN))
                                .into(),
                        );
                        parameter.description = Some(format!(
                            "Makes retries safe: 1..={MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters. \
A retry with the same key and body returns the first answer; another body with it is 422 \
`idempotency_key_reused`."
                        ));
                    }
                }
            }
        }
    }
}

/// Request-body rules the derive cannot state: every variant of a tagged
/// request enum refuses unknown fields (as `deny_unknown_fields` does), and a
/// restaurant's `time_zone` is one of the IANA names the server knows.
struct RequestBodyContract;

impl Modify for RequestBodyContract {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::schema::{AdditionalProperties, Schema};
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        for (name, schema) in &mut components.schemas {
            if !name.ends_with("Request") {
                continue;
            }
            if let RefOr::T(Schema::OneOf(one_of)) = schema {
                for variant in &mut one_of.items {
                    if let RefOr::T(Schema::Object(object)) = variant {
                        object.additional_properties =
                            Some(Box::new(AdditionalProperties::FreeForm(false)));
                    }
                }
            }
        }
        if let Some(RefOr::T(Schema::Object(restaurant))) =
            components.schemas.get_mut("RestaurantRequest")
            && let Some(RefOr::T(Schema::Object(zone))) = restaurant.properties.get_mut("time_zone")
        {
            zone.enum_values = Some(
                chrono_tz::TZ_VARIANTS
                    .iter()
                    .map(|tz| serde_json::Value::String(tz.name().to_owned()))
                    .collect(),
            );
        }
    }
}

/// The document, built once. Another route module documents itself with its own
/// `#[derive(OpenApi)]` and joins here: `let mut doc = ApiDoc::openapi(); doc.merge(QueryDoc::openapi());`.
static OPENAPI: LazyLock<utoipa::openapi::OpenApi> = LazyLock::new(|| {
    let mut doc = ApiDoc::openapi();
    doc.merge(queries::QueryDoc::openapi());
    doc.merge(crate::routes::replay::ReplayDoc::openapi());
    doc.merge(crate::routes::audit::AuditDoc::openapi());
    doc.merge(crate::routes::streams::StreamDoc::openapi());
    doc.merge(crate::routes::console::ConsoleDoc::openapi());
    // Merged documents get the same contract as the commands' own.
    IdempotencyKeyContract.modify(&mut doc);
    doc
});

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/openapi.json", get(openapi_json))
        .route("/v1/docs", get(docs_page))
        .route("/v1/docs/init.js", get(docs_init))
}

/// The Swagger UI asset files under `/v1/docs/assets/` (stateless).
pub fn assets() -> Router {
    swagger_ui_dist::generate_routes(ApiDefinition {
        uri_prefix: ASSETS_PREFIX,
        api_definition: OpenApiSource::Uri("/v1/openapi.json"),
        title: Some("Ordertrail API"),
    })
    .route_layer(middleware::from_fn(assets_only))
}

/// The OpenAPI 3 document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "docs", responses((status = 200, description = "This document", content_type = "application/json")))]
pub async fn openapi_json() -> Json<&'static utoipa::openapi::OpenApi> {
    Json(&OPENAPI)
}

const DOCS_HTML: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8" />
  <meta name="viewport" content="width=device-width, initial-scale=1" />
  <title>Ordertrail API</title>
  <link rel="stylesheet" href="/v1/docs/assets/swagger-ui.css" />
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/v1/docs/assets/swagger-ui-bundle.js"></script>
  <script src="/v1/docs/init.js"></script>
</body>
</html>
"#;

const DOCS_INIT_JS: &str = r##"window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "/v1/openapi.json",
    dom_id: "#swagger-ui",
    validatorUrl: null,
    deepLinking: true
  });
};
"##;

/// The rendered docs page (Swagger UI), every asset served from this API.
#[utoipa::path(get, path = "/v1/docs", tag = "docs", responses((status = 200, description = "HTML page", content_type = "text/html")))]
pub async fn docs_page() -> Response {
    let mut response = Html(DOCS_HTML).into_response();
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'",
        ),
    );
    response
}

async fn docs_init() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript")], DOCS_INIT_JS).into_response()
}

/// Serve only the asset files of `swagger-ui-dist`, not its own index page
/// (which echoes the request URI into HTML): ours is [`docs_page`].
async fn assets_only(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let file = path.strip_prefix(ASSETS_PREFIX).unwrap_or("");
    if file.len() > 1 && file.starts_with('/') && file.contains('.') {
        next.run(req).await
    } else {
        error::route_not_found().await.into_response()
    }
}
