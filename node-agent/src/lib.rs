//! Berth's node agent: registers its Node, renews its Lease, and runs the Pods bound to its
//! node through the Container Runtime Interface.

pub mod cri;
pub mod error;

pub use error::{Error, Result};
