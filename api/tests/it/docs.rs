//! The OpenAPI document and the self-hosted docs page.

use axum::http::StatusCode;

use crate::support::TestApp;

/// Every route the router serves (method, OpenAPI path).
pub(crate) const ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/orders"),
    ("post", "/v1/orders/{id}/confirm"),
    ("post", "/v1/orders/{id}/accept"),
    ("post", "/v1/orders/{id}/reject"),
    ("post", "/v1/orders/{id}/ready"),
    ("post", "/v1/orders/{id}/picked-up"),
    ("post", "/v1/orders/{id}/delivered"),
    ("post", "/v1/orders/{id}/cancel"),
    ("post", "/v1/orders/{id}/cash-collected"),
    ("post", "/v1/payments"),
    ("post", "/v1/payments/{id}/capture"),
    ("post", "/v1/payments/{id}/void"),
    ("post", "/v1/payments/{id}/refund"),
    ("post", "/v1/deliveries"),
    ("post", "/v1/deliveries/{id}/assign"),
    ("post", "/v1/deliveries/{id}/unassign"),
    ("post", "/v1/deliveries/{id}/locations"),
    ("post", "/v1/deliveries/{id}/pickup"),
    ("post", "/v1/deliveries/{id}/complete"),
    ("post", "/v1/deliveries/{id}/fail"),
    ("post", "/v1/deliveries/{id}/cancel"),
    ("put", "/v1/admin/restaurants/{id}"),
    ("get", "/v1/admin/restaurants"),
    ("put", "/v1/admin/restaurants/{id}/open"),
    ("put", "/v1/admin/menu-items/{id}"),
    ("get", "/v1/restaurants/{id}/menu"),
    ("put", "/v1/admin/riders/{id}"),
    ("get", "/v1/admin/riders"),
    ("get", "/v1/orders"),
    ("get", "/v1/orders/{id}"),
    ("get", "/v1/orders/{id}/eta"),
    ("get", "/v1/riders/{id}/etas"),
    ("get", "/v1/deliveries/active"),
    ("get", "/v1/eta-accuracy"),
    ("get", "/v1/settlements/restaurants/{id}"),
    ("get", "/v1/settlements/days/{date}"),
    ("get", "/v1/settlements/export.csv"),
    ("get", "/v1/projectors/status"),
    ("post", "/v1/projectors/{name}/verify"),
    ("get", "/v1/projectors/verify/{job_id}"),
    ("get", "/v1/audit/{kind}/{id}/events"),
    ("get", "/v1/audit/{kind}/{id}/state"),
    ("get", "/v1/audit/correlations/{id}"),
    ("get", "/v1/reconciliation/settlements"),
    ("get", "/v1/orders/{id}/events/stream"),
    ("get", "/v1/stream/ops"),
    ("get", "/v1/relay/status"),
    ("get", "/health/live"),
    ("get", "/health/ready"),
    ("get", "/v1/openapi.json"),
    ("get", "/v1/docs"),
];

#[tokio::test]
async fn the_openapi_document_lists_every_route_with_its_errors() {
    let app = TestApp::new().await;
    let doc = app.get("/v1/openapi.json").send().await;
    doc.assert(StatusCode::OK);
    assert!(
        doc.body["openapi"].as_str().unwrap_or("").starts_with("3."),
        "{}",
        doc.text
    );
    let paths = doc.body["paths"].as_object().expect("paths");
    let mut documented = 0;
    for (path, item) in paths {
        for method in ["get", "put", "post", "delete", "patch"] {
            if item.get(method).is_some() {
                documented += 1;
                assert!(
                    ROUTES.contains(&(method, path.as_str())),
                    "documented but not routed: {method} {path}"
                );
            }
        }
    }
    assert_eq!(documented, ROUTES.len());
    for (method, path) in ROUTES {
        let op = &doc.body["paths"][path][method];
        assert!(op.is_object(), "undocumented: {method} {path}");
        if path.starts_with("/v1/")
            && !path.starts_with("/v1/docs")
            && !path.starts_with("/v1/openapi")
        {
            assert!(
                op["responses"]["401"].is_object(),
                "{method} {path} does not document 401"
            );
            assert!(
                op["responses"]["403"].is_object(),
                "{method} {path} does not document 403"
            );
            assert!(op["security"].is_array(), "{method} {path} has no security");
            assert!(
                op["responses"]["429"]["headers"]["Retry-After"].is_object(),
                "{method} {path} does not document 429 with Retry-After"
            );
        }
        if *method == "post" {
            for status in ["400", "409", "413", "415", "422"] {
                assert!(
                    op["responses"][status].is_object(),
                    "{method} {path} does not document {status}"
                );
            }
            assert!(
                op["requestBody"].is_object(),
                "{method} {path} has no request body"
            );
        }
    }
    assert_eq!(
        doc.body["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(doc.body["components"]["schemas"]["ErrorBody"].is_object());
    assert!(doc.body["components"]["schemas"]["PlaceOrderRequest"].is_object());
}

#[tokio::test]
async fn the_docs_page_is_served_from_local_assets_only() {
    let app = TestApp::new().await;
    let page = app.get("/v1/docs").send().await;
    page.assert(StatusCode::OK);
    assert!(page.text.contains("swagger-ui"));
    let mut urls = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for part in page.text.split(attr).skip(1) {
            urls.push(part.split('"').next().unwrap_or("").to_owned());
        }
    }
    assert!(!urls.is_empty());
    for url in &urls {
        assert!(
            url.starts_with('/') && !url.starts_with("//"),
            "non-local asset {url}"
        );
        let asset = app.get(url).send().await;
        assert_eq!(asset.status, StatusCode::OK, "{url}");
        assert!(!asset.text.is_empty());
    }
    let init = app.get("/v1/docs/init.js").send().await;
    assert!(init.text.contains("/v1/openapi.json") && init.text.contains("validatorUrl: null"));
}

/// The parameter `name` of an operation.
fn parameter<'a>(
    doc: &'a serde_json::Value,
    method: &str,
    path: &str,
    name: &str,
) -> &'a serde_json::Value {
    doc["paths"][path][method]["parameters"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("{method} {path} has no parameter {name}"))
}

