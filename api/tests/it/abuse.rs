//! Issue 13's token, abuse and existence-leak regressions: the year-3000
//! token, rate limits with `Retry-After`, the CORS allowlist, and the rider's
//! existence probe answered with the same 404 on cash and card orders.

use axum::http::{HeaderValue, StatusCode};
use chrono::Utc;
use ordertrail_api::auth::Claims;
use ordertrail_api::limits::{Budget, RateLimits};
use uuid::Uuid;

use crate::support::{TestApp, card, cash, place_order_body, rider};

#[tokio::test]
async fn a_token_valid_until_the_year_3000_is_refused_with_a_stable_code() {
    let app = TestApp::new().await;
    let customer = Uuid::new_v4().to_string();
    let before = app.event_count().await;
    let year_3000 = 32_503_680_000; // 3000-01-01T00:00:00Z
    for iat in [Some(Utc::now().timestamp()), None] {
        let token = app
            .auth
            .sign(&Claims {
                sub: customer.clone(),
                role: "customer".into(),
                exp: year_3000,
                iat,
                nbf: None,
                iss: None,
                aud: None,
            })
            .unwrap();
        app.place(&token, place_order_body(card()))
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "token_lifetime_too_long");
        app.get_as(&token, "/v1/orders")
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "token_lifetime_too_long");
    }
    // A token that is not valid yet is refused too.
    let now = Utc::now().timestamp();
    let later = app
        .auth
        .sign(&Claims {
            sub: customer.clone(),
            role: "customer".into(),
            exp: now + 3600,
            iat: Some(now),
            nbf: Some(now + 1800),
            iss: None,
            aud: None,
        })
        .unwrap();
    app.get_as(&later, "/v1/orders")
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "token_not_yet_valid");
    assert_eq!(app.event_count().await, before);
}

#[tokio::test]
async fn a_rider_not_assigned_gets_the_same_404_on_cash_and_card_orders() {
    let app = TestApp::new().await;
    let (_, customer) = app.customer();
    let cash = app.place_order(&customer, cash()).await;
    let card_order = app.place_order(&customer, card()).await;
    let unknown = Uuid::new_v4();
    let prober = app.rider(rider(3));
    let before = app.event_count().await;

    let mut answers = Vec::new();
    for order in [cash, card_order, unknown] {
        let r = app.order_step(&prober, order, "cash-collected").await;
        r.assert_error(StatusCode::NOT_FOUND, "order_not_found");
        // Apart from the id, the message is the same as for an unknown order.
        answers.push(
            r.body["message"]
                .as_str()
                .unwrap()
                .replace(&order.to_string(), "ID"),
        );
    }
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    assert_eq!(app.event_count().await, before);

    // Ops still learn the payment method mismatch.
    app.order_step(&app.ops(), card_order, "cash-collected")
        .await
        .assert_error(StatusCode::CONFLICT, "payment_method_mismatch");
}

fn limits(commands: u32, queries: u32, per_address: u32) -> RateLimits {
    RateLimits {
        commands_per_subject: Budget {
            per_minute: commands,
        },
        queries_per_subject: Budget {
            per_minute: queries,
        },
        commands_per_address: Budget {
            per_minute: per_address,
        },
        queries_per_address: Budget {
            per_minute: per_address,
        },
        trust_forwarded_for: true,
    }
}

#[tokio::test]
async fn commands_over_a_subjects_budget_get_429_with_retry_after() {
    let app = TestApp::configured(|s| s.with_rate_limits(limits(2, 3, 0))).await;
    let (_, alice) = app.customer();
    let (_, bob) = app.customer();

    for _ in 0..2 {
        app.place(&alice, place_order_body(card()))
            .await
            .assert(StatusCode::CREATED);
    }
    let before = app.event_count().await;
    let limited = app.place(&alice, place_order_body(card())).await;
    limited.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // 2 a minute: the next token comes within 30 s.
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    assert_eq!(
        limited.body["details"]["retry_after_seconds"].as_u64(),
        Some(retry_after)
    );
    assert_eq!(
        app.event_count().await,
        before,
        "a limited command appends nothing"
    );

    // Another subject has its own budget; queries have their own budget.
    app.place(&bob, place_order_body(card()))
        .await
        .assert(StatusCode::CREATED);
    for _ in 0..3 {
        app.get_as(&alice, "/v1/orders")
            .await
            .assert(StatusCode::OK);
    }
    app.get_as(&alice, "/v1/orders")
        .await
        .assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    // Health checks are never limited.
    app.get("/health/live").send().await.assert(StatusCode::OK);
}

