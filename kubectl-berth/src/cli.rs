//! The command line, as clap reads it. Usage errors exit 2 (clap's convention, which kubectl shares).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::decide::rollback::Target;

/// Work with Berth's image streams as OpenShift's `oc` does: tag, import, roll back, follow.
#[derive(Debug, Parser)]
#[command(name = "kubectl-berth", bin_name = "kubectl berth", version)]
pub struct Cli {
    /// The kubeconfig to use (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// The kubeconfig context to use.
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,

    /// The namespace (default: the context's).
    #[arg(short = 'n', long, global = true, value_name = "NAME")]
    pub namespace: Option<String>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Tag an image into image stream tags: `tag SOURCE DEST...`, or `tag -d DEST...` to delete.
    Tag(TagArgs),
    /// Re-import a tag now (or create and import it with --from and --confirm), and wait for the result.
    ImportImage(ImportArgs),
    /// Point a tag at an earlier image from its history, pinned by digest.
    Rollback(RollbackArgs),
    /// The images a tag has pointed at, newest first.
    History(HistoryArgs),
    /// Change objects.
    #[command(subcommand)]
    Set(SetCommand),
    /// A tag (STREAM:TAG) or a stream (STREAM): source, digest, conditions, history.
    Describe(DescribeArgs),
    /// A shell completion script: `source <(kubectl-berth completion bash)`.
    Completion(CompletionArgs),
}

/// `set` subcommands.
#[derive(Debug, Subcommand)]
pub enum SetCommand {
    /// Make a Deployment, StatefulSet, DaemonSet or CronJob follow an image stream tag
    /// (the `image.openshift.io/triggers` annotation, as `oc set triggers` writes it).
    Triggers(TriggersArgs),
}

/// How objects are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The objects as JSON.
    Json,
    /// The objects as YAML.
    Yaml,
    /// `resource.group/name`, one per line.
    Name,
}

/// How data (history) is printed besides the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DataFormat {
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

/// `--reference-policy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReferencePolicy {
    /// Pull from the source registry.
    Source,
    /// Pull through the cluster's registry (accepted; Berth treats it as source).
    Local,
}

/// `--import-mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ImportModeArg {
    /// One platform's manifest of an index.
    #[value(name = "Legacy", alias = "legacy")]
    Legacy,
    /// The index itself.
    #[value(name = "PreserveOriginal", alias = "preserveoriginal")]
    PreserveOriginal,
}

/// `tag`.
#[derive(Debug, Args)]
pub struct TagArgs {
    /// SOURCE then DEST... (`[NS/]STREAM:TAG`); with -d only the DESTs to delete.
    #[arg(required = true, value_name = "SOURCE DEST")]
    pub args: Vec<String>,
    /// What SOURCE is: imagestreamtag|istag, imagestreamimage|isimage, docker|dockerimage (default: inferred).
    #[arg(long)]
    pub source: Option<String>,
    /// Make DEST follow SOURCE (an image stream tag) instead of copying its current image.
    #[arg(long, conflicts_with = "delete")]
    pub alias: bool,
    /// Re-import DEST from its registry periodically.
    #[arg(long)]
    pub scheduled: bool,
    /// Allow plain HTTP or an unverified certificate for DEST's registry.
    #[arg(long)]
    pub insecure: bool,
    /// Record SOURCE as given, without importing it.
    #[arg(long)]
    pub reference: bool,
    /// Where pods pull the image from.
    #[arg(long, value_enum)]
    pub reference_policy: Option<ReferencePolicy>,
    /// For a multi-platform image: one platform's manifest (Legacy) or the index (PreserveOriginal).
    #[arg(long, value_enum)]
    pub import_mode: Option<ImportModeArg>,
    /// Delete the DEST tags.
    #[arg(short = 'd', long)]
    pub delete: bool,
    /// Print the resulting objects.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Format>,
}

/// `import-image`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// `STREAM[:TAG]` (tag `latest` when left out).
    pub target: String,
    /// The registry reference to create the tag from (with --confirm).
    #[arg(long, value_name = "REPO[:TAG]")]
    pub from: Option<String>,
    /// Re-import every tag of the stream that comes from a registry.
    #[arg(long)]
    pub all: bool,
    /// Create the stream or tag when it does not exist.
    #[arg(long)]
    pub confirm: bool,
    /// Also re-import periodically from now on.
    #[arg(long)]
    pub scheduled: bool,
    /// Allow plain HTTP or an unverified certificate for the registry.
    #[arg(long)]
    pub insecure: bool,
    /// How long to wait for the controller's answer.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Print the resulting tags.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Format>,
}

/// `rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// `STREAM:TAG`.
    pub tag: String,
    /// The history entry (as `history` numbers them) or digest to go back to (default: the previous image).
    #[arg(long, value_name = "N|DIGEST")]
    pub to: Option<Target>,
    /// Print the resulting tag.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Format>,
}

/// `history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// `STREAM:TAG`.
    pub tag: String,
    /// Print the history as data.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<DataFormat>,
}

/// `set triggers`.
#[derive(Debug, Args)]
pub struct TriggersArgs {
    /// `KIND/NAME`: deployment/web, statefulset/db, daemonset/agent, cronjob/nightly.
    pub object: String,
    /// The image stream tag to follow: `[NAMESPACE/]STREAM:TAG`.
    #[arg(long, value_name = "IS:TAG")]
    pub from_image: Option<String>,
    /// The containers whose image follows it, comma-separated (default: the only container).
    #[arg(short = 'c', long, value_delimiter = ',', requires = "from_image")]
    pub containers: Vec<String>,
    /// Apply changes automatically (the default when adding).
    #[arg(long, conflicts_with = "manual")]
    pub auto: bool,
    /// Pause: record the trigger but change nothing.
    #[arg(long)]
    pub manual: bool,
    /// Remove the trigger of --from-image.
    #[arg(long, requires = "from_image", conflicts_with_all = ["auto", "manual"])]
    pub remove: bool,
    /// Remove every trigger.
    #[arg(long, conflicts_with_all = ["from_image", "auto", "manual", "remove"])]
    pub remove_all: bool,
    /// Print the resulting object.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Format>,
}

/// `describe`.
#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// `STREAM:TAG` or `STREAM`.
    pub target: String,
}

/// `completion`.
#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn usage_errors_are_clap_errors() {
        for args in [
            vec!["kubectl-berth", "tag"],
            vec!["kubectl-berth", "tag", "--alias", "-d", "a:b"],
            vec![
                "kubectl-berth",
                "set",
                "triggers",
                "deploy/x",
                "--auto",
                "--manual",
            ],
            vec!["kubectl-berth", "set", "triggers", "deploy/x", "-c", "web"],
            vec!["kubectl-berth", "history", "a:b", "-o", "name"],
            vec!["kubectl-berth", "rollback", "a:b", "--to", "zz"],
            vec!["kubectl-berth", "completion", "tcsh"],
        ] {
            let e = Cli::try_parse_from(&args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
        }
        let ok = Cli::try_parse_from(["kubectl-berth", "-n", "x", "tag", "a:b", "c:d", "e:f"]).unwrap();
        assert_eq!(ok.namespace.as_deref(), Some("x"));
        let ok = Cli::try_parse_from(["kubectl-berth", "history", "a:b", "--context", "c"]).unwrap();
        assert_eq!(ok.context.as_deref(), Some("c"));
    }
}
