//! `kubectl-berth`: the `kubectl berth` plugin. Tag, import, roll back and follow Berth's image stream tags
//! with the semantics of OpenShift's `oc tag`, `oc import-image` and `oc set triggers`.
//!
//! Exit codes: 0 done, 1 the server refused / an object is missing / an import failed or timed out, 2 usage.

mod cli;
mod client;
mod commands;
mod decide;
mod error;
mod output;

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use cli::{Cli, Command, SetCommand};

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    if let Command::Completion(args) = &cli.command {
        let mut script = Vec::new();
        clap_complete::generate(args.shell, &mut Cli::command(), "kubectl-berth", &mut script);
        std::io::stdout().write_all(&script)?;
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match runtime.block_on(run(&cli)) {
        Ok(text) => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(e.exit_code()))
        }
    }
}

async fn run(cli: &Cli) -> error::Result<String> {
    let session = client::connect(cli).await?;
    match &cli.command {
        Command::Tag(args) => commands::tag::run(&session, args).await,
        Command::ImportImage(args) => commands::import_image::run(&session, args).await,
        Command::Rollback(args) => commands::rollback::run(&session, args).await,
        Command::History(args) => commands::history::run(&session, args).await,
        Command::Set(SetCommand::Triggers(args)) => commands::triggers::run(&session, args).await,
        Command::Describe(args) => commands::describe::run(&session, args).await,
        Command::Completion(_) => unreachable!("handled before connecting"),
    }
}
