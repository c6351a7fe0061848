//! `taskbus crawl URL --follow REGEX --field title=css:title --out rows.jsonl`: a
//! spider from the command line, run in this process (broker with the memory store,
//! fetcher, parser, storer) until the work is done, like `taskbus run`.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use super::CommonArgs;
use crate::config::{self, Config, StoreKind, WorkerSpec};
use crate::crawl::spider::{parse_field_arg, SpiderConfig, SpiderRule};
use crate::crawl::stage::{FETCH_TOPIC, PARSE_TOPIC, STORE_TOPIC};

/// What `taskbus crawl` takes.
#[derive(Debug, Clone, Args)]
pub struct CrawlArgs {
    /// The first page(s).
    #[arg(required = true)]
    pub urls: Vec<String>,
    /// Follow links matching this regex (repeatable); without it no link is followed.
    #[arg(long)]
    pub follow: Vec<String>,
    /// Do not follow links matching this regex (repeatable).
    #[arg(long)]
    pub deny: Vec<String>,
    /// A column: NAME=css:SELECTOR, NAME=css:SELECTOR::attr(NAME) or NAME=json:PATH,
    /// optionally `| transform` (repeatable).
    #[arg(long = "field")]
    pub fields: Vec<String>,
    /// Where rows go: a .jsonl or .csv feed, or a .sqlite3 file (table `crawl`).
    #[arg(long, default_value = "crawl.jsonl")]
    pub out: PathBuf,
    /// Host names to stay on (subdomains included); default: the start URLs' hosts.
    #[arg(long = "domain")]
    pub domains: Vec<String>,
    /// Most hops from a start URL; 0: no limit.
    #[arg(long, default_value_t = 0)]
    pub depth: u32,
    /// Ignore robots.txt.
    #[arg(long)]
    pub no_robots: bool,
    /// Give up after this many seconds (exit non-zero); 0: no limit.
    #[arg(long, default_value_t = 0.0)]
    pub max_secs: f64,
}

/// Runs the crawl; an error when it could not start or lost work.
pub async fn run(args: CrawlArgs, common: &CommonArgs) -> anyhow::Result<()> {
    let config = Arc::new(crawl_config(&args, common)?);
    crate::logging::init(&config.log, common.log_level.as_deref().or(Some("warn")))?;
    let summary = crate::run::run(config, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    let Some(summary) = summary else {
        anyhow::bail!("crawl interrupted");
    };
    eprintln!("{}", crate::run::summary_text(&summary));
    if let Some(why) = summary.failure() {
        anyhow::bail!("the crawl lost work: {why}");
    }
    Ok(())
}

/// The configuration of a one-line crawl: `--config` (or the defaults) for the
/// fetcher and storer settings, one spider, the three stages, a memory store and
/// free local ports.
pub fn crawl_config(args: &CrawlArgs, common: &CommonArgs) -> anyhow::Result<Config> {
    let mut config = match &common.config {
        Some(path) => config::load(Some(path), std::env::vars())?,
        None => config::load(None, std::env::vars())?,
    };
    let env_set = |name: &str| std::env::var_os(format!("{}{name}", config::ENV_PREFIX)).is_some();
    for (name, endpoint) in [
        (
            "BROKER__CLIENT_ENDPOINT",
            &mut config.broker.client_endpoint,
        ),
        (
            "BROKER__WORKER_ENDPOINT",
            &mut config.broker.worker_endpoint,
        ),
        (
            "BROKER__EVENTS_ENDPOINT",
            &mut config.broker.events_endpoint,
        ),
    ] {
        if !env_set(name) {
            *endpoint = "tcp://127.0.0.1:0".to_string();
        }
    }
    if !env_set("HTTP__LISTEN") {
        config.http.listen = String::new();
    }
    config.worker.broker_endpoint.clear();
    config.worker.events_endpoint.clear();
    config.store.kind = StoreKind::Memory;
    config.crawl.fetcher.obey_robots = !args.no_robots;
    config.crawl.spiders = vec![spider(args)?];
    config.run = crate::config::RunConfig {
        exit_when_idle: true,
        max_secs: args.max_secs,
        progress_secs: 0.0,
        ..Default::default()
    };
    config.workers = [
        ("fetcher", FETCH_TOPIC, 16),
        ("parser", PARSE_TOPIC, 16),
        ("storer", STORE_TOPIC, 64),
    ]
    .into_iter()
    .map(|(stage, topic, capacity)| WorkerSpec {
        stage: stage.to_string(),
        topics: vec![topic.to_string()],
        capacity,
        count: 1,
        next_topic: None,
    })
    .collect();
    let out = args.out.to_string_lossy().to_ascii_lowercase();
    if out.ends_with(".sqlite3") || out.ends_with(".sqlite") || out.ends_with(".db") {
        config.storer.url.clear();
        config.storer.sqlite_path = args.out.clone();
    }
    config.wire_spider_feeds();
    Ok(config)
}

fn spider(args: &CrawlArgs) -> anyhow::Result<SpiderConfig> {
    let mut fields = std::collections::BTreeMap::new();
    for arg in &args.fields {
        let (name, spec) = parse_field_arg(arg).map_err(|e| anyhow::anyhow!("--field: {e}"))?;
        fields.insert(name, spec);
    }
    let follow = if args.follow.is_empty() {
        Vec::new()
    } else {
        vec![SpiderRule {
            allow: crate::crawl::spider::Patterns::Many(args.follow.clone()),
            deny: crate::crawl::spider::Patterns::Many(args.deny.clone()),
            ..SpiderRule::default()
        }]
    };
    let out = args.out.to_string_lossy().to_string();
    let lower = out.to_ascii_lowercase();
    let feed = if lower.ends_with(".jsonl") || lower.ends_with(".csv") {
        out
    } else {
        String::new()
    };
    let spider = SpiderConfig {
        name: "crawl".to_string(),
        start_urls: args.urls.clone(),
        allowed_domains: args.domains.clone(),
        follow,
        max_depth: args.depth,
        fields,
        table: String::new(),
        feed,
    };
    spider
        .validate()
        .map_err(|e| anyhow::anyhow!("taskbus crawl: {e}"))?;
    Ok(spider)
}
