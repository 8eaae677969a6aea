//! `kubectl berth import-image IS[:TAG]`: asks the controller for an import now (a new value of the annotation
//! `image.berth.dev/import-requested`) and waits, bounded, until each tag's status answers that very request.

use std::time::{Duration, Instant};

use berth_api::image::{
    IMPORT_REQUESTED_ANNOTATION, IMPORT_SUCCESS, ImageStream, ImageStreamTag, ImageStreamTagSpec, SourceKind,
    TagImportPolicy, TagSource,
};
use berth_api::names::StreamTagRef;
use kube::ResourceExt;
use kube::api::{Api, Patch};

use super::{annotate_tag, apply_tag, ensure_stream, find_tag, get_stream, merge_params, tags_of};
use crate::cli::ImportArgs;
use crate::client::Session;
use crate::decide::import::{self, ImportPlan, KnownTag};
use crate::error::{Error, Result};
use crate::output;

/// Runs `import-image`.
pub async fn run(session: &Session, args: &ImportArgs) -> Result<String> {
    let request = import::request(
        &args.target,
        args.from.as_deref(),
        args.all,
        args.confirm,
        args.scheduled,
        args.insecure,
    )?;
    let client = &session.client;
    let ns = session.namespace.as_str();
    let stream = get_stream(client, ns, &request.stream).await?;
    let objects = match &stream {
        Some(_) => tags_of(client, ns, &request.stream).await?,
        None => Vec::new(),
    };
    let known = stream.as_ref().map(|s| known_tags(s, &objects));
    let plan = import::plan(&request, known.as_deref())?;
    // Any string that differs from the last request will do; a timestamp also says when it was asked.
    let token = jiff::Timestamp::now().to_string();

    let mut asked = Vec::new();
    match plan {
        ImportPlan::Create {
            create_stream,
            tag,
            from,
        } => {
            if create_stream {
                ensure_stream(client, ns, &request.stream).await?;
            }
            let spec = ImageStreamTagSpec {
                stream: request.stream.clone(),
                tag: tag.clone(),
                from: TagSource {
                    kind: SourceKind::DockerImage,
                    name: from,
                    namespace: None,
                },
                import_policy: (request.scheduled || request.insecure).then_some(TagImportPolicy {
                    scheduled: request.scheduled,
                    insecure: request.insecure,
                    import_mode: None,
                    version_policy: None,
                }),
                ..ImageStreamTagSpec::default()
            };
            let name = berth_api::names::image_stream_tag_name(&request.stream, &tag);
            apply_tag(client, ns, &name, &spec, &[]).await?;
            asked.push(tag);
        }
        ImportPlan::Reimport { tags, set_policy } => {
            for tag in &tags {
                let reference = StreamTagRef {
                    stream: request.stream.clone(),
                    tag: tag.clone(),
                };
                let Some(object) = find_tag(client, ns, &reference).await? else {
                    return Err(Error::NotFound {
                        kind: "imagestreamtag".into(),
                        name: reference.to_string(),
                        namespace: ns.to_owned(),
                    });
                };
                if set_policy {
                    set_import_policy(session, &object, request.scheduled, request.insecure).await?;
                }
                asked.push(tag.clone());
            }
        }
    }
    let mut results = Vec::new();
    for tag in &asked {
        let reference = StreamTagRef {
            stream: request.stream.clone(),
            tag: tag.clone(),
        };
        let object = find_tag(client, ns, &reference)
            .await?
            .ok_or_else(|| Error::NotFound {
                kind: "imagestreamtag".into(),
                name: reference.to_string(),
                namespace: ns.to_owned(),
            })?;
        annotate_tag(client, &object, IMPORT_REQUESTED_ANNOTATION, &token).await?;
        results.push((reference, object.name_any()));
    }
    let deadline = Instant::now() + args.timeout;
    let mut answered = Vec::new();
    let mut report = String::new();
    let mut failure = None;
    for (reference, name) in &results {
        let tag = wait_answer(
            session,
            name,
            &reference.to_string(),
            &token,
            deadline,
            args.timeout,
        )
        .await?;
        match outcome(&tag) {
            Ok(line) => report.push_str(&format!("{reference} imported: {line}\n")),
            Err((reason, message)) => {
                failure.get_or_insert(Error::ImportFailed {
                    tag: reference.to_string(),
                    reason,
                    message,
                });
            }
        }
        answered.push(tag);
    }
    if let Some(e) = failure {
        // The tags that did import are still said, on stdout; the first failure is the one line on stderr.
        if args.output.is_none() {
            use std::io::Write;
            let _ = std::io::stdout().write_all(report.as_bytes());
        }
        return Err(e);
    }
    match args.output {
        Some(format) => output::objects(format, &answered),
        None => Ok(report),
    }
}

