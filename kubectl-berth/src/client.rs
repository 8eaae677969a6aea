//! The connection, as kubectl makes it: `--kubeconfig` (else `$KUBECONFIG`, else `~/.kube/config`, else the
//! in-cluster service account), `--context`, and `-n` (else the context's namespace, else `default`).

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::cli::Cli;
use crate::error::{Error, Result};

/// The field manager of every write.
pub const FIELD_MANAGER: &str = "kubectl-berth";

/// A client and the namespace the command works in.
pub struct Session {
    /// The client.
    pub client: Client,
    /// The namespace.
    pub namespace: String,
}

/// Connects as `cli` says.
pub async fn connect(cli: &Cli) -> Result<Session> {
    let options = KubeConfigOptions {
        context: cli.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match (&cli.kubeconfig, &cli.context) {
        (Some(path), _) => {
            let kubeconfig =
                Kubeconfig::read_from(path).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| Error::Config(e.to_string()))?
        }
        (None, Some(_)) => Config::from_kubeconfig(&options)
            .await
            .map_err(|e| Error::Config(e.to_string()))?,
        (None, None) => Config::infer().await.map_err(|e| Error::Config(e.to_string()))?,
    };
    let namespace = cli
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).map_err(|e| Error::Config(e.to_string()))?;
    Ok(Session { client, namespace })
}
