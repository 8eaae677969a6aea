//! Shared helpers for the end-to-end scenarios.

pub mod cluster;
pub mod http;
