#![doc = include_str!("../README.md")]

mod config;
mod store;
#[cfg(feature = "conformance")]
pub mod testing;

pub use config::{OptionValue, StoreConfig};
pub use session_core::{Counts, StoreAdmin};
pub use store::{AnyStore, SCHEMES, connect};