/// The stream's tags as the plan sees them: its standalone ImageStreamTags and its inline tags.
fn known_tags(stream: &ImageStream, objects: &[ImageStreamTag]) -> Vec<KnownTag> {
    let inline: Vec<&str> = stream.spec.tags.iter().map(|t| t.name.as_str()).collect();
    let mut known: Vec<KnownTag> = objects
        .iter()
        .map(|t| {
            let policy = t.spec.import_policy.clone().unwrap_or_default();
            KnownTag {
                tag: t.spec.tag.clone(),
                kind: t.spec.from.kind,
                from: t.spec.from.name.clone(),
                namespace: t.spec.from.namespace.clone(),
                scheduled: policy.scheduled,
                insecure: policy.insecure,
                inline: inline.contains(&t.spec.tag.as_str()),
            }
        })
        .collect();
    // Inline tags the controller has not materialised yet.
    for t in &stream.spec.tags {
        if let (Some(from), false) = (&t.from, known.iter().any(|k| k.tag == t.name)) {
            let policy = t.import_policy.clone().unwrap_or_default();
            known.push(KnownTag {
                tag: t.name.clone(),
                kind: from.kind,
                from: from.name.clone(),
                namespace: from.namespace.clone(),
                scheduled: policy.scheduled,
                insecure: policy.insecure,
                inline: true,
            });
        }
    }
    known
}

/// Adds `scheduled`/`insecure` to a standalone tag's import policy (a merge patch: other fields stay).
async fn set_import_policy(
    session: &Session,
    tag: &ImageStreamTag,
    scheduled: bool,
    insecure: bool,
) -> Result<()> {
    let mut policy = serde_json::Map::new();
    if scheduled {
        policy.insert("scheduled".into(), true.into());
    }
    if insecure {
        policy.insert("insecure".into(), true.into());
    }
    let patch = serde_json::json!({"spec": {"importPolicy": policy}});
    Api::<ImageStreamTag>::namespaced(session.client.clone(), &session.namespace)
        .patch(&tag.name_any(), &merge_params(), &Patch::Merge(&patch))
        .await
        .map_err(Error::kube(format!(
            "set the import policy of imagestreamtag {}",
            tag.name_any()
        )))?;
    Ok(())
}

/// Polls the tag until its status answers `token`.
async fn wait_answer(
    session: &Session,
    name: &str,
    label: &str,
    token: &str,
    deadline: Instant,
    timeout: Duration,
) -> Result<ImageStreamTag> {
    let api: Api<ImageStreamTag> = Api::namespaced(session.client.clone(), &session.namespace);
    loop {
        let last = match api.get_opt(name).await {
            Ok(Some(tag)) => {
                let status = tag.status.clone().unwrap_or_default();
                if status.observed_import_request.as_deref() == Some(token) {
                    return Ok(tag);
                }
                format!(
                    "observed import request {:?}, digest {:?}",
                    status.observed_import_request, status.digest
                )
            }
            Ok(None) => "the tag was deleted".to_owned(),
            Err(e) => Error::kube("get")(e).to_string(),
        };
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!("the controller to import {label} (is berth-controller running?)"),
                after: timeout,
                last,
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What the answered import says: the image, or the failure's reason and message.
fn outcome(tag: &ImageStreamTag) -> std::result::Result<String, (String, String)> {
    let status = tag.status.clone().unwrap_or_default();
    match status.conditions.iter().find(|c| c.type_ == IMPORT_SUCCESS) {
        Some(c) if c.status != "True" => Err((c.reason.clone(), c.message.clone())),
        _ => Ok(match (&status.digest, &status.pull_spec) {
            (Some(digest), Some(pull_spec)) => format!("{digest} ({pull_spec})"),
            (None, Some(pull_spec)) => format!("{pull_spec} (recorded without a digest)"),
            _ => "no image".to_owned(),
        }),
    }
}
