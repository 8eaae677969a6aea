//! `kubectl berth describe STREAM:TAG|STREAM`.

use super::{get_stream, require_tag, tags_of};
use crate::cli::DescribeArgs;
use crate::client::Session;
use crate::decide::describe::{describe_stream, describe_tag};
use crate::error::{Error, Result};

/// Runs `describe`.
pub async fn run(session: &Session, args: &DescribeArgs) -> Result<String> {
    let now = jiff::Timestamp::now().as_second();
    let ns = session.namespace.as_str();
    if args.target.contains(':') {
        let tag = require_tag(&session.client, ns, &args.target).await?;
        return Ok(describe_tag(&tag, now));
    }
    if !berth_api::validation::is_dns_subdomain(&args.target) {
        return Err(Error::usage(format!(
            "{:?} is neither STREAM:TAG nor an image stream name",
            args.target
        )));
    }
    let stream = get_stream(&session.client, ns, &args.target)
        .await?
        .ok_or_else(|| Error::NotFound {
            kind: "imagestream".into(),
            name: args.target.clone(),
            namespace: ns.to_owned(),
        })?;
    let tags = tags_of(&session.client, ns, &args.target).await?;
    Ok(describe_stream(&stream, &tags, now))
}
