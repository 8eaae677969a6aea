//! Berth's node agent: registers its Node, renews its Lease, and runs the Pods bound to its
//! node through the Container Runtime Interface.
//!
//! Decisions are pure functions ([`lifecycle`], [`status`], [`probe`], [`images`], [`backoff`]); the
//! modules that talk to the API server and the runtime are thin around them.

pub mod access;
pub mod admission;
pub mod agent;
pub mod apply;
pub mod backoff;
pub mod cluster_dns;
pub mod config;
pub mod configure;
pub mod cri;
pub mod dns;
pub mod downward;
pub mod env;
pub mod error;
pub mod hook_runner;
pub mod hooks;
pub mod image_gc;
pub mod images;
pub mod lease;
pub mod lifecycle;
pub mod metrics;
pub mod node;
pub mod observe;
pub mod pod_ip;
pub mod pods;
pub mod podspec;
pub mod probe;
pub mod prober;
pub mod pull;
pub mod quantity;
pub mod resources;
pub mod security;
pub mod server;
pub mod start;
pub mod status;
pub mod status_patch;
pub mod streaming;
pub mod sync;
pub mod termination;
pub mod volumes;

pub use error::{Error, Result};
