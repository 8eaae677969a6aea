//! `kubectl berth tag SOURCE DEST...` and `kubectl berth tag -d DEST...`.

use berth_api::image::{ImageStream, ImageStreamTag, ImportMode, ReferencePolicyType};
use kube::api::{Api, DeleteParams, Patch};
use kube::{Client, ResourceExt};

use super::{
    apply_tag, ensure_stream, find_tag, get_stream, inline_index, inline_refusal, label, merge_params,
};
use crate::cli::{ImportModeArg, ReferencePolicy, TagArgs};
use crate::client::Session;
use crate::decide::source::{self, Destination, Source, TagFlags};
use crate::error::{Error, Result};
use crate::output;

/// Runs `tag`.
pub async fn run(session: &Session, args: &TagArgs) -> Result<String> {
    if args.delete {
        if args.source.is_some() {
            return Err(Error::usage("cannot specify a source kind when deleting"));
        }
        if args.scheduled || args.insecure || args.import_mode.is_some() {
            return Err(Error::usage(
                "cannot set flags for importing images when deleting a tag",
            ));
        }
        let dests = args
            .args
            .iter()
            .map(|d| source::parse_destination(d))
            .collect::<Result<Vec<_>>>()?;
        let mut out = String::new();
        for dest in &dests {
            out.push_str(&delete(session, dest).await?);
        }
        return Ok(out);
    }
    let [source_text, dests @ ..] = args.args.as_slice() else {
        unreachable!("clap requires at least one argument");
    };
    if dests.is_empty() {
        return Err(Error::usage(
            "you must specify a source and at least one destination or one or more tags to delete",
        ));
    }
    let hint = args
        .source
        .as_deref()
        .map(source::parse_source_hint)
        .transpose()?;
    let source = source::infer(source_text, hint)?;
    let flags = TagFlags {
        alias: args.alias,
        scheduled: args.scheduled,
        insecure: args.insecure,
        reference: args.reference,
        reference_policy: args.reference_policy.map(|p| match p {
            ReferencePolicy::Source => ReferencePolicyType::Source,
            ReferencePolicy::Local => ReferencePolicyType::Local,
        }),
        import_mode: args.import_mode.map(|m| match m {
            ImportModeArg::Legacy => ImportMode::Legacy,
            ImportModeArg::PreserveOriginal => ImportMode::PreserveOriginal,
        }),
    };
    source::validate(&source, &flags)?;
    let dests = dests
        .iter()
        .map(|d| source::parse_destination(d))
        .collect::<Result<Vec<_>>>()?;

    // A copy reads the source tag's current image once, for every destination.
    let copied = match &source {
        Source::StreamTag { namespace, tag } if !flags.alias => {
            let ns = namespace.as_deref().unwrap_or(&session.namespace);
            let found = find_tag(&session.client, ns, tag)
                .await?
                .ok_or_else(|| Error::NotFound {
                    kind: "imagestreamtag".into(),
                    name: tag.to_string(),
                    namespace: ns.to_owned(),
                })?;
            found.status
        }
        _ => None,
    };
    let from = source::destination_from(&source, source_text, &flags, copied.as_ref())?;

    let mut written = Vec::new();
    let mut messages = String::new();
    for dest in &dests {
        let namespace = dest.namespace.as_deref().unwrap_or(&session.namespace);
        let stream = get_stream(&session.client, namespace, &dest.tag.stream).await?;
        if inline_index(stream.as_ref(), &dest.tag.tag).is_some() {
            return Err(inline_refusal(namespace, &dest.tag));
        }
        if stream.is_none() {
            ensure_stream(&session.client, namespace, &dest.tag.stream).await?;
        }
        let mut from = from.clone();
        // A stream of the command's namespace, named from another namespace, is named with its namespace.
        if from.kind != berth_api::image::SourceKind::DockerImage
            && from.namespace.is_none()
            && namespace != session.namespace
        {
            from.namespace = Some(session.namespace.clone());
        }
        let spec = source::destination_spec(dest, from.clone(), &flags);
        let name = object_name(&session.client, namespace, dest).await?;
        let tag = apply_tag(&session.client, namespace, &name, &spec, &[]).await?;
        messages.push_str(&source::message(
            &label(namespace, &session.namespace, &dest.tag),
            &from,
            &flags,
        ));
        messages.push('\n');
        written.push(tag);
    }
    match args.output {
        Some(format) => output::objects(format, &written),
        None => Ok(messages),
    }
}

/// The existing object's name for the destination, else the conventional one.
async fn object_name(client: &Client, namespace: &str, dest: &Destination) -> Result<String> {
    Ok(match find_tag(client, namespace, &dest.tag).await? {
        Some(existing) => existing.name_any(),
        None => berth_api::names::image_stream_tag_name(&dest.tag.stream, &dest.tag.tag),
    })
}

/// Deletes one tag: its object, or its entry in the stream's `spec.tags` when it is defined inline.
async fn delete(session: &Session, dest: &Destination) -> Result<String> {
    let namespace = dest.namespace.as_deref().unwrap_or(&session.namespace);
    let label = label(namespace, &session.namespace, &dest.tag);
    let stream = get_stream(&session.client, namespace, &dest.tag.stream).await?;
    if let (Some(index), Some(stream)) = (inline_index(stream.as_ref(), &dest.tag.tag), &stream) {
        // The list without that entry, written only if the stream did not change since it was read.
        let mut tags = stream.spec.tags.clone();
        tags.remove(index);
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": stream.resource_version()},
            "spec": {"tags": tags},
        });
        Api::<ImageStream>::namespaced(session.client.clone(), namespace)
            .patch(&dest.tag.stream, &merge_params(), &Patch::Merge(&patch))
            .await
            .map_err(Error::kube(format!(
                "remove tag {} from imagestream {}",
                dest.tag.tag, dest.tag.stream
            )))?;
        return Ok(format!("Deleted tag {label}.\n"));
    }
    let existing = find_tag(&session.client, namespace, &dest.tag)
        .await?
        .ok_or_else(|| Error::NotFound {
            kind: "imagestreamtag".into(),
            name: dest.tag.to_string(),
            namespace: namespace.to_owned(),
        })?;
    Api::<ImageStreamTag>::namespaced(session.client.clone(), namespace)
        .delete(&existing.name_any(), &DeleteParams::default())
        .await
        .map_err(Error::kube(format!(
            "delete imagestreamtag {}",
            existing.name_any()
        )))?;
    Ok(format!("Deleted tag {label}.\n"))
}