#[tokio::test]
async fn requests_over_an_addresss_budget_get_429_whoever_sends_them() {
    let app = TestApp::configured(|s| s.with_rate_limits(limits(0, 0, 2))).await;
    let from = |n: u8| format!("203.0.113.{n}");
    for _ in 0..2 {
        // Different subjects, or no token at all, from one address.
        let (_, customer) = app.customer();
        app.get("/v1/orders")
            .token(&customer)
            .header("x-forwarded-for", &from(7))
            .send()
            .await
            .assert(StatusCode::OK);
    }
    let r = app
        .get("/v1/orders")
        .header("x-forwarded-for", &from(7))
        .send()
        .await;
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(r.headers.contains_key("retry-after"));
    // Another address is not affected.
    app.get("/v1/orders")
        .header("x-forwarded-for", &from(8))
        .send()
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "missing_token");
}

#[tokio::test]
async fn cors_answers_only_allowed_origins() {
    let allowed = "https://backoffice.example";
    let app = TestApp::configured(|s| {
        s.with_cors_origins(vec![HeaderValue::from_static("https://backoffice.example")])
    })
    .await;
    let preflight = |origin: &str| {
        app.request(axum::http::Method::OPTIONS, "/v1/orders")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type,idempotency-key",
            )
    };
    let ok = preflight(allowed).send().await;
    assert_eq!(
        ok.headers
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some(allowed)
    );
    let methods = ok.headers["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(methods.contains("POST"), "{methods}");
    let other = preflight("https://evil.example").send().await;
    assert!(!other.headers.contains_key("access-control-allow-origin"));

    // A simple request from an allowed origin gets the header (and exposes the request id).
    let (_, customer) = app.customer();
    let r = app
        .get("/v1/orders")
        .token(&customer)
        .header("origin", allowed)
        .send()
        .await;
    r.assert(StatusCode::OK);
    assert_eq!(r.headers["access-control-allow-origin"], allowed);
    let exposed = r.headers["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(exposed.contains("x-request-id"), "{exposed}");
    // Without configuration no origin is allowed.
    let plain = TestApp::new().await;
    let r = plain
        .get("/v1/orders")
        .token(&plain.customer().1)
        .header("origin", allowed)
        .send()
        .await;
    assert!(!r.headers.contains_key("access-control-allow-origin"));
}

/// One HTTP/1.1 request over TCP from `from` (a loopback address); the
/// status code of the answer.
async fn status_over_tcp(from: &str, addr: std::net::SocketAddr, forwarded_for: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let request = format!(
        "GET /v1/orders HTTP/1.1\r\nHost: {addr}\r\nX-Forwarded-For: {forwarded_for}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn without_a_trusted_proxy_the_address_is_the_tcp_peer_not_x_forwarded_for() {
    let untrusted = RateLimits {
        trust_forwarded_for: false,
        ..limits(0, 0, 2)
    };
    let app = TestApp::configured(|s| s.with_rate_limits(untrusted)).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = app
        .router
        .clone()
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    let server = tokio::spawn(async move { axum::serve(listener, service).await });
    // Each request claims another address; the peer is the same: 401, 401, 429.
    let mut statuses = Vec::new();
    for n in 1..=3 {
        statuses.push(status_over_tcp("127.0.0.1", addr, &format!("198.51.100.{n}")).await);
    }
    assert_eq!(statuses, [401, 401, 429]);
    // Another peer has its own budget.
    assert_eq!(
        status_over_tcp("127.0.0.2", addr, "198.51.100.1").await,
        401
    );
    server.abort();
}
