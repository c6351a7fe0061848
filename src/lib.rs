//! taskbus: a ZeroMQ message bus for crawl pipelines and APK channel packaging.

pub mod accounts;
pub mod apk;
pub mod auth;
pub mod bench;
pub mod body;
pub mod broker;
pub mod cli;
pub mod client;
pub mod config;
pub mod crawl;
pub mod http;
pub mod logging;
pub mod net;
pub mod packager;
pub mod protocol;
pub mod run;
pub mod scheduler;
pub mod stages;
pub mod store;
pub mod storer;
pub mod task;
pub mod web;
pub mod worker;
