//! `taskbus-broker`: the broker alone.

// glibc's malloc costs a fifth of the broker's time under load; mimalloc much less.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use taskbus::broker::Broker;
use taskbus::cli::{exit_with, shutdown_signal, CommonArgs};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "taskbus-broker",
    version,
    about = "The taskbus broker: queues, leases, scheduler, client API"
)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Err(error) = real_main(cli).await {
        exit_with(error);
    }
}

async fn real_main(cli: Cli) -> anyhow::Result<()> {
    let config = cli.common.setup()?;
    let broker = Broker::bind(config.clone()).await?;
    let endpoints = broker.endpoints().clone();
    let shutdown = CancellationToken::new();
    let http = taskbus::http::start(
        &config.http,
        &config.store.data_dir,
        taskbus::run::http_limits(&config),
        broker.caller(),
        taskbus::web::pages(),
        shutdown.clone(),
    )
    .await?;
    let http = http.map_or_else(|| "off".to_owned(), |h| format!("http://{}", h.address));
    // One line on stdout with the bound endpoints, for scripts and tests.
    println!(
        "listening client={} worker={} events={} http={http}",
        endpoints.client, endpoints.worker, endpoints.events
    );
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = shutdown_signal().await;
        stop.cancel();
    });
    broker.run(shutdown).await?;
    Ok(())
}
