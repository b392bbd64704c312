//! Where changes come from.

pub mod kafka;
pub mod postgres;
