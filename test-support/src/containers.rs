//! Test servers in Docker containers (feature `containers`), for a developer machine with a
//! Docker engine and no local PostgreSQL or Redis: started once, kept for the next runs (one
//! named container per server, reused by every test process), never used under CI.
//!
//! Images and tags: `SESSION_TEST_POSTGRES_IMAGE` (default `postgres:16-alpine`) and
//! `SESSION_TEST_REDIS_IMAGE` (default `redis:7-alpine`); an image must take the official
//! images' command line (`postgres -p PORT …`, `redis-server --port PORT …`) and, for
//! PostgreSQL, `POSTGRES_HOST_AUTH_METHOD=trust` / `POSTGRES_DB`. With
//! `SESSION_TEST_CONTAINER_NETWORK=host` the containers use the host's network and listen on
//! 127.0.0.1 at fixed ports (55432, 56379) instead of mapped ones (for engines run without a
//! bridge network). `SESSION_TEST_CONTAINERS=0` turns containers off. Remove them with
//! `docker rm -f session-store-test-postgres session-store-test-redis`.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use testcontainers::core::{ContainerPort, IntoContainerPort, WaitFor};
use testcontainers::runners::SyncRunner;
use testcontainers::{GenericImage, ImageExt, ReuseDirective};

/// A server the tests can run in a container.
#[derive(Clone, Copy)]
pub(crate) enum Server {
    Postgres,
    Redis,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Redis => "redis",
        }
    }

    fn image_var(self) -> &'static str {
        match self {
            Self::Postgres => "SESSION_TEST_POSTGRES_IMAGE",
            Self::Redis => "SESSION_TEST_REDIS_IMAGE",
        }
    }

    fn default_image(self) -> &'static str {
        match self {
            Self::Postgres => "postgres:16-alpine",
            Self::Redis => "redis:7-alpine",
        }
    }

    /// The port inside the container (bridge network) or on the host (host network).
    fn port(self, host_network: bool) -> u16 {
        match (self, host_network) {
            (Self::Postgres, false) => 5432,
            (Self::Redis, false) => 6379,
            (Self::Postgres, true) => 55432,
            (Self::Redis, true) => 56379,
        }
    }

    fn url(self, port: u16) -> String {
        match self {
            Self::Postgres => format!("postgres://postgres@127.0.0.1:{port}/test"),
            Self::Redis => format!("redis://127.0.0.1:{port}"),
        }
    }
}

/// Whether containers may be used: not under CI (its servers are set up explicitly) and not
/// turned off.
pub(crate) fn enabled() -> bool {
    !crate::is_ci() && std::env::var("SESSION_TEST_CONTAINERS").map_or(true, |v| v != "0")
}

/// [`url`], once per process and server, on a thread of its own (the blocking runner must not
/// run inside the test's async runtime).
pub(crate) fn cached_url(server: Server) -> Result<String, String> {
    static POSTGRES: std::sync::OnceLock<Result<String, String>> = std::sync::OnceLock::new();
    static REDIS: std::sync::OnceLock<Result<String, String>> = std::sync::OnceLock::new();
    let cell = match server {
        Server::Postgres => &POSTGRES,
        Server::Redis => &REDIS,
    };
    cell.get_or_init(|| {
        std::thread::spawn(move || url(server))
            .join()
            .unwrap_or_else(|_| Err("starting the container panicked".to_owned()))
    })
    .clone()
}

/// The URL of `server` running in its container, started now if needed; `Err` says why not
/// (no Docker engine, the image cannot be had, the server did not come up).
pub(crate) fn url(server: Server) -> Result<String, String> {
    let host_network = std::env::var("SESSION_TEST_CONTAINER_NETWORK").is_ok_and(|v| v == "host");
    let image = std::env::var(server.image_var()).unwrap_or_else(|_| server.default_image().into());
    let (name, tag) = image.rsplit_once(':').unwrap_or((image.as_str(), "latest"));
    let port = server.port(host_network);
    let build = || {
        let mut request = GenericImage::new(name, tag)
            .with_wait_for(WaitFor::Nothing)
            .with_container_name(format!("session-store-test-{}", server.name()))
            .with_reuse(ReuseDirective::Always);
        request = match server {
            Server::Postgres => request
                .with_env_var("POSTGRES_HOST_AUTH_METHOD", "trust")
                .with_env_var("POSTGRES_DB", "test")
                .with_cmd(if host_network {
                    vec![
                        "postgres".to_owned(),
                        "-p".to_owned(),
                        port.to_string(),
                        "-c".to_owned(),
                        "listen_addresses=127.0.0.1".to_owned(),
                    ]
                } else {
                    vec!["postgres".to_owned()]
                }),
            Server::Redis => request.with_cmd(if host_network {
                vec![
                    "redis-server".to_owned(),
                    "--port".to_owned(),
                    port.to_string(),
                    "--bind".to_owned(),
                    "127.0.0.1".to_owned(),
                    "--save".to_owned(),
                    String::new(),
                ]
            } else {
                vec![
                    "redis-server".to_owned(),
                    "--save".to_owned(),
                    String::new(),
                ]
            }),
        };
        if host_network {
            request = request.with_network("host");
        }
        request
    };
    let container_port: ContainerPort = port.tcp();
    // Test processes start together: when another one created the container first, the name
    // is taken; the next try finds and reuses it.
    let mut last = String::new();
    for _ in 0..5 {
        match build().start() {
            Ok(container) => {
                let reached = if host_network {
                    port
                } else {
                    container
                        .get_host_port_ipv4(container_port)
                        .map_err(|e| format!("the container's port: {e}"))?
                };
                // Kept for the next test process and the next run (a reused container is not
                // removed on drop).
                std::mem::forget(container);
                wait_until_listening(reached, server)?;
                return Ok(server.url(reached));
            }
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Err(format!("could not start {image} in Docker: {last}"))
}

/// Waits (at most 60 s) until the server accepts TCP connections and answers as itself: the
/// official PostgreSQL image restarts once after its first initialisation.
fn wait_until_listening(port: u16, server: Server) -> Result<(), String> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut ready_in_a_row = 0;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_ok() {
            ready_in_a_row += 1;
            // Listening for a second in a row: past the image's initialisation restart.
            if ready_in_a_row >= 3 {
                return Ok(());
            }
        } else {
            ready_in_a_row = 0;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Err(format!(
        "the {} container did not listen on 127.0.0.1:{port} within 60 s",
        server.name()
    ))
}
