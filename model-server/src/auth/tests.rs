//! The tokens file, the header check, and the layer over every route through
//! `tower::ServiceExt::oneshot`.

use axum::body::Body;
use axum::http::{Method, Request};
use axum::Router;
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;
use crate::http::app_with_auth;
use crate::metrics::RouteId;
use crate::state::{AppState, Limits};
use crate::test_models::TempDir;

fn tokens(content: &str) -> (TempDir, Arc<Tokens>) {
    let dir = TempDir::new("tokens");
    let tokens = Tokens::load(dir.write("tokens", content)).unwrap();
    (dir, tokens)
}

#[test]
fn the_file_format() {
    let content =
        b"# the operator's tokens\n\n  alpha  \r\nbeta\n\t# indented comment\nalpha\ngamma#1\n";
    let digests = parse(content).unwrap();
    assert_eq!(digests.len(), 3, "alpha (once), beta, gamma#1");
    assert!(parse(b"").unwrap().is_empty());
    assert!(parse(b"# nothing\n\n   \n").unwrap().is_empty());

    let e = parse(b"good\nbad token\n").unwrap_err();
    assert!(e.contains("line 2"), "{e}");
    assert!(!e.contains("bad"), "never the content: {e}");
    assert!(parse("caf\u{e9}".as_bytes())
        .unwrap_err()
        .contains("line 1"));
    assert!(parse(b"a\0b").is_err());
    let long = "x".repeat(MAX_TOKEN_LEN + 1);
    assert!(parse(long.as_bytes()).unwrap_err().contains("at most"));
    assert_eq!(
        parse("x".repeat(MAX_TOKEN_LEN).as_bytes()).unwrap().len(),
        1
    );
}

#[test]
fn tokens_are_compared_exactly_against_every_one() {
    let many: String = (0..100).map(|i| format!("token-{i:03}\n")).collect();
    let (_dir, t) = tokens(&many);
    assert_eq!(t.len(), 100);
    assert!(t.check(b"token-000"));
    assert!(t.check(b"token-099"), "the last one too");
    for wrong in [
        &b"token-100"[..],
        b"token-09",
        b"token-0999",
        b"TOKEN-000",
        b"",
        b" token-000",
    ] {
        assert!(!t.check(wrong), "{:?}", String::from_utf8_lossy(wrong));
    }
    let (_dir, none) = tokens("# no tokens yet\n");
    assert!(none.is_empty());
    assert!(!none.check(b""));
    assert!(!none.check(b"anything"));
    assert!(
        !format!("{t:?}").contains("token-0"),
        "Debug shows no tokens"
    );
}

#[test]
fn bearer_header_parsing() {
    assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
    assert_eq!(bearer(b"bearer   abc "), Some(&b"abc"[..]));
    assert_eq!(bearer(b"BEARER abc"), Some(&b"abc"[..]));
    assert_eq!(bearer(b"Bearer"), None);
    assert_eq!(bearer(b"Bearer "), None);
    assert_eq!(bearer(b"Basic YWxhZGRpbjpvcGVuc2VzYW1l"), None);
    assert_eq!(bearer(b"Bearerabc"), None);
    assert_eq!(bearer(b""), None);
}

#[test]
fn reload_replaces_the_set_and_keeps_it_when_the_file_is_bad() {
    let dir = TempDir::new("tokens-reload");
    let path = dir.write("tokens", "old\n");
    let t = Tokens::load(&path).unwrap();
    assert!(t.check(b"old"));
    assert!(!t.reload().unwrap(), "unchanged");

    dir.write("tokens", "new\n");
    assert!(t.reload().unwrap());
    assert!(
        !t.check(b"old"),
        "the old token is refused after the reload"
    );
    assert!(t.check(b"new"));

    dir.write("tokens", "new\nnot valid\n");
    assert!(t.reload().unwrap_err().to_string().contains("line 2"));
    assert!(t.check(b"new"), "an invalid file keeps the old set");
    std::fs::remove_file(&path).unwrap();
    assert!(t
        .reload()
        .unwrap_err()
        .to_string()
        .contains("cannot read the tokens file"));
    assert!(t.check(b"new"), "a missing file keeps the old set");

    dir.write("tokens", "");
    assert!(t.reload().unwrap());
    assert!(!t.check(b"new"), "an empty file accepts no token");
}

