//! Importing ImageStreamTags: deciding when (`schedule`), from where (`source`), and what the answer does to
//! the tag's status (`status`). The reconciler around them is thin.

pub mod reconcile;
pub mod schedule;
pub mod source;
pub mod status;

#[cfg(test)]
mod scenarios;
