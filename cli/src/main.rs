//! The `jobmesh` binary: start nodes, submit and inspect jobs, run benchmarks.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod args;
mod cmd;
mod output;
mod setup;

use clap::Parser;

use crate::args::{Cli, Verb};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    setup::init_tracing(matches!(cli.verb, Verb::Node(_)));
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // Errors quote what they could not use (a config line, a URL): its
            // credentials stay out of the terminal and the logs that capture it.
            eprintln!("error: {}", jobmesh::redact::redact(&format!("{e:#}")));
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = setup::load_config(cli.config.as_deref())?;
    let json = cli.json;
    match cli.verb {
        Verb::Node(a) => cmd::node::run(config, a).await,
        Verb::Submit(a) => cmd::submit::run(config, a, json).await,
        Verb::Jobs(v) => cmd::jobs::run(config, v, json).await,
        Verb::Dlq(v) => cmd::dlq::run(config, v, json).await,
        Verb::Events(a) => cmd::events::run(config, a, json).await,
        Verb::Bench(a) => cmd::bench::run(config, a).await,
        Verb::Mesh(v) => cmd::mesh::run(config, v, json).await,
        Verb::Chaos(a) => cmd::chaos::run(a, json).await,
    }
}
