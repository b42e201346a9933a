#![doc = include_str!("../README.md")]

mod config;
mod error;
mod store;

pub use config::{PostgresConfig, URL_PARAMETERS};
pub use store::PostgresStore;

/// The `sqlx` this crate is built on, for sharing its pool or types.
pub use sqlx;
