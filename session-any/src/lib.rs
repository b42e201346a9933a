#![doc = include_str!("../README.md")]

mod config;
mod store;
#[cfg(feature = "conformance")]
pub mod testing;

pub use config::{Backend, Durability, SCHEMES, StoreConfig};
pub use store::{AnyStore, Counts, connect};
