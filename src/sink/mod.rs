//! Where changes are written.

pub mod delta;
