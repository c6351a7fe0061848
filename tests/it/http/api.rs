//! `POST /api` answers every verb as the ZeroMQ client endpoint does; the resource
//! routes map the stable error codes onto HTTP's status codes.

use bytes::Bytes;
use reqwest::Method;
use serde_json::{json, Value};

use super::HttpBus;

/// One session of every client verb, as a seed client would send it. Guids are given
/// so that both transports see the same tasks.
fn every_verb() -> Vec<Value> {
    let task = |guid: &str, page: u32| json!({"topic": "jd", "guid": guid, "body": {"page": page}});
    vec![
        json!({"type": "get_size", "topic": "jd"}),
        json!({"type": "get_task", "topic": "jd", "count": 3}),
        json!({"type": "put_task", "tasks": [task("g1", 1), task("g2", 2), task("g3", 3)]}),
        json!({"type": "get_size", "topic": "jd"}),
        json!({"type": "get_task", "topic": "jd", "count": 2}),
        json!({"type": "ack", "guids": ["g1", "nobody"]}),
        json!({"type": "nack", "guid": "g2", "retryable": false, "error": "boom"}),
        json!({"type": "task_status", "guid": "g2"}),
        json!({"type": "list_tasks", "topic": "jd"}),
        json!({"type": "dead_list", "topic": "jd"}),
        json!({"type": "dead_retry", "guids": ["g2"]}),
        json!({"type": "dead_purge", "topic": "jd"}),
        json!({"type": "add_task", "id": "daily", "topic": "jd",
               "trigger": {"cron": "0 3 * * *"}, "body": {"page": 0}}),
        json!({"type": "modify_task", "id": "daily", "trigger": {"cron": "0 4 * * *"}}),
        json!({"type": "pause_task", "id": "daily"}),
        json!({"type": "resume_task", "id": "daily"}),
        json!({"type": "delete_task", "id": "daily", "by": "ops"}),
        json!({"type": "delete_task", "id": "daily", "by": "ops"}),
        json!({"type": "task_status", "guid": "never-put"}),
        json!({"type": "stats"}),
        json!({"type": "frobnicate"}),
        json!({"type": "get_size", "topic": 5}),
        json!({"topic": "jd"}),
    ]
}

/// The reply with what depends on the moment (instants, ages, rates) blanked.
fn steady(value: Value) -> Value {
    match value {
        Value::Number(n) if n.is_f64() || n.as_u64().is_some_and(|n| n > 1_000_000_000) => {
            json!(0)
        }
        Value::String(s) if s.len() >= 19 && s.starts_with("20") && s.as_bytes()[10] == b'T' => {
            json!("instant")
        }
        Value::Array(items) => Value::Array(items.into_iter().map(steady).collect()),
        Value::Object(map) => map
            .into_iter()
            .filter(|(key, _)| !matches!(key.as_str(), "uptime_secs" | "next_fire" | "next_fires"))
            .map(|(key, value)| (key, steady(value)))
            .collect(),
        other => other,
    }
}

#[tokio::test]
async fn every_verb_answers_the_same_over_http_as_over_zeromq() {
    let over_zmq = HttpBus::start(|_| {}).await;
    let over_http = HttpBus::start(|_| {}).await;
    let mut client = over_zmq.client().await;
    for request in every_verb() {
        let raw = client
            .request_raw(Bytes::from(request.to_string()))
            .await
            .expect("the client endpoint answers");
        let want: Value = serde_json::from_slice(&raw).expect("a JSON reply");
        let (status, got) = over_http.api(&request).await;
        assert_eq!(steady(got.clone()), steady(want.clone()), "{request}");
        // An error reply keeps its code and gets the code's HTTP status.
        match want.get("code").and_then(Value::as_str) {
            Some(code) => assert_eq!(
                status,
                taskbus::http::status_of(code).as_u16(),
                "{request} -> {got}"
            ),
            None => assert_eq!(status, 200, "{request} -> {got}"),
        }
    }
    assert_eq!(
        over_http
            .api(&json!({"type": "get_size", "topic": "jd"}))
            .await
            .1,
        json!(2)
    );
    over_zmq.stop().await;
    over_http.stop().await;
}

