//! `berth-agent`: the node agent binary.

use berth_agent::config::{Config, LogFormat};
use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cfg = Config::parse();
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // kube's client logs every failed request itself; the agent reports them with context.
    if !std::env::var("RUST_LOG").is_ok_and(|v| v.contains("kube_client"))
        && let Ok(d) = "kube_client::client::builder=off".parse()
    {
        filter = filter.add_directive(d);
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cfg.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    if let Err(e) = berth_agent::agent::run(cfg).await {
        // One line: the error and those of its causes that add something.
        let mut line = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            let s_text = s.to_string();
            if !line.contains(&s_text) {
                line = format!("{line}: {s_text}");
            }
            source = s.source();
        }
        tracing::error!("{line}");
        std::process::exit(1);
    }
    Ok(())
}
