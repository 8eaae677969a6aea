//! Annotation triggers: plain `apps/v1` Deployments, StatefulSets, DaemonSets and `batch/v1` CronJobs that
//! carry `image.openshift.io/triggers` (or Berth's own `image.berth.dev/triggers`, which wins when both are
//! present) get the pull spec of the ImageStreamTags they follow written into the containers they name.
//!
//! The decisions are pure: `annotation` reads the annotation (`field_path` its paths), `plan` compares each container with its tag's
//! pull spec, `index` maps a tag to its followers. `controller` is the thin shell that watches and patches.

pub mod annotation;
pub mod controller;
pub mod field_path;
pub mod index;
pub mod plan;
pub mod target;

#[cfg(test)]
mod corpus_tests;
