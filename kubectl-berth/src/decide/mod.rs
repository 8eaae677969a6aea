//! The decisions of `kubectl berth`, as pure functions of the command line and the objects read: no client,
//! no I/O, each tested on its own. The commands in [`crate::commands`] read, call these, and write.

pub mod describe;
pub mod import;
pub mod reference;
pub mod rollback;
pub mod source;
pub mod table;
pub mod target;
pub mod triggers;
