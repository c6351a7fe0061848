//! Who may do what over HTTP: roles per verb, tokens that stop working when revoked,
//! browser sessions with their CSRF token, the login throttle and the audit log.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::{HttpBus, PASSWORD};

#[tokio::test]
async fn each_role_may_do_what_it_allows_and_no_more() {
    let bus = HttpBus::start(|_| {}).await;
    let put = json!({"type": "put_task", "tasks": [{"topic": "r", "body": {}}]});
    let size = json!({"type": "get_size", "topic": "r"});
    let purge = json!({"type": "dead_purge", "topic": "r"});
    let cases = [
        (&bus.tokens.viewer, &size, StatusCode::OK),
        (&bus.tokens.viewer, &put, StatusCode::FORBIDDEN),
        (&bus.tokens.viewer, &purge, StatusCode::FORBIDDEN),
        (&bus.tokens.worker, &size, StatusCode::OK),
        (&bus.tokens.worker, &purge, StatusCode::FORBIDDEN),
        (&bus.tokens.operator, &put, StatusCode::OK),
        (&bus.tokens.operator, &purge, StatusCode::OK),
    ];
    for (token, request, want) in cases {
        let response = bus
            .with_token(Method::POST, "/api", token)
            .json(request)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, want, "{request} -> {body}");
        if want == StatusCode::FORBIDDEN {
            assert_eq!(body["code"], "forbidden", "{body}");
        }
    }
    // Users and tokens are the admin's alone.
    let users = bus
        .with_token(Method::GET, "/api/users", &bus.tokens.operator)
        .send()
        .await
        .unwrap();
    assert_eq!(users.status(), StatusCode::FORBIDDEN);
    let users: Value = bus
        .with_token(Method::GET, "/api/users", &bus.tokens.admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(users.to_string().contains("vera"), "{users}");
    bus.stop().await;
}

#[tokio::test]
async fn no_token_a_wrong_one_or_a_revoked_one_gets_401() {
    let bus = HttpBus::start(|_| {}).await;
    let stats = |token: Option<&str>| {
        let request = bus.http.get(bus.url("/api/stats"));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    };
    let none = stats(None).send().await.unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(none.json::<Value>().await.unwrap()["code"], "unauthorized");
    let wrong = stats(Some("tbk_not-a-token")).send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        stats(Some(&bus.tokens.operator))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Revoked through the API by the admin: the next request is refused.
    let revoked = bus
        .with_token(Method::DELETE, "/api/tokens/t-operator", &bus.tokens.admin)
        .send()
        .await
        .unwrap();
    assert!(revoked.status().is_success(), "{}", revoked.status());
    let after = stats(Some(&bus.tokens.operator)).send().await.unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
    // The metrics and the OpenAPI document are behind the same guard; the health
    // check is not.
    assert_eq!(
        bus.http
            .get(bus.url("/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        bus.http
            .get(bus.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    bus.stop().await;
}

/// A browser-like client: cookies kept, redirects not followed.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn log_in(
    bus: &HttpBus,
    client: &reqwest::Client,
    user: &str,
    password: &str,
) -> reqwest::Response {
    client
        .post(bus.url("/login"))
        .form(&[("user", user), ("password", password)])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_session_needs_its_csrf_token_to_change_state_and_ends_at_logout() {
    let bus = HttpBus::start(|_| {}).await;
    let client = browser();
    let page = client.get(bus.url("/api/stats")).send().await.unwrap();
    assert_eq!(page.status(), 401);
    let wrong = log_in(&bus, &client, "otto", "not the password").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let logged = log_in(&bus, &client, "otto", PASSWORD).await;
    assert_eq!(
        logged.status(),
        StatusCode::SEE_OTHER,
        "{:?}",
        logged.text().await
    );
    let cookie = logged
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .expect("a session cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );

    let stats = client.get(bus.url("/api/stats")).send().await.unwrap();
    assert_eq!(stats.status(), 200);

    // A state change without the session's CSRF token is refused.
    let put = json!({"type": "put_task", "tasks": [{"topic": "c", "body": {}}]});
    let forged = client
        .post(bus.url("/api"))
        .json(&put)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let csrf = session_csrf(&bus, &cookie);
    let with_token = client
        .post(bus.url("/api"))
        .header("x-csrf-token", &csrf)
        .json(&put)
        .send()
        .await
        .unwrap();
    assert_eq!(with_token.status(), 200, "{:?}", with_token.text().await);

    let out = client
        .post(bus.url(&format!("/logout?csrf={csrf}")))
        .send()
        .await
        .unwrap();
    assert!(out.status().is_redirection(), "{}", out.status());
    assert_eq!(
        client
            .get(bus.url("/api/stats"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    bus.stop().await;
}

/// The CSRF token of the session that `set_cookie` opened, as the pages embed it.
fn session_csrf(bus: &HttpBus, set_cookie: &str) -> String {
    let id = set_cookie
        .split(';')
        .next()
        .and_then(|pair| pair.split_once('='))
        .map(|(_, id)| id.to_owned())
        .expect("cookie value");
    bus.accounts.session(&id).expect("a live session").csrf
}

#[tokio::test]
async fn failed_logins_lock_the_account_out_for_that_address() {
    let bus = HttpBus::start(|c| {
        c.http.login_attempts = 3;
        c.http.login_lockout_secs = 600;
    })
    .await;
    let client = browser();
    for _ in 0..3 {
        let refused = log_in(&bus, &client, "vera", "guess").await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    }
    // Locked: even the right password waits now.
    let locked = log_in(&bus, &client, "vera", PASSWORD).await;
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(locked.text().await.unwrap().contains("Try again in"));
    // Another account is not locked by vera's failures.
    let other = log_in(&bus, &client, "otto", PASSWORD).await;
    assert_eq!(other.status(), StatusCode::SEE_OTHER);
    bus.stop().await;
}

#[tokio::test]
async fn state_changes_are_audited_with_who_and_what() {
    let bus = HttpBus::start(|_| {}).await;
    let (status, _) = bus
        .api(&json!({"type": "put_task", "tasks": [{"topic": "a", "body": {}}]}))
        .await;
    assert_eq!(status, 200);
    let added = bus
        .with_token(Method::POST, "/api/total-tasks", &bus.tokens.operator)
        .json(&json!({"id": "t1", "topic": "a", "trigger": {"cron": "0 3 * * *"}, "body": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 200);
    let deleted = bus
        .with_token(Method::DELETE, "/api/total-tasks/t1", &bus.tokens.operator)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    // Reads are not audited.
    let _ = bus.api(&json!({"type": "stats"})).await;
    let lines: Value = bus
        .with_token(Method::GET, "/api/audit", &bus.tokens.viewer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = lines.to_string();
    assert!(
        text.contains("put_task") && text.contains("topics=a"),
        "{text}"
    );
    assert!(
        text.contains("delete_task") && text.contains("t1"),
        "{text}"
    );
    assert!(!text.contains("\"stats\""), "{text}");
    let whos: Vec<&str> = lines
        .as_array()
        .expect("a list of lines")
        .iter()
        .filter_map(|l| l["who"].as_str())
        .collect();
    assert_eq!(
        whos,
        ["token:t-operator", "token:t-operator", "token:t-admin"],
        "{text}"
    );
    bus.stop().await;
}
