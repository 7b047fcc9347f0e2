//! `model-server`: train | inspect | serve. See `model-server --help`.

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use model_server::config::{Cli, Command, InspectArgs, LogFormat, TrainArgs};
use model_server::{server, ModelArtifact};
use tracing::error;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match &cli.command {
        Command::Train(args) => train(args),
        Command::Inspect(args) => inspect(args),
        Command::Serve(args) => server::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn train(args: &TrainArgs) -> anyhow::Result<()> {
    let model = model_server::train(&args.training.params())?;
    let json = model.to_json_pretty();
    if args.out.as_os_str() == "-" {
        std::io::stdout()
            .write_all(json.as_bytes())
            .context("cannot write to stdout")?;
    } else {
        std::fs::write(&args.out, json)
            .with_context(|| format!("cannot write {}", args.out.display()))?;
        eprint!("wrote {}\n{}", args.out.display(), model.summary());
    }
    Ok(())
}

fn inspect(args: &InspectArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.path)
        .with_context(|| format!("cannot read {}", args.path.display()))?;
    let model = ModelArtifact::from_json(&text)
        .with_context(|| format!("refusing {}", args.path.display()))?;
    print!(
        "artifact:          {}\n{}",
        args.path.display(),
        model.summary()
    );
    Ok(())
}
