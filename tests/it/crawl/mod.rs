//! The crawl stages: the library pieces in-process, then the whole pipeline on the bus.
//!
//! - `support`: the crawl test configuration (executors and parser rules) and fetcher
//!   helpers, shared by the modules below.
//! - `config`: the documented `[crawl]` section parses and builds every stage.
//! - `envelope`: the seed's `local_task` round-trips through JSON and MessagePack.
//! - `executor`: template executors fill `urls` from the task body; custom executors.
//! - `fetcher`: charsets, POST bodies, cookies, proxies, timeouts against the example site.
//! - `politeness`: retries, backoff, Retry-After, per-domain and global limits, `bulk`.
//! - `parser`: rows from HTML and JSON, link following with a bounded dedup filter.
//! - `site`: the example site itself.
//! - `pipeline`: executor -> fetcher -> parser chained in-process.
//! - `bus`: the four stages as workers of a broker, rows checked in SQLite and MariaDB.
//! - `spider_site`: a site for spiders (robots.txt, redirects, a flaky page, ...).
//! - `spider`: `[[crawl.spiders]]` through `taskbus run`: politeness, canonical URLs,
//!   retries, skips, feeds and tables.
//! - `command`: `taskbus crawl` through the binary.
//! - `demo`: `taskbus run` with the repository's bus.toml, and `taskbus-bench crawl`.

mod bus;
mod command;
mod config;
mod demo;
mod envelope;
mod executor;
mod fetcher;
mod parser;
mod pipeline;
mod politeness;
mod site;
mod spider;
mod spider_site;
mod support;