#[tokio::test]
async fn the_document_states_the_constraints_the_server_enforces() {
    let app = TestApp::new().await;
    let doc = app.get("/v1/openapi.json").send().await.body;

    // Every command states the Idempotency-Key rules.
    for (method, path) in ROUTES.iter().filter(|(m, _)| *m == "post") {
        let key = &parameter(&doc, method, path, "Idempotency-Key")["schema"];
        assert_eq!(
            key["pattern"],
            ordertrail_api::docs::IDEMPOTENCY_KEY_PATTERN,
            "{path}"
        );
        assert_eq!(
            (key["minLength"].as_u64(), key["maxLength"].as_u64()),
            (Some(1), Some(255)),
            "{path}"
        );
    }
    // The order list: limit bounds, the cursor's pattern, the statuses.
    let limit = &parameter(&doc, "get", "/v1/orders", "limit")["schema"];
    assert_eq!(
        (limit["minimum"].as_f64(), limit["maximum"].as_f64()),
        (Some(1.0), Some(200.0))
    );
    assert_eq!(
        parameter(&doc, "get", "/v1/orders", "cursor")["schema"]["pattern"],
        ordertrail_projections::queries::orders::CURSOR_PATTERN
    );
    let status = &parameter(&doc, "get", "/v1/orders", "status")["schema"];
    assert_eq!(status["enum"].as_array().map(Vec::len), Some(8), "{status}");
    // Dates in the path and the query are `format: date`.
    assert_eq!(
        parameter(&doc, "get", "/v1/settlements/days/{date}", "date")["schema"]["format"],
        "date"
    );
    assert_eq!(
        parameter(&doc, "get", "/v1/eta-accuracy", "from")["schema"]["format"],
        "date"
    );
    // The bounding box: each corner bounded and optional.
    for (name, edge) in [
        ("min_lat", 90.0),
        ("max_lat", 90.0),
        ("min_lon", 180.0),
        ("max_lon", 180.0),
    ] {
        let p = parameter(&doc, "get", "/v1/deliveries/active", name);
        assert_ne!(p["required"], true, "{name}");
        assert_eq!(
            (
                p["schema"]["minimum"].as_f64(),
                p["schema"]["maximum"].as_f64()
            ),
            (Some(-edge), Some(edge)),
            "{name}"
        );
    }
}

#[tokio::test]
async fn schema_valid_requests_are_accepted() {
    let app = TestApp::new().await;
    // 200 characters are 200 characters, whatever their UTF-8 length.
    let rider = uuid::Uuid::new_v4();
    app.put(&format!("/v1/admin/riders/{rider}"))
        .token(&app.admin())
        .json(serde_json::json!({"name": "ü".repeat(200), "active": true}))
        .send()
        .await
        .assert(StatusCode::OK);
    // An integer spelled with a zero fraction is an integer (JSON Schema).
    let (_, customer) = app.customer();
    let mut body = crate::support::place_order_body(crate::support::card());
    body["items"][0]["quantity"] = serde_json::json!(2.0);
    body["tip_minor"] = serde_json::json!(150.0);
    app.place(&customer, body.clone())
        .await
        .assert(StatusCode::CREATED);
    body["items"][0]["quantity"] = serde_json::json!(2.5);
    app.place(&customer, body)
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
}
