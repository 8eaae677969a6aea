//! Importing ImageStreamTags: deciding when (`schedule`), from where (`source`; for a tag with a version
//! policy, which tag of the repository: `version_policy`), and what the answer does to the tag's status
//! (`status`). The reconciler around them is thin.

pub mod reconcile;
pub mod schedule;
pub mod source;
pub mod status;
pub mod version_policy;

#[cfg(test)]
mod scenarios;