#[tokio::test]
async fn resource_routes_answer_with_the_status_of_each_error_code() {
    let bus = HttpBus::start(|c| c.http.max_body_bytes = 64 * 1024).await;
    let admin = bus.tokens.admin.clone();
    let send = |method: Method, path: &str| bus.with_token(method, path, &admin);

    let put = send(Method::POST, "/api/topics/shop/tasks")
        .json(&json!([{"guid": "s1", "body": {"n": 1}}, {"body": {"n": 2}}]))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let put: Value = put.json().await.unwrap();
    let guids = put["guids"].as_array().expect("the guids");
    assert_eq!(guids.len(), 2);
    assert_eq!(guids[0], "s1");

    let size = send(Method::GET, "/api/topics/shop/size")
        .send()
        .await
        .unwrap();
    assert_eq!(size.json::<Value>().await.unwrap(), json!(2));
    let unknown = send(Method::GET, "/api/topics/nobody/size")
        .send()
        .await
        .unwrap();
    assert_eq!(
        unknown.json::<Value>().await.unwrap(),
        json!("invalid queue")
    );

    let task = send(Method::GET, "/api/tasks/s1").send().await.unwrap();
    assert_eq!(task.status(), 200);
    let task: Value = task.json().await.unwrap();
    assert_eq!(task["topic"], "shop", "{task}");
    let missing = send(Method::GET, "/api/tasks/never").send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.json::<Value>().await.unwrap()["code"], "not_found");

    let bad = send(Method::POST, "/api/topics/shop/tasks")
        .header("content-type", "application/json")
        .body("{\"tasks\": 7}")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(bad.json::<Value>().await.unwrap()["code"], "bad_request");

    let huge = send(Method::POST, "/api")
        .header("content-type", "application/json")
        .body(format!(
            "{{\"type\": \"stats\", \"pad\": \"{}\"}}",
            "x".repeat(100_000)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 413);

    let not_json = send(Method::POST, "/api")
        .body("\u{0093}\u{0001}")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);
    assert_eq!(not_json.json::<Value>().await.unwrap()["code"], "malformed");

    let spec =
        json!({"id": "nightly", "topic": "shop", "trigger": {"cron": "0 3 * * *"}, "body": {}});
    let added = send(Method::POST, "/api/total-tasks")
        .json(&spec)
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 200, "{:?}", added.text().await);
    let listed: Value = send(Method::GET, "/api/total-tasks")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(listed.to_string().contains("nightly"), "{listed}");
    let deleted = send(Method::DELETE, "/api/total-tasks/nightly")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    let again = send(Method::DELETE, "/api/total-tasks/nightly")
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);

    let health = bus.http.get(bus.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    bus.stop().await;
}

#[tokio::test]
async fn metrics_and_the_openapi_document_describe_the_bus() {
    let bus = HttpBus::start(|_| {}).await;
    let admin = bus.tokens.admin.clone();
    let (status, _) = bus
        .api(&json!({"type": "put_task", "tasks": [{"topic": "m", "body": {}}]}))
        .await;
    assert_eq!(status, 200);
    let metrics = bus
        .with_token(Method::GET, "/metrics", &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    let ready = text
        .lines()
        .find(|l| {
            l.starts_with("taskbus_tasks{")
                && l.contains("topic=\"m\"")
                && l.contains("state=\"ready\"")
        })
        .unwrap_or_else(|| panic!("no ready gauge for topic m in:\n{text}"));
    assert!(ready.ends_with(" 1"), "{ready}");

    let doc: Value = bus
        .with_token(Method::GET, "/api/openapi.json", &admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api",
        "/api/stats",
        "/api/topics/{topic}/tasks",
        "/api/dead/retry",
        "/api/users",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from the document"
        );
    }
    bus.stop().await;
}
