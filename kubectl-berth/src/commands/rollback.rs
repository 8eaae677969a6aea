//! `kubectl berth rollback STREAM:TAG [--to N|DIGEST]`: the tag pinned to an earlier image of its history.

use kube::ResourceExt;

use super::{apply_tag, get_stream, inline_index, inline_refusal, label, parse_tag_ref, require_tag};
use crate::cli::RollbackArgs;
use crate::client::Session;
use crate::decide::rollback::{self, ROLLED_BACK_FROM};
use crate::error::Result;
use crate::output;

/// Runs `rollback`.
pub async fn run(session: &Session, args: &RollbackArgs) -> Result<String> {
    let reference = parse_tag_ref(&args.tag)?;
    let ns = session.namespace.as_str();
    let stream = get_stream(&session.client, ns, &reference.stream).await?;
    if inline_index(stream.as_ref(), &reference.tag).is_some() {
        return Err(inline_refusal(ns, &reference));
    }
    let tag = require_tag(&session.client, ns, &args.tag).await?;
    let status = tag.status.clone().unwrap_or_default();
    let shown = label(ns, &session.namespace, &reference);
    let (index, entry) = rollback::pick(
        &shown,
        &status.history,
        status.digest.as_deref(),
        args.to.as_ref(),
    )?;
    let spec = rollback::pinned_spec(&tag.spec, entry);
    let previous = rollback::rolled_back_from(
        tag.annotations().get(ROLLED_BACK_FROM).map(String::as_str),
        &tag.spec.from,
    );
    let updated = apply_tag(
        &session.client,
        ns,
        &tag.name_any(),
        &spec,
        &[(ROLLED_BACK_FROM, previous.clone())],
    )
    .await?;
    if let Some(format) = args.output {
        return output::objects(format, &[updated]);
    }
    let policy = tag.spec.import_policy.clone().unwrap_or_default();
    let before: berth_api::image::TagSource =
        serde_json::from_str(&previous).unwrap_or_else(|_| tag.spec.from.clone());
    Ok(format!(
        "Rolled back {shown} to history entry {index}: {} ({}).\n\
         The tag is pinned to that digest: imports, pushes and schedules no longer move it.\n\
         To follow {} again: {}\n",
        entry.digest,
        entry.pull_spec,
        before.name,
        rollback::undo_command(&shown, &before, policy.insecure, policy.scheduled),
    ))
}
