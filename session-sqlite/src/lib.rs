#![doc = include_str!("../README.md")]

mod config;
mod error;
mod sql;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod worker;

pub use config::{DEFAULT_MMAP_SIZE, Durability, SqliteConfig};
pub use store::{PURGE_CHUNK, SCHEMA_TABLE, SCHEMA_VERSION, SqliteStore};

/// The `rusqlite` this crate is built on, for opening the same file yourself.
pub use rusqlite;
