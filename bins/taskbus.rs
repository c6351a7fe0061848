//! `taskbus`: the client CLI and the all-in-one `run` (broker plus workers).

// glibc's malloc costs a fifth of the broker's time under load; mimalloc much less.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Duration;

use clap::{Parser, Subcommand};
use taskbus::cli::commands::{self, ClientCommand};
use taskbus::cli::{exit_with, shutdown_signal, CommonArgs};
use taskbus::client::Client;
use taskbus::protocol::Format;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "taskbus",
    version,
    about = "A ZeroMQ message bus for crawl pipelines and APK channel packaging"
)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    /// The broker's client endpoint (default: [broker] client_endpoint).
    #[arg(long, global = true)]
    endpoint: Option<String>,
    /// Speak JSON to the broker instead of MessagePack.
    #[arg(long, global = true)]
    json: bool,
    /// Seconds to wait for a reply.
    #[arg(long, global = true, default_value_t = 10.0)]
    timeout: f64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the broker and every [[workers]] entry in one process.
    Run,
    /// Crawl from one URL in this process and exit when done: `taskbus crawl URL
    /// --follow REGEX --field title=css:title --out rows.jsonl`.
    Crawl(taskbus::cli::crawl::CrawlArgs),
    /// Serve the packager's Redis intake alone ([packager] task_type = "redis"): no
    /// broker, no bus workers; until Ctrl-C, SIGTERM or SIGHUP.
    Packager,
    /// Write or read the channel of an APK by hand.
    Apk {
        #[command(subcommand)]
        command: taskbus::apk::cli::ApkCommand,
    },
    /// Users of the HTTP API and web site (the accounts file on this machine).
    User {
        #[command(subcommand)]
        command: taskbus::cli::accounts::UserCommand,
    },
    /// API tokens (`Authorization: Bearer TOKEN`).
    Token {
        #[command(subcommand)]
        command: taskbus::cli::accounts::TokenCommand,
    },
    #[command(flatten)]
    Client(ClientCommand),
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Err(error) = real_main(cli).await {
        exit_with(error);
    }
}

/// A token cancelled on Ctrl-C or SIGTERM (after the signal's own handling).
fn stop_on_signal(config: &std::sync::Arc<taskbus::config::Config>) -> CancellationToken {
    let stop = CancellationToken::new();
    tokio::spawn({
        let (stop, config) = (stop.clone(), config.clone());
        async move {
            taskbus::cli::on_signal(shutdown_signal().await, &config).await;
            stop.cancel();
        }
    });
    stop
}

async fn real_main(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run => {
            let config = cli.common.setup()?;
            let stop = stop_on_signal(&config);
            if !config.run.exit_when_idle {
                eprintln!("taskbus running (Ctrl-C stops)");
            }
            if let Some(summary) = taskbus::run::run(config, stop.cancelled_owned()).await? {
                println!("{}", taskbus::run::summary_text(&summary));
                if let Some(why) = summary.failure() {
                    anyhow::bail!("the crawl lost work: {why}");
                }
            }
            Ok(())
        }
        Command::Crawl(args) => taskbus::cli::crawl::run(args, &cli.common).await,
        Command::Packager => {
            let config = cli.common.setup()?;
            let stop = stop_on_signal(&config);
            taskbus::cli::serve_packager(&config, stop).await
        }
        Command::Apk { command } => taskbus::apk::cli::run(command),
        Command::User { command } => {
            taskbus::cli::accounts::user(&*cli.common.load_config()?, command)
        }
        Command::Token { command } => {
            taskbus::cli::accounts::token(&*cli.common.load_config()?, command)
        }
        Command::Client(command) => {
            let request = commands::request(command)?;
            let config = cli.common.load_config()?;
            let endpoint = cli
                .endpoint
                .unwrap_or_else(|| config.broker.client_endpoint.clone());
            let timeout = Duration::from_secs_f64(cli.timeout);
            let format = if cli.json {
                Format::Json
            } else {
                Format::MsgPack
            };
            let connect = Client::connect(&endpoint);
            let client = tokio::time::timeout(timeout, connect).await.map_err(|_| {
                anyhow::anyhow!("cannot connect to {endpoint} within {timeout:?}")
            })??;
            let mut client = client
                .with_format(format)
                .with_timeout(timeout)
                .with_token(config.auth.client_token());
            commands::run(&mut client, &request).await
        }
    }
}
