//! The HTTP face over TLS: a self-signed certificate made here, a client that
//! trusts only it.

use std::time::Duration;

use taskbus::broker::Broker;
use tokio_util::sync::CancellationToken;

use crate::common::config;

#[tokio::test]
async fn healthz_answers_over_https_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_pem = made.cert.pem();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let config = config(|c| {
        c.http.tls_cert = cert.clone();
        c.http.tls_key = key.clone();
        c.http.accounts_path = dir.path().join("accounts.sqlite3");
    });
    let broker = Broker::bind(config.clone()).await.unwrap();
    let stop = CancellationToken::new();
    let limits = taskbus::run::http_limits(&config);
    let http = taskbus::http::start(
        &config.http,
        dir.path(),
        limits,
        broker.caller(),
        taskbus::http::Pages::default(),
        stop.clone(),
    )
    .await
    .expect("https starts")
    .expect("http is on");
    let broker_task = tokio::spawn(broker.run(stop.clone()));
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap()])
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let port = http.address.port();
    let reply = client
        .get(format!("https://localhost:{port}/healthz"))
        .send()
        .await
        .expect("an https reply");
    assert!(reply.status().is_success());
    assert_eq!(reply.text().await.unwrap(), "ok\n");
    // Plain HTTP on the same port is not served.
    let plain = reqwest::Client::new()
        .get(format!("http://localhost:{port}/healthz"))
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    assert!(plain.map_or(true, |reply| !reply.status().is_success()));
    stop.cancel();
    broker_task.await.unwrap().unwrap();
    http.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_missing_key_fails_the_start_naming_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(|c| {
        c.http.tls_cert = dir.path().join("absent-cert.pem");
        c.http.tls_key = dir.path().join("absent-key.pem");
    });
    let broker = Broker::bind(config.clone()).await.unwrap();
    let limits = taskbus::run::http_limits(&config);
    let started = taskbus::http::start(
        &config.http,
        dir.path(),
        limits,
        broker.caller(),
        taskbus::http::Pages::default(),
        CancellationToken::new(),
    )
    .await;
    let error = started
        .err()
        .expect("no https without its files")
        .to_string();
    assert!(error.contains("absent-cert.pem"), "{error}");
}
