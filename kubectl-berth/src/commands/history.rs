//! `kubectl berth history STREAM:TAG`: the images a tag has pointed at, newest first.

use super::require_tag;
use crate::cli::HistoryArgs;
use crate::client::Session;
use crate::decide::describe::history_table;
use crate::error::Result;
use crate::output;

/// Runs `history`.
pub async fn run(session: &Session, args: &HistoryArgs) -> Result<String> {
    let tag = require_tag(&session.client, &session.namespace, &args.tag).await?;
    let status = tag.status.unwrap_or_default();
    match args.output {
        Some(format) => output::data_as(format, &status.history),
        None if status.history.is_empty() => Ok(format!(
            "{} has no history yet: it has not been imported\n",
            args.tag
        )),
        None => Ok(history_table(
            &status.history,
            status.digest.as_deref(),
            jiff::Timestamp::now().as_second(),
        )),
    }
}
