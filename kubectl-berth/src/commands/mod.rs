//! The commands: each reads what it needs, asks [`crate::decide`] what to do, writes, and returns what to print.
//! This module holds what several of them share: finding a tag by stream and tag, and writing a tag.

pub mod describe;
pub mod history;
pub mod import_image;
pub mod rollback;
pub mod tag;
pub mod triggers;

use berth_api::image::{ImageStream, ImageStreamTag, ImageStreamTagSpec};
use berth_api::names::{StreamTagRef, image_stream_tag_name};
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};

use crate::client::FIELD_MANAGER;
use crate::error::{Error, Result, is_conflict, is_not_found};

/// The tag `reference` of namespace `namespace`: the object of the conventional name when it is that tag, else
/// whichever object has that `spec.stream` and `spec.tag` (a hand-written tag may have any name).
pub async fn find_tag(
    client: &Client,
    namespace: &str,
    reference: &StreamTagRef,
) -> Result<Option<ImageStreamTag>> {
    let api: Api<ImageStreamTag> = Api::namespaced(client.clone(), namespace);
    let name = image_stream_tag_name(&reference.stream, &reference.tag);
    let is_it = |t: &ImageStreamTag| t.spec.stream == reference.stream && t.spec.tag == reference.tag;
    if let Some(tag) = api
        .get_opt(&name)
        .await
        .map_err(Error::kube(format!("get imagestreamtag {name} in {namespace}")))?
        .filter(is_it)
    {
        return Ok(Some(tag));
    }
    Ok(tags_of(client, namespace, &reference.stream)
        .await?
        .into_iter()
        .find(is_it))
}

/// Every ImageStreamTag of `stream`.
pub async fn tags_of(client: &Client, namespace: &str, stream: &str) -> Result<Vec<ImageStreamTag>> {
    let api: Api<ImageStreamTag> = Api::namespaced(client.clone(), namespace);
    Ok(api
        .list(&ListParams::default())
        .await
        .map_err(Error::kube(format!("list imagestreamtags in {namespace}")))?
        .into_iter()
        .filter(|t| t.spec.stream == stream)
        .collect())
}

/// The tag, or a not-found error naming it.
pub async fn require_tag(client: &Client, namespace: &str, input: &str) -> Result<ImageStreamTag> {
    let reference = parse_tag_ref(input)?;
    find_tag(client, namespace, &reference)
        .await?
        .ok_or_else(|| Error::NotFound {
            kind: "imagestreamtag".into(),
            name: reference.to_string(),
            namespace: namespace.to_owned(),
        })
}

/// Reads `STREAM:TAG` from the command line.
pub fn parse_tag_ref(input: &str) -> Result<StreamTagRef> {
    input.parse().map_err(|e| Error::usage(format!("{e}")))
}

/// The stream, if it exists.
pub async fn get_stream(client: &Client, namespace: &str, name: &str) -> Result<Option<ImageStream>> {
    Api::<ImageStream>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(Error::kube(format!("get imagestream {name} in {namespace}")))
}

/// Creates the stream when it is missing, as `oc tag` and `oc import-image --confirm` do.
pub async fn ensure_stream(client: &Client, namespace: &str, name: &str) -> Result<()> {
    let api: Api<ImageStream> = Api::namespaced(client.clone(), namespace);
    let stream = ImageStream {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        spec: Default::default(),
        status: None,
    };
    match api.create(&PostParams::default(), &stream).await {
        Ok(_) => Ok(()),
        Err(e) if is_conflict(&e) => Ok(()),
        Err(e) => Err(Error::kube(format!("create imagestream {name} in {namespace}"))(
            e,
        )),
    }
}

/// The index of `tag` among the stream's inline tags.
pub fn inline_index(stream: Option<&ImageStream>, tag: &str) -> Option<usize> {
    stream?.spec.tags.iter().position(|t| t.name == tag)
}

/// The refusal for a tag that its stream defines inline (the controller would put its spec back).
pub fn inline_refusal(namespace: &str, reference: &StreamTagRef) -> Error {
    Error::refused(format!(
        "{reference} in namespace {namespace} is defined inline in ImageStream {} (spec.tags): change it there, \
         or remove it from the stream to manage it as its own ImageStreamTag",
        reference.stream
    ))
}

/// The parameters of every JSON merge patch the plugin sends: under [`FIELD_MANAGER`].
pub(crate) fn merge_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    }
}

/// Writes a tag's spec (and the given annotations) with server-side apply under [`FIELD_MANAGER`]. Fields this
/// manager set before and does not set now are removed; fields of other managers stay.
pub async fn apply_tag(
    client: &Client,
    namespace: &str,
    name: &str,
    spec: &ImageStreamTagSpec,
    annotations: &[(&str, String)],
) -> Result<ImageStreamTag> {
    let api: Api<ImageStreamTag> = Api::namespaced(client.clone(), namespace);
    let mut metadata = serde_json::json!({"name": name});
    if !annotations.is_empty() {
        metadata["annotations"] = annotations
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::json!(v)))
            .collect();
    }
    let patch = serde_json::json!({
        "apiVersion": ImageStreamTag::api_version(&()),
        "kind": ImageStreamTag::kind(&()),
        "metadata": metadata,
        "spec": spec,
    });
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(Error::kube(format!("apply imagestreamtag {name} in {namespace}")))
}

/// Sets one annotation of a tag with a merge patch (not apply: an apply of the annotation alone would drop the
/// spec fields this manager applied before).
pub async fn annotate_tag(
    client: &Client,
    tag: &ImageStreamTag,
    key: &str,
    value: &str,
) -> Result<ImageStreamTag> {
    let namespace = tag.namespace().unwrap_or_default();
    let name = tag.name_any();
    let api: Api<ImageStreamTag> = Api::namespaced(client.clone(), &namespace);
    let patch = serde_json::json!({"metadata": {"annotations": {key: value}}});
    api.patch(&name, &merge_params(), &Patch::Merge(&patch))
        .await
        .map_err(|e| {
            if is_not_found(&e) {
                Error::NotFound {
                    kind: "imagestreamtag".into(),
                    name: format!("{}:{}", tag.spec.stream, tag.spec.tag),
                    namespace: namespace.clone(),
                }
            } else {
                Error::kube(format!("annotate imagestreamtag {name} in {namespace}"))(e)
            }
        })
}

/// `STREAM:TAG`, prefixed with its namespace when that is not the one the command works in.
pub fn label(namespace: &str, current: &str, reference: &StreamTagRef) -> String {
    if namespace == current {
        reference.to_string()
    } else {
        format!("{namespace}/{reference}")
    }
}
