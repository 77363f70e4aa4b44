//! The Shannon supplier edge: the I/O side of Shannon mode (the pure protocol stays in
//! `src/shannon`). README "Shannon supplier at the edge".

pub mod mined_queue;
pub mod resp;
