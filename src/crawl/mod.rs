//! The crawl stages, pure of the message bus: the `local_task` envelope, the executor
//! (server task -> urls), the fetcher (urls -> results), the parser (results -> rows
//! and links to follow), and an example site to run them against. The worker stages
//! that move tasks over the bus wrap these functions.

pub mod canon;
pub mod charset;
pub mod config;
pub mod dedup;
pub mod envelope;
pub mod error;
pub mod executor;
mod extract;
pub mod fetcher;
mod follow;
mod limits;
pub mod parser;
mod request;
mod robots;
pub mod site;
pub mod site_data;
pub mod spider;
mod transform;

pub use config::{
    CrawlConfig, DedupConfig, ExecutorTemplate, FetcherConfig, FieldRule, FollowConfig, FollowRule,
    ParserConfig, ParserRule,
};
pub use dedup::DedupFilter;
pub use envelope::{
    Callback, Content, CrawlRef, LocalTask, ResultEntry, TaskBody, UrlEntry, UrlItem,
};
pub use error::CrawlError;
pub use executor::{execute, Executor, ExecutorRegistry, TemplateExecutor};
pub use fetcher::Fetcher;
pub use parser::{ParseOutput, Parser};
pub mod stage;
