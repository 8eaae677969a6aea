//! Berth's controller: image import, triggers, workloads and their rollouts.
//!
//! Decisions are pure functions (`import::status`, `import::schedule`, `import::source`,
//! `import::version_policy`, `streams::plan_tags`, `webhook::matching_tags`, `leader::fence::check`, and
//! `followers`, the one definition of who follows a tag); the reconcilers around them are thin, and their requests
//! are checked one by one against a mocked API server (`testing`, tests only); `run` wires it all.

pub mod caches;
pub mod conditions;
pub mod config;
pub mod context;
pub mod error;
pub mod followers;
pub mod grants;
pub mod import;
pub mod leader;
pub mod metrics;
pub mod node_lifecycle;
pub mod registry;
pub mod run;
pub mod scheduling;
pub mod streams;
#[cfg(test)]
mod testing;
pub mod triggers;
pub mod webhook;
pub mod workloads;
