#![doc = include_str!("../README.md")]

mod config;
mod error;
mod sql;
mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::PostgresConfig;
pub use store::PostgresStore;

/// The `sqlx` this crate is built on, for sharing its pool or types.
pub use sqlx;
