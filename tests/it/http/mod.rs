//! The HTTP face through real HTTP: `POST /api` against the ZeroMQ client endpoint,
//! the resource routes and their status codes, accounts, roles, tokens, sessions
//! with CSRF, the login throttle, `/metrics` and the OpenAPI document.
//!
//! - `api`: every verb gives the same reply over both transports; status codes.
//! - `access`: roles, revoked tokens, login, CSRF, logout, throttle, audit.
//! - `schema`: schemathesis against the OpenAPI document.

mod access;
mod api;
mod schema;

use std::sync::Arc;

use reqwest::header::AUTHORIZATION;
use taskbus::accounts::{Accounts, Role};
use taskbus::broker::{Broker, Endpoints};
use taskbus::client::Client;
use taskbus::config::Config;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::common::config;

/// A broker with its HTTP face on a free port, accounts in a temporary directory,
/// and one user and one token per role.
pub struct HttpBus {
    pub base: String,
    pub endpoints: Endpoints,
    pub accounts: Accounts,
    /// A token of each role: `tokens.admin` and so on.
    pub tokens: Tokens,
    pub http: reqwest::Client,
    stop: CancellationToken,
    broker: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

pub struct Tokens {
    pub admin: String,
    pub operator: String,
    pub worker: String,
    pub viewer: String,
}

/// Every user's password in these tests.
pub const PASSWORD: &str = "correct horse battery";

impl HttpBus {
    pub async fn start(edit: impl FnOnce(&mut Config)) -> HttpBus {
        let dir = tempfile::tempdir().unwrap();
        let accounts_path = dir.path().join("accounts.sqlite3");
        let config: Arc<Config> = config(|c| {
            c.http.accounts_path = accounts_path.clone();
            edit(c)
        });
        let accounts = Accounts::open(&accounts_path).unwrap();
        for (name, role) in [
            ("ada", Role::Admin),
            ("otto", Role::Operator),
            ("wendy", Role::Worker),
            ("vera", Role::Viewer),
        ] {
            accounts.add_user(name, role, PASSWORD).unwrap();
        }
        let tokens = Tokens {
            admin: accounts.create_token("t-admin", Role::Admin).unwrap(),
            operator: accounts.create_token("t-operator", Role::Operator).unwrap(),
            worker: accounts.create_token("t-worker", Role::Worker).unwrap(),
            viewer: accounts.create_token("t-viewer", Role::Viewer).unwrap(),
        };
        let broker = Broker::bind(config.clone()).await.expect("broker binds");
        let endpoints = broker.endpoints().clone();
        let caller = broker.caller();
        let stop = CancellationToken::new();
        let token = stop.clone();
        let broker = tokio::spawn(async move { broker.run(token).await.expect("broker runs") });
        let running = taskbus::http::start(
            &config.http,
            dir.path(),
            taskbus::run::http_limits(&config),
            caller,
            taskbus::web::pages(),
            stop.clone(),
        )
        .await
        .expect("http starts")
        .expect("http is on");
        HttpBus {
            base: format!("http://{}", running.address),
            endpoints,
            accounts,
            tokens,
            http: reqwest::Client::new(),
            stop,
            broker,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.endpoints.client)
            .await
            .expect("client connects")
    }

    /// A request to `path` with `token` as its bearer.
    pub fn with_token(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .header(AUTHORIZATION, format!("Bearer {token}"))
    }

    /// `POST /api` with `body` as the admin: the status and the JSON reply.
    pub async fn api(&self, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let response = self
            .with_token(reqwest::Method::POST, "/api", &self.tokens.admin)
            .json(body)
            .send()
            .await
            .expect("POST /api answers");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON reply"))
    }

    pub async fn stop(self) {
        self.stop.cancel();
        self.broker.await.expect("broker task");
    }
}
