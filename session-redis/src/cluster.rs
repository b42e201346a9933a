//! Cluster mode: connecting to a Redis Cluster and finding its masters.

use std::time::Duration;

use redis::RetryMethod;
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use session_core::{Error, ErrorKind, Result, redact_url};

use crate::config::RedisConfig;
use crate::error::map_redis_error;

/// The URLs of the seed nodes: the URL's own host and every `seed` (`host:port`), each with
/// the URL's scheme, credentials and query.
pub(crate) fn seed_urls(config: &RedisConfig) -> Result<Vec<String>> {
    let bad = |why: &str| {
        Error::new(
            ErrorKind::Config,
            format!("redis: {why} in {}", redact_url(&config.url)),
        )
    };
    let url = url::Url::parse(&config.url).map_err(|_| bad("invalid URL"))?;
    let mut urls = vec![url.to_string()];
    for seed in &config.seeds {
        let (host, port) = seed
            .rsplit_once(':')
            .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
            .filter(|(host, _)| !host.is_empty())
            .ok_or_else(|| bad("a `seed` must be host:port"))?;
        let mut node = url.clone();
        node.set_host(Some(host))
            .map_err(|_| bad("a `seed` has an invalid host"))?;
        node.set_port(Some(port))
            .map_err(|_| bad("a `seed` has an invalid port"))?;
        urls.push(node.to_string());
    }
    Ok(urls)
}

/// How many times a command a node refused before running it is sent again.
pub(crate) const RESENDS: u32 = 16;

/// The wait before resend `attempt` (1, 2, …): 10 ms, doubling, at most 320 ms (about 4 s for
/// all of them: a slot moving during a reshard, a failover electing a new master).
pub(crate) fn pause(attempt: u32) -> Duration {
    Duration::from_millis(10 << attempt.saturating_sub(1).min(5))
}

/// Whether a node refused `error`'s command before running it, so sending it again cannot run
/// it twice: a redirect (`MOVED`, `ASK`), a slot being moved or a cluster without a quorum
/// (`TRYAGAIN`, `CLUSTERDOWN`), a replica asked to write (`READONLY`). Never a lost connection
/// or a timeout: the command may have run. A command that found no connection to its node (the
/// driver reconnects after a cut) was never sent either.
pub(crate) fn refused(error: &redis::RedisError) -> bool {
    if matches!(error.kind(), redis::ErrorKind::ClusterConnectionNotFound)
        || error.is_connection_refusal()
    {
        return true;
    }
    matches!(error.kind(), redis::ErrorKind::Server(_))
        && matches!(
            error.retry_method(),
            RetryMethod::MovedRedirect
                | RetryMethod::AskRedirect
                | RetryMethod::WaitAndRetry
                | RetryMethod::RefreshSlotsAndRetry
        )
}

/// One multiplexed cluster connection. The driver follows the slot map and refreshes it on a
/// redirect, but resends nothing itself (`retries(0)`): a write whose reply was lost must reach
/// the caller as an error, not run a second time (see the store's `Connection`).
pub(crate) async fn connect(config: &RedisConfig) -> Result<ClusterConnection> {
    let client = ClusterClientBuilder::new(seed_urls(config)?)
        .connection_timeout(config.connection_timeout)
        .response_timeout(config.response_timeout)
        .retries(0)
        .build()
        .map_err(|e| {
            Error::with_source(
                ErrorKind::Config,
                format!("redis: invalid cluster URL {}", redact_url(&config.url)),
                e,
            )
        })?;
    client
        .get_async_connection()
        .await
        .map_err(|e| map_redis_error("connecting to the cluster", e))
}

/// The masters that serve slots now (`CLUSTER NODES`: flag `master`, not failed), as host and
/// port.
pub(crate) async fn masters(connection: &mut ClusterConnection) -> Result<Vec<(String, u16)>> {
    let reply = connection
        .route_command(
            redis::cmd("CLUSTER").arg("NODES").clone(),
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
        )
        .await
        .map_err(|e| map_redis_error("listing the cluster's nodes", e))?;
    let text: String = redis::from_redis_value(reply)
        .map_err(|e| map_redis_error("listing the cluster's nodes", e.into()))?;
    Ok(parse_masters(&text))
}

/// The masters of a `CLUSTER NODES` reply that hold slots.
fn parse_masters(text: &str) -> Vec<(String, u16)> {
    let mut masters = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // <id> <ip:port@cport[,hostname]> <flags> <master> <ping> <pong> <epoch> <state> <slots>…
        if fields.len() < 9 {
            continue;
        }
        let flags: Vec<&str> = fields[2].split(',').collect();
        if !flags.contains(&"master") || flags.iter().any(|f| f.starts_with("fail")) {
            continue;
        }
        let address = fields[1].split(['@', ',']).next().unwrap_or_default();
        if let Some((host, port)) = address.rsplit_once(':')
            && let Ok(port) = port.parse()
        {
            masters.push((host.to_owned(), port));
        }
    }
    masters
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masters_with_slots_only() {
        let nodes = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922
c3 127.0.0.1:7002@17002,node-c master,fail - 0 0 3 connected 10923-16383
d4 127.0.0.1:7003@17003 slave a1 0 0 1 connected
e5 127.0.0.1:7004@17004 master - 0 0 0 connected
f6 127.0.0.1:7005@17005,node-f master - 0 0 4 connected 10923-16383
";
        assert_eq!(
            parse_masters(nodes),
            [
                ("127.0.0.1".to_owned(), 7000),
                ("127.0.0.1".to_owned(), 7001),
                ("127.0.0.1".to_owned(), 7005)
            ]
        );
    }

    #[test]
    fn seeds_take_the_urls_credentials() {
        let mut config = RedisConfig::new("redis://app:pw@127.0.0.1:7000");
        config.seeds = vec!["127.0.0.2:7001".into(), "node-c:7002".into()];
        assert_eq!(
            seed_urls(&config).unwrap(),
            [
                "redis://app:pw@127.0.0.1:7000",
                "redis://app:pw@127.0.0.2:7001",
                "redis://app:pw@node-c:7002"
            ]
        );
        for bad in ["nohost", ":7000", "h:port", "h:70000"] {
            config.seeds = vec![bad.into()];
            let error = seed_urls(&config).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Config, "{bad}");
            assert!(!error.to_string().contains("pw"), "{error}");
        }
    }
}