#[test]
fn security_reload_counts_in_metrics() {
    let dir = TempDir::new("tokens-metrics");
    let path = dir.write("tokens", "a\n");
    let state = state();
    let security = crate::security::Security {
        tls: None,
        auth: Some(Auth::new(Tokens::load(&path).unwrap(), false)),
    };
    let mut reload = crate::security::ReloadState::default();
    security.reload(state.metrics(), &mut reload);
    dir.write("tokens", "b\n");
    security.reload(state.metrics(), &mut reload);
    dir.write("tokens", "b c\n");
    security.reload(state.metrics(), &mut reload);
    security.reload(state.metrics(), &mut reload);
    let text = crate::http::metrics_text_for_tests(&state);
    assert!(
        text.contains(r#"model_server_reloads_total{file="tokens",result="changed"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"model_server_reloads_total{file="tokens",result="error"} 2"#),
        "{text}"
    );
    assert!(!text.contains("b c"));
}

fn state() -> AppState {
    AppState::new(
        "iris",
        crate::test_models::binary().clone(),
        "builtin",
        Limits::default(),
    )
}

struct Reply {
    status: StatusCode,
    challenge: Option<String>,
    json: serde_json::Value,
}

async fn call(router: &Router, method: Method, uri: &str, token: Option<&str>) -> Reply {
    let mut req = Request::builder().method(method.clone()).uri(uri);
    if let Some(token) = token {
        req = req.header(AUTHORIZATION, token);
    }
    let body = if method == Method::POST {
        req = req.header("content-type", "application/json");
        Body::from(r#"{"instances":[[5.1,3.5,1.4,0.2]]}"#)
    } else {
        Body::empty()
    };
    let response = router
        .clone()
        .oneshot(req.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let challenge = response
        .headers()
        .get(WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        challenge,
        json: serde_json::from_slice(&bytes).unwrap_or_default(),
    }
}

/// Every protected route, as (method, path): each answers 200 to a right request.
fn protected(state: &AppState) -> Vec<(Method, String)> {
    let v = state.model().short_digest();
    vec![
        (Method::POST, "/predict_iris".into()),
        (Method::GET, "/v1/models/iris".into()),
        (Method::POST, "/v1/models/iris:predict".into()),
        (Method::POST, "/v1/models/iris:explain".into()),
        (Method::GET, "/v2".into()),
        (Method::GET, "/v2/models/iris".into()),
        (Method::GET, format!("/v2/models/iris/versions/{v}")),
        (Method::GET, "/v2/models/iris/ready".into()),
        (Method::GET, format!("/v2/models/iris/versions/{v}/ready")),
        (Method::GET, "/constant".into()),
        (Method::POST, "/constant".into()),
    ]
}

#[tokio::test]
async fn every_protected_route_needs_a_valid_token() {
    let state = state();
    let (_dir, t) = tokens("right\nother\n");
    let router = app_with_auth(state.clone(), Some(&Auth::new(t, false)));
    for (method, path) in protected(&state) {
        let r = call(&router, method.clone(), &path, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        assert_eq!(r.challenge.as_deref(), Some(r#"Bearer realm="iris""#));
        assert!(r.json["error"]
            .as_str()
            .unwrap()
            .contains("missing bearer token"));

        for wrong in ["Bearer wrong", "Bearer righ", "Basic cmlnaHQ=", "right"] {
            let r = call(&router, method.clone(), &path, Some(wrong)).await;
            assert_eq!(
                r.status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} {wrong}"
            );
            assert!(r.json["error"].as_str().is_some());
        }
        let r = call(&router, method.clone(), &path, Some("Bearer wrong")).await;
        assert_eq!(
            r.challenge.as_deref(),
            Some(r#"Bearer realm="iris", error="invalid_token""#)
        );
        assert_eq!(r.json["error"], "invalid bearer token");

        for right in ["Bearer right", "bearer other"] {
            let r = call(&router, method.clone(), &path, Some(right)).await;
            assert_eq!(r.status, StatusCode::OK, "{method} {path}: {}", r.json);
            assert_eq!(r.challenge, None);
        }
    }
    // Counted with a bounded label, under the route.
    let m = state.metrics();
    assert_eq!(
        m.requests(RouteId::PredictIris, StatusCode::UNAUTHORIZED),
        6
    );
    assert_eq!(m.requests(RouteId::PredictIris, StatusCode::OK), 2);
    let text = crate::http::metrics_text_for_tests(&state);
    assert!(
        text.contains(r#"model_server_http_requests_total{route="/predict_iris",code="401"} 6"#),
        "{text}"
    );
    assert!(!text.contains("right"), "no token in the metrics");
}

#[tokio::test]
async fn health_is_open_and_metrics_per_flag() {
    let state = state();
    let (_dir, t) = tokens("right\n");
    let open_metrics = app_with_auth(state.clone(), Some(&Auth::new(t.clone(), false)));
    let closed_metrics = app_with_auth(state.clone(), Some(&Auth::new(t, true)));
    for router in [&open_metrics, &closed_metrics] {
        for path in ["/v2/health/live", "/v2/health/ready"] {
            let r = call(router, Method::GET, path, None).await;
            assert_eq!(r.status, StatusCode::OK, "{path}");
            let r = call(router, Method::GET, path, Some("Bearer wrong")).await;
            assert_eq!(r.status, StatusCode::OK, "{path} ignores a wrong token");
        }
        let r = call(router, Method::GET, "/nowhere", None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
    assert_eq!(
        call(&open_metrics, Method::GET, "/metrics", None)
            .await
            .status,
        StatusCode::OK
    );
    let r = call(&closed_metrics, Method::GET, "/metrics", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.challenge.as_deref(), Some(r#"Bearer realm="iris""#));
    let r = call(
        &closed_metrics,
        Method::GET,
        "/metrics",
        Some("Bearer right"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn a_reloaded_file_takes_effect_on_the_router() {
    let state = state();
    let dir = TempDir::new("tokens-router");
    let t = Tokens::load(dir.write("tokens", "first\n")).unwrap();
    let router = app_with_auth(state, Some(&Auth::new(t.clone(), false)));
    let ok = |token| call(&router, Method::GET, "/v2", Some(token));
    assert_eq!(ok("Bearer first").await.status, StatusCode::OK);
    dir.write("tokens", "second\n");
    assert!(t.reload().unwrap());
    assert_eq!(ok("Bearer first").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(ok("Bearer second").await.status, StatusCode::OK);
}

#[tokio::test]
async fn without_tokens_nothing_is_asked() {
    let state = state();
    let router = crate::http::app(state.clone());
    for (method, path) in protected(&state) {
        let r = call(&router, method.clone(), &path, None).await;
        assert_eq!(r.status, StatusCode::OK, "{method} {path}");
    }
}
