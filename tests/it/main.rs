//! The integration tests: one binary, one module per area.
//!
//! - `auth`: tokens on the ZeroMQ endpoints, the workers' secret, protected mode.
//! - `common`: starting brokers and workers in-process on port 0.
//! - `client_api`: the seed's get_task/get_size and the admin verbs, in JSON and MessagePack.
//! - `bad_input`: malformed frames and bodies get error replies; the broker keeps serving.
//! - `workers`: credit, DONE routing, FAIL and retries, dead workers, reconnects.
//! - `python`: the seed's Python clients and a Python worker against the broker.
//! - `cli`: the binaries as a user runs them.
//! - `crawl`: the crawl stages in-process and as a pipeline on the bus (see its `mod.rs`).
//! - `scheduler`: the scheduler's logic at controlled instants, and inside the broker.
//! - `storer`: rows into SQLite and the real MariaDB.
//! - `tidy`: rules of ARCHITECTURE.md that the compiler does not check.
//! - `protocol_doc`: what docs/PROTOCOL.md promises a worker, statement by statement.
//! - `regressions`: the broker's second pass, a test per defect it fixed.
//! - `http`: the HTTP API, accounts, sessions and roles through real HTTP.
//! - `packager`: the APK channel packager and the apk module (bus, Redis, fixtures).
//! - `web`: the web site in a headless Chromium (screenshots, axe-core).
//! - `wire_limits`: hostile peers against the broker binary's transport limits.

mod auth;
mod bad_input;
mod cli;
mod client_api;
mod common;
mod crawl;
mod durable;
mod http;
mod packager;
mod protocol_doc;
mod python;
mod regressions;
mod scheduler;
mod storer;
mod tidy;
mod web;
mod wire_limits;
mod workers;
