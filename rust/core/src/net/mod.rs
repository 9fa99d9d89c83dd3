//! The network half of the data path: the wire protocol shared by both ends, the client sink
//! that streams a shard's frames to a collector, and the collector (`steplog serve`) that
//! writes them as ordinary shard files. `docs/NETWORK.md` is the specification.

pub mod client;
pub mod collector;
pub mod conn;
pub mod protocol;
pub mod push;
mod sender;
pub mod spill;
pub mod target;
