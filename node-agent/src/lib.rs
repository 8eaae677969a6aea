//! Berth's node agent: registers its Node, renews its Lease, and runs the Pods bound to its
//! node through the Container Runtime Interface.
//!
//! Decisions are pure functions ([`lifecycle`], [`status`], [`images`], [`backoff`]); the
//! modules that talk to the API server and the runtime are thin around them.

pub mod backoff;
pub mod config;
pub mod cri;
pub mod error;
pub mod images;
pub mod lifecycle;
pub mod observe;
pub mod podspec;
pub mod status;

pub use error::{Error, Result};
