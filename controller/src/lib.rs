//! Berth's controller: image import, triggers, workloads and their rollouts.

pub mod import;
pub mod registry;
