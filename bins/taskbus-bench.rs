//! `taskbus-bench`: measured runs of example pipelines.

// glibc's malloc costs a fifth of the broker's time under load; mimalloc much less.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use taskbus::bench::{self, hop::HopArgs};
use taskbus::cli::exit_with;

#[derive(Parser)]
#[command(name = "taskbus-bench", version, about = "taskbus benchmarks")]
struct Cli {
    /// Level of the log lines on stderr.
    #[arg(long, default_value = "warn", global = true)]
    log_level: String,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// One hop: put -> echo worker -> DONE, through a broker over loopback TCP.
    Hop(HopArgs),
    /// The seed's client loop over HTTP: POST /api get_task + ack on keep-alive connections.
    Http(taskbus::bench::http::HttpArgs),
    /// What a queued task costs: broker RSS growth over the payload, and after a restart.
    Memory(taskbus::bench::memory::MemoryArgs),
    /// Time for a broker to serve again with N ready tasks in its store.
    Restart(taskbus::bench::restart::RestartArgs),
    /// A link-following crawl through the four crawl stages, like `scrapy bench`.
    Crawl(taskbus::bench::crawl::CrawlArgs),
    /// Channel packages of a mother APK, side by side with a plain copy.
    Package(taskbus::bench::package::PackageBenchArgs),
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Err(error) = real_main(cli).await {
        exit_with(error);
    }
}

async fn real_main(cli: Cli) -> anyhow::Result<()> {
    let level = cli
        .log_level
        .parse()
        .map_err(|_| anyhow::anyhow!("unknown log level \"{}\"", cli.log_level))?;
    fern::Dispatch::new()
        .level(level)
        .chain(std::io::stderr())
        .apply()?;
    match cli.mode {
        Mode::Hop(args) => {
            let report = bench::hop::run(&args).await?;
            println!("{}", bench::hop::summary(&report));
            if let Some(path) = &args.json {
                bench::write_json(path, &report)?;
            }
        }
        Mode::Http(args) => {
            let report = bench::http::run(&args).await?;
            println!("{}", bench::http::summary(&report));
            if let Some(path) = &args.json {
                bench::write_json(path, &report)?;
            }
        }
        Mode::Memory(args) => {
            let report = bench::memory::run(&args).await?;
            println!("{}", bench::memory::summary(&report));
            if let Some(path) = &args.json {
                bench::write_json(path, &report)?;
            }
        }
        Mode::Restart(args) => {
            let report = bench::restart::run(&args).await?;
            println!("{}", bench::restart::summary(&report));
            if let Some(path) = &args.json {
                bench::write_json(path, &report)?;
            }
        }
        Mode::Crawl(args) => {
            let report = bench::crawl::run(&args).await?;
            println!("{}", serde_json::to_string(&report)?);
            if let Some(path) = &args.json {
                bench::write_json(path, &report)?;
            }
        }
        Mode::Package(args) => {
            // It prints its own summary and writes --json itself.
            tokio::task::spawn_blocking(move || taskbus::bench::package::run(&args)).await??;
        }
    }
    Ok(())
}
