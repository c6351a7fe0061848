//! Every page once, as an admin: a screenshot of each (wide, phone, Chinese, dark)
//! and no serious or critical axe-core violation on any.

use serde_json::json;
use taskbus::task::NewTask;
use zeromq::{DealerSocket, Socket, SocketSend, ZmqMessage};

use super::{Rig, ADMIN};

/// A bus with something on every page: topics, a worker, a dead letter, a total
/// task, a token. Returns a live task's guid and the worker's socket (kept open).
async fn furnish(rig: &Rig) -> (String, DealerSocket) {
    let mut client = rig.client().await;
    let tasks: Vec<NewTask> = (0..5)
        .map(|i| NewTask::new(if i < 3 { "pages" } else { "details" }, json!({"n": i})))
        .collect();
    let guids = client.put(&tasks).await.unwrap();
    super::pages::kill_one(&mut client, "fragile", "HTTP 503 from upstream").await;
    client
        .request(&json!({"type": "add_task", "id": "nightly", "topic": "reports", "trigger": {"cron": "0 3 * * *"}}))
        .await
        .unwrap();
    let mut worker = DealerSocket::new();
    worker.connect(&rig.endpoints.worker).await.unwrap();
    let ready = json!({"type": "ready", "stage": "fetcher", "topics": ["pages"], "capacity": 2});
    worker
        .send(ZmqMessage::from(rmp_serde::to_vec_named(&ready).unwrap()))
        .await
        .unwrap();
    crate::common::until_stats(&mut client, super::LIMIT, |s| {
        crate::common::n_workers(s) == 1
    })
    .await;
    rig.accounts
        .create_token("ci-feeder", taskbus::accounts::Role::Operator)
        .unwrap();
    (guids[0].clone(), worker)
}

const PAGES: &[(&str, &str)] = &[
    ("overview-wide", "/"),
    ("workers", "/workers"),
    ("topic", "/topic?name=pages"),
    ("topic-leased", "/topic?name=pages&state=leased"),
    ("schedules-admin", "/schedules"),
    ("dead-admin", "/dead"),
    ("audit-admin", "/audit"),
    ("users", "/users"),
    ("search-miss", "/search?q=no-such-thing"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_has_a_screenshot_and_no_serious_accessibility_violation() {
    let Some(rig) = Rig::start().await else {
        return;
    };
    let (guid, _worker) = furnish(&rig).await;
    let mut violations = rig_login_page_axe(&rig).await;
    rig.login(ADMIN).await;
    let task_page = format!("/task?guid={guid}");
    let pages = PAGES.iter().copied().chain([("task", task_page.as_str())]);
    for (name, path) in pages {
        rig.goto(path).await;
        rig.screenshot(name).await;
        violations.extend(rig.axe().await);
    }
    // The task page shows the body the client put.
    rig.goto(&task_page).await;
    let text = rig.text().await;
    assert!(
        text.contains("\"n\": 0"),
        "no body on the task page:\n{text}"
    );
    // "details" has ready tasks and no worker; "pages" has its fetcher.
    rig.goto("/workers").await;
    let orphans = rig
        .js("return Array.from(document.querySelectorAll('#orphans a')).map(a => a.textContent);")
        .await;
    assert_eq!(orphans, json!(["details"]));
    // Search finds a topic by name and a task by guid.
    rig.goto("/search?q=details").await;
    rig.until("the topic page", "return location.pathname === '/topic';")
        .await;
    rig.goto("/search?q=age").await;
    let near = rig
        .js("return Array.from(document.querySelectorAll('#near a')).map(a => a.textContent);")
        .await;
    assert_eq!(near, json!(["pages"]), "topics that contain the text");
    rig.goto(&format!("/search?q={guid}")).await;
    rig.until("the task page", "return location.pathname === '/task';")
        .await;
    // A token is shown once, on the page that created it.
    rig.goto("/users").await;
    rig.fill("#t-name", "nightly-report").await;
    rig.click("form[action^='/tokens?'] button").await;
    rig.until(
        "the new token",
        "return !!document.getElementById('new-token');",
    )
    .await;
    let secret = rig
        .js("return document.getElementById('new-token').textContent;")
        .await;
    assert!(
        secret.as_str().is_some_and(|s| s.starts_with("tbk_")),
        "{secret}"
    );
    rig.screenshot("token-created").await;
    // Chinese, from the footer link.
    rig.goto("/").await;
    rig.click("footer a[lang='zh-CN']").await;
    rig.until(
        "the Chinese overview",
        "return document.documentElement.lang === 'zh-CN';",
    )
    .await;
    assert!(rig.text().await.contains("概览"));
    rig.screenshot("overview-zh").await;
    violations.extend(rig.axe().await);
    // A phone.
    rig.browser.set_window_size(390, 844).await.unwrap();
    rig.goto("/dead").await;
    rig.screenshot("dead-phone").await;
    violations.extend(rig.axe().await);
    rig.goto("/").await;
    rig.screenshot("overview-phone").await;
    assert!(
        violations.is_empty(),
        "axe-core found:\n{}",
        violations.join("\n")
    );
    rig.stop().await;
}

async fn rig_login_page_axe(rig: &Rig) -> Vec<String> {
    rig.goto("/login").await;
    rig.axe().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dark_scheme_follows_the_system_and_passes_axe() {
    let Some(rig) = Rig::start_with(&[
        "--force-dark-mode",
        "--blink-settings=preferredColorScheme=0",
    ])
    .await
    else {
        return;
    };
    let _bus = furnish(&rig).await;
    rig.login(ADMIN).await;
    let dark = rig
        .js("return matchMedia('(prefers-color-scheme: dark)').matches;")
        .await;
    assert_eq!(dark, json!(true), "the browser was asked for a dark scheme");
    let mut violations = Vec::new();
    for (name, path) in [
        ("overview-dark", "/"),
        ("dead-dark", "/dead"),
        ("users-dark", "/users"),
    ] {
        rig.goto(path).await;
        rig.screenshot(name).await;
        violations.extend(rig.axe().await);
    }
    assert!(
        violations.is_empty(),
        "axe-core found:\n{}",
        violations.join("\n")
    );
    rig.stop().await;
}
