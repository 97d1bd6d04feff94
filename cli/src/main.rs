//! The `jobmesh` binary: start nodes, submit and inspect jobs, run benchmarks.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod args;
mod cmd;
mod first_token;
mod output;
mod setup;

use std::io::Write as _;

use clap::Parser;

use crate::args::{Cli, Verb};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    setup::init_tracing(matches!(cli.verb, Verb::Node(_) | Verb::Api(_)));
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The reader went away (`jobmesh ... | head -1`): it has what it wanted, so stop
        // quietly, as `cat` and `ls` do.
        Err(e) if is_broken_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // Errors quote what they could not use (a config line, a URL): its
            // credentials stay out of the terminal and the logs that capture it.
            let _ = writeln!(
                std::io::stderr(),
                "error: {}",
                jobmesh::redact::redact(&error_text(&e))
            );
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = setup::load_config(cli.config.as_deref())?;
    let json = cli.json;
    match cli.verb {
        Verb::Node(a) => {
            // A node's stdout is a few status lines and its log goes to stderr: there
            // is no result to print as JSON.
            anyhow::ensure!(
                !json,
                "`jobmesh node` has no JSON output (its log is on stderr); drop --json"
            );
            cmd::node::run(config, a).await
        }
        Verb::Submit(a) => cmd::submit::run(config, a, json).await,
        Verb::Jobs(v) => cmd::jobs::run(config, v, json).await,
        Verb::Dlq(v) => cmd::dlq::run(config, v, json).await,
        Verb::Queue(v) => cmd::queue::run(config, v, json).await,
        Verb::Periodic(v) => cmd::periodic::run(config, v, json).await,
        Verb::Limits => cmd::limits::run(config, json).await,
        Verb::Events(a) => cmd::events::run(config, a, json).await,
        // bench always prints one JSON line, the format of the peer scripts.
        Verb::Bench(a) => cmd::bench::run(config, a).await,
        Verb::Plot(a) => cmd::plot::run(a),
        Verb::Mesh(v) => cmd::mesh::run(config, v, json).await,
        Verb::Chaos(a) => cmd::chaos::run(a, json).await,
        Verb::Api(a) => cmd::api::run(config, a).await,
        Verb::Token(v) => cmd::token::run(config, v, json).await,
        Verb::Audit(a) => cmd::audit::run(config, a, json).await,
        Verb::Trace(v) => cmd::trace::run(config, v, json).await,
        Verb::Predict(v) => cmd::predict::run(config, v, json).await,
    }
}

/// Whether the error comes from writing to a closed pipe.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The error and its causes, `: `-separated, each said once: many library errors
/// already include their source's text in their own message, and `{:#}` would then
/// repeat it.
fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if part.is_empty() || text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_in_the_message_is_said_once() {
        let io = std::io::Error::other("disk full");
        let e = anyhow::Error::from(io)
            .context("writing batch: disk full")
            .context("submitting");
        assert_eq!(error_text(&e), "submitting: writing batch: disk full");
        let e = anyhow::anyhow!("refused").context("job `0`");
        assert_eq!(error_text(&e), "job `0`: refused");
    }
}
