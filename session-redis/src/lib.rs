#![doc = include_str!("../README.md")]

mod cluster;
mod config;
mod error;
mod scripts;
mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::RedisConfig;
pub use store::RedisStore;

/// The `redis` crate this store is built on, for sharing its types.
pub use redis;
