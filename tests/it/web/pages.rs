//! The pages as an operator uses them: log in, watch the overview, retry a dead
//! letter, delete a total task; a viewer's limits; screenshots and axe-core.

use bytes::Bytes;
use serde_json::{json, Value};
use taskbus::task::NewTask;
use zeromq::{Socket, SocketRecv, SubSocket};

use super::{Rig, ADMIN, LIMIT, OPERATOR, VIEWER};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_logs_in_and_a_wrong_password_is_refused() {
    let Some(rig) = Rig::start().await else {
        return;
    };
    rig.goto("/").await;
    rig.until(
        "the login page for a visitor",
        "return location.pathname === '/login';",
    )
    .await;
    rig.screenshot("login").await;

    rig.fill("#user", ADMIN.0).await;
    rig.fill("#password", "not-the-password").await;
    rig.click("form[action='/login'] button").await;
    rig.until("the refusal", "return !!document.querySelector('p.error');")
        .await;
    assert!(rig.text().await.contains("Wrong user name or password"));
    rig.screenshot("login-refused").await;
    rig.goto("/workers").await;
    rig.until("still outside", "return location.pathname === '/login';")
        .await;

    rig.login(ADMIN).await;
    let text = rig.text().await;
    assert!(text.contains(ADMIN.0), "the page names the user: {text}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_put_through_the_client_appear_on_the_overview_without_a_reload() {
    let Some(rig) = Rig::start().await else {
        return;
    };
    rig.login(VIEWER).await;
    rig.js("document.getElementById('interval').value = '1000'; document.getElementById('interval').dispatchEvent(new Event('change')); window.notReloaded = true; return true;").await;
    let mut client = rig.client().await;
    let tasks: Vec<NewTask> = (0..3)
        .map(|i| NewTask::new("fresh", json!({"n": i})))
        .collect();
    client.put(&tasks).await.unwrap();
    rig.until(
        "three ready tasks of a new topic",
        "const cell = document.querySelector('tr[data-topic=\"fresh\"] td[data-counter=\"ready\"]'); return !!cell && cell.textContent === '3';",
    )
    .await;
    assert_eq!(
        rig.js("return window.notReloaded === true;").await,
        json!(true),
        "the page was not reloaded"
    );

    client
        .put(&[NewTask::new("fresh", json!({"n": 3}))])
        .await
        .unwrap();
    rig.until(
        "the fourth",
        "return document.querySelector('tr[data-topic=\"fresh\"] td[data-counter=\"ready\"]').textContent === '4';",
    )
    .await;
    rig.screenshot("overview").await;
    rig.stop().await;
}

/// Puts a task on `topic` and lets it die at once with `error`; returns its guid.
async fn dead_letter(rig: &Rig, topic: &str, error: &str) -> String {
    kill_one(&mut rig.client().await, topic, error).await
}

/// Puts a task on `topic` and nacks it for good with `error`; returns its guid.
pub async fn kill_one(client: &mut taskbus::client::Client, topic: &str, error: &str) -> String {
    let mut task = NewTask::new(topic, json!({"url": "http://example.invalid/"}));
    task.max_retry = Some(0);
    let guid = client.put(&[task]).await.unwrap().remove(0);
    let taken = client.get_task(topic, 1).await.unwrap();
    assert_eq!(taken.len(), 1);
    let reply = client
        .request(&json!({"type": "nack", "guid": guid, "retryable": false, "error": error}))
        .await
        .unwrap();
    assert_eq!(reply["state"], "dead");
    guid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_retried_from_the_page_leaves_the_dead_list() {
    let Some(rig) = Rig::start().await else {
        return;
    };
    let guid = dead_letter(&rig, "fragile", "fetch timed out").await;
    rig.login(OPERATOR).await;
    rig.goto("/dead").await;
    let row = format!("tr[data-guid=\"{guid}\"]");
    rig.until(
        "the dead letter",
        &format!("return !!document.querySelector('{row}');"),
    )
    .await;
    assert!(
        rig.text().await.contains("fetch timed out"),
        "the reason is shown"
    );
    rig.screenshot("dead").await;

    rig.click(&format!("{row} form[action^='/dead/retry'] button"))
        .await;
    rig.until(
        "the dead list without it",
        &format!("return location.pathname === '/dead' && !document.querySelector('{row}');"),
    )
    .await;
    let mut client = rig.client().await;
    assert_eq!(
        client.get_size("fragile").await.unwrap(),
        Some(1),
        "back in its queue"
    );
    let audit = rig.accounts.audit_lines(10, None).unwrap();
    assert!(
        audit
            .iter()
            .any(|l| l.action == "dead_retry" && l.who == OPERATOR.0),
        "{audit:?}"
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_total_task_from_the_page_is_audited_and_announced() {
    let Some(rig) = Rig::start().await else {
        return;
    };
    let mut sub = SubSocket::new();
    sub.connect(&rig.endpoints.events).await.unwrap();
    sub.subscribe("task_deleted").await.unwrap();
    let mut client = rig.client().await;
    client
        .request(&json!({"type": "add_task", "id": "nightly", "topic": "reports", "trigger": {"cron": "0 3 * * *"}, "timezone": "Asia/Shanghai"}))
        .await
        .unwrap();

    rig.login(OPERATOR).await;
    rig.goto("/schedules").await;
    let row = "tr[data-id=\"nightly\"]";
    rig.until(
        "the total task",
        &format!("return !!document.querySelector('{row}');"),
    )
    .await;
    rig.screenshot("schedules").await;
    // A forged form without the CSRF token changes nothing.
    let forged = rig
        .js("return fetch('/schedules/nightly/delete', {method: 'POST'}).then(r => r.status);")
        .await;
    assert_eq!(forged, json!(403));

    rig.click(&format!("{row} a.danger")).await;
    rig.until(
        "the confirmation",
        "return !!document.getElementById('confirm-delete');",
    )
    .await;
    rig.screenshot("schedule-delete").await;
    rig.click("#confirm-delete").await;
    rig.until(
        "the list without it",
        &format!("return location.pathname === '/schedules' && !document.querySelector('{row}');"),
    )
    .await;

    let event = tokio::time::timeout(LIMIT, sub.recv())
        .await
        .expect("event in time")
        .unwrap();
    let frames = event.into_vec();
    assert_eq!(frames[0], Bytes::from_static(b"task_deleted"));
    let body: Value = rmp_serde::from_slice(&frames[1]).unwrap();
    assert_eq!(
        (body["id"].as_str(), body["by"].as_str()),
        (Some("nightly"), Some(OPERATOR.0))
    );
    let audit = rig.accounts.audit_lines(10, None).unwrap();
    assert!(
        audit
            .iter()
            .any(|l| l.action == "delete_task" && l.detail == "id=nightly" && l.who == OPERATOR.0),
        "{audit:?}"
    );
    rig.goto("/audit").await;
    let text = rig.text().await;
    assert!(
        text.contains("delete_task") && text.contains("id=nightly"),
        "{text}"
    );
    rig.screenshot("audit").await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_no_destructive_button_and_a_forged_post_is_forbidden() {
    let Some(rig) = Rig::start().await else {
        return;
    };
    let guid = dead_letter(&rig, "fragile", "parse error").await;
    let mut client = rig.client().await;
    client
        .request(&json!({"type": "add_task", "id": "hourly", "topic": "reports", "trigger": {"interval": 3600}}))
        .await
        .unwrap();
    rig.login(VIEWER).await;
    for page in ["/schedules", "/dead", "/schedules/hourly/delete"] {
        rig.goto(page).await;
        let buttons = rig.js("return document.querySelectorAll('main form[method=post] button, main .danger').length;").await;
        assert_eq!(
            buttons,
            json!(0),
            "{page} shows a viewer no state-changing control"
        );
    }
    rig.screenshot("viewer-dead").await;
    // With the session's own CSRF token, the role still says no.
    let forge = "const csrf = new URL(document.querySelector('form[action^=\"/logout\"]').action).searchParams.get('csrf');
        return Promise.all([
          fetch('/schedules/hourly/delete?csrf=' + csrf, {method: 'POST'}).then(r => r.status),
          fetch('/dead/purge?csrf=' + csrf, {method: 'POST', headers: {'content-type': 'application/x-www-form-urlencoded'}, body: 'all=1&confirm=1'}).then(r => r.status),
          fetch('/users?csrf=' + csrf, {method: 'POST', headers: {'content-type': 'application/x-www-form-urlencoded'}, body: 'name=mallory&role=admin&password=mallory-password'}).then(r => r.status),
          fetch('/users').then(r => r.status)
        ]);";
    assert_eq!(rig.js(forge).await, json!([403, 403, 403, 403]));
    let listed = client
        .request(&json!({"type": "list_tasks"}))
        .await
        .unwrap();
    assert_eq!(listed["scheduled"][0]["id"], "hourly", "still there");
    assert!(
        client
            .request(&json!({"type": "task_status", "guid": guid}))
            .await
            .unwrap()["state"]
            == "dead"
    );
    assert!(rig
        .accounts
        .list_users()
        .unwrap()
        .iter()
        .all(|u| u.name != "mallory"));
    rig.stop().await;
}
