//! [`RedisStore`]: one key per session, `SET NX PXAT` creates, Lua scripts for updates.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{AsyncCommands, Cmd, Pipeline, RedisFuture, Script, Value};
use session_core::time::OffsetDateTime;
use session_core::{
    Bytes, Capabilities, CreateOutcome, Error, ErrorKind, OwnedSession, Owner, OwnerChange,
    Ownership, Record, Result, Rotation, SessionId, SessionKey, SessionStore, UpdateOutcome,
    WriteOptions, async_trait, redact_url, truncate_to_millis, unix_millis,
};

use session_core::codec::record;

use crate::cluster;
use crate::config::RedisConfig;
use crate::error::map_redis_error;
use crate::scripts::{self, update};

/// Bytes before the data in a stored value ([`record`]'s framing).
const HEADER: usize = record::HEADER;
/// Keys unlinked per `UNLINK` by `clear`.
const CLEAR_BATCH: usize = 500;

/// How long an owner index member may name no session of its owner before a listing or a
/// revoke removes it: a `create_owned` or rotation adds the member just before it writes the
/// session, so a young member may be one in flight.
const STALE_MEMBER_MS: i64 = 60_000;

/// Values of at least this many bytes take the staged path ([`scripts::STAGED_UPDATE`]): at 4 KiB
/// staged saves ran 0.81–0.99x of a blind SET against 0.71–0.94x inline (peer-bench, two runs
/// each); at 200 B one command is cheaper than two.
const STAGE_FROM: usize = 1024;
/// How long a staged value may wait for its script (it is renamed or removed at once; this only
/// bounds what a client dying in between leaves behind).
const STAGE_TTL_MS: u64 = 60_000;

/// One multiplexed connection: to a single server, or to a whole Redis Cluster (one connection
/// per node behind it; commands go to the node owning their key's slot, `MOVED`/`ASK` and
/// topology changes handled by the driver).
#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// In cluster mode the driver resends nothing (its retries would resend a write whose reply
/// was lost, and the second run's "taken"/"conflict"/"not found" would be reported for a write
/// that landed): the store resends only what a node refused before running it (`MOVED`, `ASK`,
/// `TRYAGAIN`, `CLUSTERDOWN`, `READONLY`: [`cluster::refused`]), after the driver refreshed its
/// slot map. A lost connection or a timeout reaches the caller as a transient error: outcome
/// unknown.
impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => Box::pin(async move {
                let mut attempt = 0;
                loop {
                    match c.req_packed_command(cmd).await {
                        Err(e) if cluster::refused(&e) && attempt < cluster::RESENDS => {
                            attempt += 1;
                            tokio::time::sleep(cluster::pause(attempt)).await;
                        }
                        answer => return answer,
                    }
                }
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => Box::pin(async move {
                let mut attempt = 0;
                loop {
                    match c.req_packed_commands(pipeline, offset, count).await {
                        Err(e) if cluster::refused(&e) && attempt < cluster::RESENDS => {
                            attempt += 1;
                            tokio::time::sleep(cluster::pause(attempt)).await;
                        }
                        answer => return answer,
                    }
                }
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}

/// The stored form of an ownership: the owner, a NUL, the label (owners and labels hold no
/// control characters).
fn owner_record(ownership: &Ownership) -> Vec<u8> {
    let mut record =
        Vec::with_capacity(ownership.owner().as_str().len() + 1 + ownership.label().len());
    record.extend_from_slice(ownership.owner().as_str().as_bytes());
    record.push(0);
    record.extend_from_slice(ownership.label().as_bytes());
    record
}

/// The owner and label of a stored owner record.
fn parse_owner_record(stored: &[u8]) -> Result<(Owner, String)> {
    let corrupt = || {
        Error::new(
            ErrorKind::Decode,
            "redis: a stored owner record is malformed",
        )
    };
    let cut = stored.iter().position(|&b| b == 0).ok_or_else(corrupt)?;
    let owner = std::str::from_utf8(&stored[..cut]).map_err(|_| corrupt())?;
    let label = std::str::from_utf8(&stored[cut + 1..]).map_err(|_| corrupt())?;
    Ok((Owner::new(owner).map_err(|_| corrupt())?, label.to_owned()))
}

/// A [`SessionStore`] in Redis: one server, or a Redis Cluster.
///
/// Each session is one key, `prefix + hex(SessionKey)` (in cluster mode
/// `prefix + "{" + first two hex digits + "}" + hex(SessionKey)`: see the crate docs), whose value is the version, the expiry
/// and the data in a compact binary form, and whose Redis deadline (`PXAT`) is one millisecond
/// before the expiry: Redis keeps a key while `now <= deadline`, so the key disappears exactly
/// when `expires_at <= now` holds, by Redis's clock. Expired keys are removed by Redis itself;
/// `delete_expired` returns 0.
#[derive(Clone)]
pub struct RedisStore {
    /// The multiplexed connections, used round robin (one cluster connection in cluster mode).
    connections: Arc<[Connection]>,
    next: Arc<AtomicUsize>,
    config: RedisConfig,
    update: Script,
    staged_update: Script,
    touch: Script,
    create_owned: Script,
    revoke_one: Script,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn rd(doing: &'static str) -> impl Fn(redis::RedisError) -> Error {
    move |error| map_redis_error(doing, error)
}

/// The Redis deadline for a record expiring at `expires_at` (see the type's docs); at least 1,
/// since Redis refuses deadlines at or before the epoch.
fn deadline(expires_at: OffsetDateTime) -> i64 {
    (unix_millis(expires_at) - 1).max(1)
}

/// A stored value (header, then the data), written straight into the command's buffer: the
/// data is copied once, not first into a value of its own.
struct Stored<'a> {
    version: u64,
    expires_at: OffsetDateTime,
    data: &'a [u8],
}

fn encode(version: u64, expires_at: OffsetDateTime, data: &[u8]) -> Stored<'_> {
    Stored {
        version,
        expires_at,
        data,
    }
}

impl redis::ToRedisArgs for Stored<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        use std::io::Write as _;
        let mut arg = out.writer_for_next_arg();
        // Writing into the command's own buffer cannot fail.
        arg.write_all(&record::header(self.version, self.expires_at))
            .and_then(|()| arg.write_all(self.data))
            .expect("writing into a Vec");
    }
}

impl redis::ToSingleRedisArg for Stored<'_> {}

/// A reply no script gives: a server that runs other scripts under our names, or a bug.
fn unexpected(script: &str) -> Error {
    Error::new(
        ErrorKind::Backend,
        format!("redis: unexpected reply from {script}"),
    )
}

/// A stored value as a record; a value that is not one is a `Decode` error naming Redis.
fn decode(value: Vec<u8>) -> Result<Record> {
    record::decode(value).map_err(|e| {
        Error::with_source(
            ErrorKind::Decode,
            "redis: a value under the store's prefix is not a session",
            e,
        )
    })
}

impl RedisStore {
    /// Connects with `config`. A bad prefix is a `Config` error before anything is sent; a bad
    /// URL is `Config`; an unreachable server a transient `Backend` error within the connection
    /// timeout; a wrong password `Config`; a Redis Cluster is refused (`Unsupported`).
    pub async fn connect(config: RedisConfig) -> Result<Self> {
        // Settings left in the URL's query (`?key_prefix=…`) are taken off it.
        let config = config.parse(&[])?;
        if config.cluster {
            let connection = Connection::Cluster(cluster::connect(&config).await?);
            return Ok(Self {
                connections: vec![connection].into(),
                next: Arc::new(AtomicUsize::new(0)),
                config,
                update: Script::new(scripts::UPDATE),
                staged_update: Script::new(scripts::STAGED_UPDATE),
                touch: Script::new(scripts::TOUCH),
                create_owned: Script::new(scripts::CREATE_OWNED),
                revoke_one: Script::new(scripts::REVOKE_ONE),
            });
        }
        let client = redis::Client::open(config.url.as_str()).map_err(|e| {
            Error::with_source(
                ErrorKind::Config,
                format!("redis: invalid URL {}", redact_url(&config.url)),
                e,
            )
        })?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connection_timeout))
            .set_response_timeout(Some(config.response_timeout))
            .set_number_of_retries(2);
        let mut connection =
            ConnectionManager::new_with_config(client.clone(), manager_config.clone())
                .await
                .map_err(rd("connecting"))?;
        let info: String = redis::cmd("INFO")
            .arg("cluster")
            .query_async(&mut connection)
            .await
            .map_err(rd("reading INFO"))?;
        if info.lines().any(|line| line.trim() == "cluster_enabled:1") {
            return Err(Error::new(
                ErrorKind::Config,
                "redis: this server is a Redis Cluster node: connect with a `redis+cluster://` URL (cluster mode keeps a session's keys in one hash slot, so rotation stays one atomic script)",
            ));
        }
        let mut connections = vec![Connection::Single(connection)];
        for _ in 1..config.connections.max(1) {
            connections.push(Connection::Single(
                ConnectionManager::new_with_config(client.clone(), manager_config.clone())
                    .await
                    .map_err(rd("connecting"))?,
            ));
        }
        let connections: Arc<[Connection]> = connections.into();
        Ok(Self {
            connections,
            next: Arc::new(AtomicUsize::new(0)),
            config,
            update: Script::new(scripts::UPDATE),
            staged_update: Script::new(scripts::STAGED_UPDATE),
            touch: Script::new(scripts::TOUCH),
            create_owned: Script::new(scripts::CREATE_OWNED),
            revoke_one: Script::new(scripts::REVOKE_ONE),
        })
    }

    /// The next connection, round robin.
    fn connection(&self) -> Connection {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len();
        self.connections[i].clone()
    }

    /// Sends the write `command`; with `wait_replicas` set, `WAIT` follows it in one pipeline on
    /// the same connection (so to the same node), and fewer acknowledging replicas is an error.
    async fn write<T: redis::FromRedisValue>(
        &self,
        command: Cmd,
        doing: &'static str,
    ) -> Result<T> {
        let mut connection = self.connection();
        if self.config.wait_replicas == 0 {
            return command
                .query_async(&mut connection)
                .await
                .map_err(rd(doing));
        }
        let mut pipe = redis::pipe();
        pipe.add_command(command);
        let replied = self.replicated(pipe, &mut connection).await;
        self.acknowledged(replied, doing)
    }

    /// [`write`](Self::write) for a script invocation, after the commands `before` (a `SET` of
    /// a staging key, a `ZADD` to an owner's index on a single server), all in one pipeline.
    /// The script is loaded on `NOSCRIPT` (a failover or a restart leaves a node without it)
    /// and the pipeline sent once more.
    async fn write_script<T: redis::FromRedisValue>(
        &self,
        before: Vec<Cmd>,
        invocation: &redis::ScriptInvocation<'_>,
        doing: &'static str,
    ) -> Result<T> {
        let mut connection = self.connection();
        if self.config.wait_replicas == 0 && before.is_empty() {
            return invocation
                .invoke_async(&mut connection)
                .await
                .map_err(rd(doing));
        }
        let mut pipe = redis::pipe();
        for command in before {
            pipe.add_command(command).ignore();
        }
        pipe.invoke_script(invocation);
        let mut replied = self.replicated(pipe.clone(), &mut connection).await;
        if let Err(e) = &replied
            && e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
        {
            invocation
                .load_async(&mut connection)
                .await
                .map_err(rd(doing))?;
            replied = self.replicated(pipe, &mut connection).await;
        }
        self.acknowledged(replied, doing)
    }

    /// Runs `pipe` (one write, maybe after a staging `SET` whose reply is ignored), followed by
    /// `WAIT wait_replicas wait_timeout` when replicas are asked for; the write's reply and how
    /// many replicas acknowledged it.
    async fn replicated<T: redis::FromRedisValue>(
        &self,
        mut pipe: Pipeline,
        connection: &mut Connection,
    ) -> redis::RedisResult<(T, u32)> {
        if self.config.wait_replicas == 0 {
            let (reply,): (T,) = pipe.query_async(connection).await?;
            return Ok((reply, 0));
        }
        pipe.cmd("WAIT")
            .arg(self.config.wait_replicas)
            .arg(self.config.wait_timeout.as_millis() as u64);
        pipe.query_async(connection).await
    }

    /// The write's reply once enough replicas acknowledged it.
    fn acknowledged<T>(
        &self,
        replied: redis::RedisResult<(T, u32)>,
        doing: &'static str,
    ) -> Result<T> {
        let replicas = self.config.wait_replicas;
        let (reply, acknowledged) = replied.map_err(rd(doing))?;
        if acknowledged < replicas {
            return Err(Error::new(
                ErrorKind::Backend,
                format!(
                    "redis: {doing}: {acknowledged} of {replicas} replicas acknowledged the write in time; it is on the master and may be lost with it (outcome unknown)"
                ),
            ));
        }
        Ok(reply)
    }

    /// The configuration.
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// The hash tag of one of this store's key names (`""` on a single server).
    fn slot_tag<'n>(&self, name: &'n str) -> &'n str {
        let start = self.config.key_prefix.len();
        if !self.config.cluster {
            return "";
        }
        let rest = name.get(start..).unwrap_or("");
        match rest.find('}') {
            Some(end) if rest.starts_with('{') => &rest[..=end],
            _ => "",
        }
    }

    /// The owner record of a session (`owner NUL label`, same deadline): its key and `:o`.
    fn owner_record_key(&self, key: &SessionKey) -> String {
        self.key(key) + ":o"
    }

    /// Where a rotated owned session went (the new key in hex): its old key and `:f`.
    fn forward_key(&self, key: &SessionKey) -> String {
        self.key(key) + ":f"
    }

    /// The owner index of `owner`, a sorted set of session keys (hex) scored by when they were
    /// added: `prefix + hex(SHA-256(owner)) + ":u"`, in cluster mode with the digest as its hash
    /// tag. No key of this form is ever a session key (those end in a hex digit).
    fn owner_set_key(&self, owner: &Owner) -> String {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(owner.as_str().as_bytes());
        let hex = SessionKey::from_bytes(&digest)
            .expect("a SHA-256 digest is 32 bytes")
            .to_hex();
        if self.config.cluster {
            format!("{}{{{hex}}}:u", self.config.key_prefix)
        } else {
            format!("{}{hex}:u", self.config.key_prefix)
        }
    }

    /// The part of a session's key name before its hex digits.
    fn base(&self, key: &SessionKey) -> String {
        let name = self.key(key);
        name[..name.len() - 64].to_owned()
    }

    /// The Redis key of `key`: `prefix + hex`, or in cluster mode `prefix{tt}hex` where `tt`
    /// is the first byte of the key in hex, so the key's hash slot is the slot of `tt`.
    fn key(&self, key: &SessionKey) -> String {
        let hex = key.to_hex();
        let mut name = String::with_capacity(self.config.key_prefix.len() + 68);
        name.push_str(&self.config.key_prefix);
        if self.config.cluster {
            name.push('{');
            name.push_str(&hex[..2]);
            name.push('}');
        }
        name.push_str(&hex);
        name
    }

    /// A fresh staging key for a large value bound for `current`: in `current`'s hash slot,
    /// and never matching the store's own key pattern (`~` is not a hex digit).
    fn staging_key(&self, current: &SessionKey) -> String {
        let name = self.key(current);
        let random = SessionId::generate().key().to_hex();
        format!("{}~{}", &name[..name.len() - 64], &random[..32])
    }

    /// The `SCAN MATCH` pattern of exactly the keys this store writes: the prefix and 64
    /// lowercase hex digits, with the hash tag in cluster mode (prefixes hold no glob
    /// characters: validated).
    fn pattern(&self) -> String {
        let tag = if self.config.cluster {
            "{[0-9a-f][0-9a-f]}"
        } else {
            ""
        };
        format!("{}{tag}{}", self.config.key_prefix, "[0-9a-f]".repeat(64))
    }

    /// The `SCAN MATCH` patterns of the owner index's keys: owner records and forward markers
    /// (a session key and `:o`/`:f`), and owner sets.
    fn owner_patterns(&self) -> [String; 2] {
        let hex = "[0-9a-f]".repeat(64);
        let sets = if self.config.cluster {
            format!("{}{{{hex}}}:u", self.config.key_prefix)
        } else {
            format!("{}{hex}:u", self.config.key_prefix)
        };
        [format!("{}:[of]", self.pattern()), sets]
    }

    /// Whether `name` is an owner-index key of this store (the patterns' check, on the client).
    fn is_owner_key(&self, name: &str) -> bool {
        if let Some(session) = name.strip_suffix(":o").or_else(|| name.strip_suffix(":f"))
            && self.is_ours(session)
        {
            return true;
        }
        let Some(rest) = name
            .strip_prefix(self.config.key_prefix.as_str())
            .and_then(|rest| rest.strip_suffix(":u"))
        else {
            return false;
        };
        let hex = if self.config.cluster {
            match rest.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
                Some(hex) => hex,
                None => return false,
            }
        } else {
            rest
        };
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }

    /// Whether `name` is a key this store writes (the pattern's check, again on the client).
    fn is_ours(&self, name: &str) -> bool {
        let is_hex = |text: &str| {
            text.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let Some(rest) = name.strip_prefix(self.config.key_prefix.as_str()) else {
            return false;
        };
        if !self.config.cluster {
            return rest.len() == 64 && is_hex(rest);
        }
        rest.len() == 68
            && rest.as_bytes()[0] == b'{'
            && rest.as_bytes()[3] == b'}'
            && is_hex(&rest[4..])
            && rest[1..3] == rest[4..6]
    }

    /// The names of this namespace's keys: one `SCAN` over the server, or one per master of a
    /// cluster (each master holds its own slots' keys).
    async fn scan(&self) -> Result<Vec<String>> {
        self.scan_matching(&self.pattern(), Self::is_ours).await
    }

    /// The names matching `pattern` (and `keep`, checked on the client) over the server or
    /// every master of a cluster.
    async fn scan_matching(
        &self,
        pattern: &str,
        keep: fn(&Self, &str) -> bool,
    ) -> Result<Vec<String>> {
        let mut names = Vec::new();
        match self.connection() {
            Connection::Single(mut connection) => {
                let mut iter: redis::AsyncIter<'_, String> = connection
                    .scan_options(
                        redis::ScanOptions::default()
                            .with_pattern(pattern)
                            .with_count(1000),
                    )
                    .await
                    .map_err(rd("scanning keys"))?;
                while let Some(item) = iter.next_item().await {
                    names.push(item.map_err(rd("scanning keys"))?);
                }
            }
            Connection::Cluster(mut connection) => {
                for (host, port) in cluster::masters(&mut connection).await? {
                    let mut cursor = 0u64;
                    loop {
                        let mut command = redis::cmd("SCAN");
                        command
                            .arg(cursor)
                            .arg("MATCH")
                            .arg(pattern)
                            .arg("COUNT")
                            .arg(1000);
                        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                            host: host.clone(),
                            port,
                        });
                        let reply = connection
                            .route_command(command, routing)
                            .await
                            .map_err(rd("scanning keys"))?;
                        let (next, batch): (u64, Vec<String>) = redis::from_redis_value(reply)
                            .map_err(|e| rd("scanning keys")(e.into()))?;
                        names.extend(batch);
                        cursor = next;
                        if cursor == 0 {
                            break;
                        }
                    }
                }
            }
        }
        names.retain(|name| keep(self, name));
        Ok(names)
    }

    /// Adds `key` to `owner`'s index, scored now, before the session is written under it: on
    /// a single server the `ZADD` is returned, to go first in the write's own pipeline (one
    /// round trip for both; a connection runs a pipeline in order); in a cluster (another
    /// slot, maybe another node) it is sent now.
    async fn index_member(&self, owner: &Owner, key: &SessionKey) -> Result<Vec<Cmd>> {
        let mut command = redis::cmd("ZADD");
        command
            .arg(self.owner_set_key(owner))
            .arg(unix_millis(OffsetDateTime::now_utc()))
            .arg(key.to_hex());
        if !self.config.cluster {
            return Ok(vec![command]);
        }
        let _: i64 = self.write(command, "indexing a session's owner").await?;
        Ok(Vec::new())
    }

    /// The members of `owner`'s index with their scores.
    async fn members(&self, owner: &Owner) -> Result<Vec<(String, i64)>> {
        let mut command = redis::cmd("ZRANGE");
        command
            .arg(self.owner_set_key(owner))
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES");
        let pairs: Vec<(String, f64)> = command
            .query_async(&mut self.connection())
            .await
            .map_err(rd("reading an owner's index"))?;
        Ok(pairs
            .into_iter()
            .map(|(member, score)| (member, score as i64))
            .collect())
    }

    /// Removes `members` from `owner`'s index.
    async fn unindex(&self, owner: &Owner, members: &[String]) -> Result<()> {
        if members.is_empty() {
            return Ok(());
        }
        let mut command = redis::cmd("ZREM");
        command.arg(self.owner_set_key(owner)).arg(members);
        let _: i64 = self.write(command, "pruning an owner's index").await?;
        Ok(())
    }

    /// Number of live sessions of this namespace (a `SCAN`; expired keys are gone already).
    pub async fn count(&self) -> Result<u64> {
        Ok(self.scan().await?.len() as u64)
    }
}

/// The owner index is a sorted set per owner (session keys in hex, scored by when they were
/// added), an owner record beside each owned session (`key:o`, the same deadline) and, after a
/// rotation of an owned session, a forward marker at the old key (`key:f`). See the crate docs
/// for what is atomic: every session's own change is one script (session, owner record and
/// forward marker share its hash slot); the owner's set is another key (another slot in a
/// cluster), so it is updated before (members added) and after (stale members removed) and a
/// listing checks every member against its session.
#[async_trait]
impl SessionStore for RedisStore {
    /// Redis expires keys by itself, and keeps no expired ones to count. Its deadline is the
    /// per-command `response_timeout`: an operation stops at its first command that gets no
    /// answer in time. Redis Cluster runs a
    /// script on one hash slot, and a key's slot is its first byte's: a rotation must keep the
    /// key's first byte. A single server takes any pair.
    fn capabilities(&self) -> Capabilities {
        let rotation = if self.config.cluster {
            Rotation::WithinPartition { bits: 8 }
        } else {
            Rotation::Anywhere
        };
        Capabilities::new()
            .expires_by_itself(true)
            .counts_expired(false)
            .owner_index(true)
            .rotation(rotation)
            .deadline(Some(self.config.response_timeout))
            // With `wait_replicas`, a write is acknowledged once replicas hold it; reading the
            // master back cannot show that.
            .rereads_confirm_writes(self.config.wait_replicas == 0)
    }

    /// A plain create is one `SET NX PXAT`; a create with an owner is a script that writes the
    /// owner record beside the session, after the owner's index got its member.
    async fn create_opts(
        &self,
        key: &SessionKey,
        expires_at: OffsetDateTime,
        data: Bytes,
        options: &WriteOptions,
    ) -> Result<CreateOutcome> {
        let expires_at = truncate_to_millis(expires_at);
        if let OwnerChange::Set(ownership) = &options.owner {
            let before = self.index_member(ownership.owner(), key).await?;
            let mut invocation = self.create_owned.key(self.key(key));
            invocation
                .key(self.owner_record_key(key))
                .arg(encode(1, expires_at, &data))
                .arg(deadline(expires_at))
                .arg(owner_record(ownership));
            let created: i64 = self
                .write_script(before, &invocation, "creating a session")
                .await?;
            return match created {
                scripts::create_owned::CREATED => Ok(CreateOutcome::Created),
                scripts::create_owned::ID_TAKEN => Ok(CreateOutcome::IdTaken),
                _ => Err(unexpected("the create script")),
            };
        }
        let mut command = redis::cmd("SET");
        command
            .arg(self.key(key))
            .arg(encode(1, expires_at, &data))
            .arg("NX")
            .arg("PXAT")
            .arg(deadline(expires_at));
        let reply: Option<String> = self.write(command, "creating a session").await?;
        match reply.as_deref() {
            Some("OK") => Ok(CreateOutcome::Created),
            None => Ok(CreateOutcome::IdTaken),
            Some(_) => Err(Error::new(
                ErrorKind::Backend,
                "redis: unexpected reply to SET NX",
            )),
        }
    }

    /// The owner record is kept, set or cleared in the same script. A plain rotation of an owned
    /// session first learns its owner from the script (nothing changed), adds `current` to that
    /// owner's index, and runs again.
    async fn update_opts(
        &self,
        current: &SessionKey,
        previous: &SessionKey,
        expected_version: u64,
        expires_at: OffsetDateTime,
        data: Bytes,
        options: &WriteOptions,
    ) -> Result<UpdateOutcome> {
        if !self.capabilities().can_rotate_between(previous, current) {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "redis cluster: a rotation must keep the first byte of the session key (its hash slot): one script cannot reach two slots; nothing was changed",
            ));
        }
        let expires_at = truncate_to_millis(expires_at);
        let Some(version) = expected_version.checked_add(1) else {
            // Only a corrupt value holds version u64::MAX (versions count writes); answer as
            // for any other expected version.
            return match self.read(previous).await? {
                None => Ok(UpdateOutcome::NotFound),
                Some(record) if record.version == expected_version => Err(Error::new(
                    ErrorKind::Decode,
                    "redis: the stored version is at its maximum (a corrupt value)",
                )),
                Some(_) => Ok(UpdateOutcome::Conflict),
            };
        };
        let (mode, record) = match &options.owner {
            OwnerChange::Keep => (update::KEEP, Vec::new()),
            OwnerChange::Set(ownership) => (update::SET, owner_record(ownership)),
            OwnerChange::Clear => (update::CLEAR, Vec::new()),
        };
        // The owner whose index lists `current` already.
        let mut indexed: Option<Owner> = None;
        let mut before = Vec::new();
        if let OwnerChange::Set(ownership) = &options.owner {
            before = self.index_member(ownership.owner(), current).await?;
            indexed = Some(ownership.owner().clone());
        }
        for _ in 0..4 {
            let indexed_name = indexed.as_ref().map_or("", Owner::as_str);
            // On a single server the script removes the old key from that owner's index itself.
            let index_key = indexed
                .as_ref()
                .filter(|_| !self.config.cluster)
                .map(|owner| self.owner_set_key(owner));
            let reply: Value = if data.len() < STAGE_FROM {
                let mut invocation = self.update.key(self.key(current));
                invocation
                    .key(self.key(previous))
                    .key(self.owner_record_key(current))
                    .key(self.owner_record_key(previous))
                    .key(self.forward_key(previous));
                if let Some(index) = &index_key {
                    invocation.key(index);
                }
                invocation
                    .arg(&expected_version.to_be_bytes()[..])
                    .arg(encode(version, expires_at, &data))
                    .arg(deadline(expires_at))
                    .arg(mode)
                    .arg(&record[..])
                    .arg(indexed_name);
                self.write_script(
                    std::mem::take(&mut before),
                    &invocation,
                    "updating a session",
                )
                .await?
            } else {
                let staging = self.staging_key(current);
                let mut stage = redis::cmd("SET");
                stage
                    .arg(&staging)
                    .arg(encode(version, expires_at, &data))
                    .arg("PX")
                    .arg(STAGE_TTL_MS);
                let mut invocation = self.staged_update.key(self.key(current));
                invocation
                    .key(self.key(previous))
                    .key(self.owner_record_key(current))
                    .key(self.owner_record_key(previous))
                    .key(self.forward_key(previous))
                    .key(staging);
                if let Some(index) = &index_key {
                    invocation.key(index);
                }
                invocation
                    .arg(&expected_version.to_be_bytes()[..])
                    .arg("")
                    .arg(deadline(expires_at))
                    .arg(mode)
                    .arg(&record[..])
                    .arg(indexed_name);
                before.push(stage);
                self.write_script(
                    std::mem::take(&mut before),
                    &invocation,
                    "updating a session",
                )
                .await?
            };
            let outcome = match reply {
                Value::Int(update::NOT_FOUND) => UpdateOutcome::NotFound,
                Value::Int(update::UPDATED) => UpdateOutcome::Updated { version },
                Value::Int(update::CONFLICT) => UpdateOutcome::Conflict,
                Value::Int(update::ID_TAKEN) => UpdateOutcome::IdTaken,
                Value::Array(items) if items.first() == Some(&Value::Int(update::NEEDS_INDEX)) => {
                    let Some(Value::BulkString(stored)) = items.get(1) else {
                        break;
                    };
                    let (owner, _) = parse_owner_record(stored)?;
                    before = self.index_member(&owner, current).await?;
                    indexed = Some(owner);
                    continue;
                }
                _ => break,
            };
            if let (UpdateOutcome::Updated { .. }, Some(owner)) = (outcome, &indexed)
                && current != previous
                && self.config.cluster
            {
                // The old key's member is stale now; a failure here only leaves it for a
                // listing to remove.
                let mut command = redis::cmd("ZREM");
                command
                    .arg(self.owner_set_key(owner))
                    .arg(previous.to_hex());
                if let Err(e) = self
                    .write::<i64>(command, "unlisting a rotated session")
                    .await
                {
                    tracing::debug!(error = %e, "could not remove a rotated session from its owner's index");
                }
            }
            return Ok(outcome);
        }
        Err(unexpected("the update script"))
    }

    async fn read(&self, key: &SessionKey) -> Result<Option<Record>> {
        let value: Option<Vec<u8>> = self
            .connection()
            .get(self.key(key))
            .await
            .map_err(rd("reading a session"))?;
        value.map(decode).transpose()
    }

    async fn touch(&self, key: &SessionKey, expires_at: OffsetDateTime) -> Result<bool> {
        let expires_at = truncate_to_millis(expires_at);
        let mut invocation = self.touch.key(self.key(key));
        invocation
            .key(self.owner_record_key(key))
            .arg(&unix_millis(expires_at).to_be_bytes()[..])
            .arg(deadline(expires_at));
        let touched: i64 = self
            .write_script(Vec::new(), &invocation, "touching a session")
            .await?;
        match touched {
            scripts::touch::TOUCHED => Ok(true),
            scripts::touch::ABSENT => Ok(false),
            _ => Err(unexpected("the touch script")),
        }
    }

    async fn delete(&self, key: &SessionKey) -> Result<()> {
        let mut command = redis::cmd("UNLINK");
        command.arg(self.key(key)).arg(self.owner_record_key(key));
        let _: i64 = self.write(command, "deleting a session").await?;
        Ok(())
    }

    /// Redis removes expired keys by itself (lazily and in the background); nothing to purge.
    async fn delete_expired(&self) -> Result<u64> {
        Ok(0)
    }

    /// `SCAN MATCH <prefix + 64 lowercase hex digits>` and batched `UNLINK`: exactly the keys
    /// this store writes, never `FLUSHDB`, never a foreign key under the same prefix.
    async fn clear(&self) -> Result<()> {
        let mut keys = self.scan().await?;
        for pattern in self.owner_patterns() {
            keys.extend(self.scan_matching(&pattern, Self::is_owner_key).await?);
        }
        // In cluster mode one UNLINK may only name keys of one slot: batch by hash tag.
        keys.sort_unstable_by(|a, b| self.slot_tag(a).cmp(self.slot_tag(b)));
        for group in keys.chunk_by(|a, b| self.slot_tag(a) == self.slot_tag(b)) {
            for batch in group.chunks(CLEAR_BATCH) {
                let _: i64 = self
                    .connection()
                    .unlink(batch)
                    .await
                    .map_err(rd("clearing sessions"))?;
            }
        }
        Ok(())
    }

    async fn sessions_of(&self, owner: &Owner) -> Result<Vec<OwnedSession>> {
        let members = self.members(owner).await?;
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let keys = members
            .iter()
            .map(|(member, _)| hex_key(member))
            .collect::<Result<Vec<_>>>()?;
        // One pipeline per hash slot (a cluster refuses a pipeline across slots; a single
        // server gets one pipeline): each session's header and owner record.
        let mut groups: Vec<Vec<usize>> = Vec::new();
        if self.config.cluster {
            let mut by_tag: std::collections::BTreeMap<u8, Vec<usize>> = Default::default();
            for (i, key) in keys.iter().enumerate() {
                by_tag.entry(key.as_bytes()[0]).or_default().push(i);
            }
            groups.extend(by_tag.into_values());
        } else {
            groups.push((0..keys.len()).collect());
        }
        let replied = futures::future::try_join_all(groups.iter().map(|group| {
            let mut pipe = redis::pipe();
            for &i in group {
                pipe.cmd("GETRANGE").arg(self.key(&keys[i])).arg(0).arg(15);
                pipe.cmd("GET").arg(self.owner_record_key(&keys[i]));
            }
            let mut connection = self.connection();
            async move {
                pipe.query_async::<Vec<(Vec<u8>, Option<Vec<u8>>)>>(&mut connection)
                    .await
            }
        }))
        .await
        .map_err(rd("listing an owner's sessions"))?;
        let mut replies = vec![(Vec::new(), None); keys.len()];
        for (group, answers) in groups.iter().zip(replied) {
            for (&i, answer) in group.iter().zip(answers) {
                replies[i] = answer;
            }
        }
        let now = OffsetDateTime::now_utc();
        let mut sessions = Vec::new();
        let mut stale = Vec::new();
        for (((member, score), key), (head, record)) in members.iter().zip(keys).zip(replies) {
            let listed = match record.as_deref().map(parse_owner_record).transpose()? {
                Some((found, label)) if &found == owner && head.len() == HEADER => {
                    let mut value = head;
                    value.truncate(HEADER);
                    let Record {
                        expires_at,
                        version,
                        ..
                    } = decode(value)?;
                    (expires_at > now).then_some(OwnedSession {
                        key,
                        expires_at,
                        version,
                        label,
                    })
                }
                _ => None,
            };
            match listed {
                Some(session) => sessions.push(session),
                None if *score < unix_millis(now) - STALE_MEMBER_MS => stale.push(member.clone()),
                None => {}
            }
        }
        if let Err(e) = self.unindex(owner, &stale).await {
            tracing::debug!(error = %e, "could not prune an owner's index");
        }
        sessions.sort_by_key(|session| (session.expires_at, *session.key.as_bytes()));
        Ok(sessions)
    }

    async fn revoke_owner(&self, owner: &Owner, except: Option<&SessionKey>) -> Result<u64> {
        let members = self.members(owner).await?;
        let except = except.map(SessionKey::to_hex).unwrap_or_default();
        let now = unix_millis(OffsetDateTime::now_utc());
        let revoked = futures::future::try_join_all(members.iter().map(|(member, _)| async {
            let key = hex_key(member)?;
            let mut invocation = self.revoke_one.key(self.key(&key));
            invocation
                .key(self.owner_record_key(&key))
                .key(self.forward_key(&key))
                .arg(owner.as_str())
                .arg(&except)
                .arg(self.base(&key));
            let reply = self
                .write_script::<i64>(Vec::new(), &invocation, "revoking an owner's sessions")
                .await?;
            match reply {
                scripts::revoke_one::REVOKED | scripts::revoke_one::KEPT => Ok(reply),
                _ => Err(unexpected("the revoke script")),
            }
        }))
        .await?;
        // Members whose session is gone now (or long stale) leave the index; a young member
        // whose session was not found may be a create in flight, and stays.
        let done: Vec<String> = members
            .iter()
            .zip(&revoked)
            .filter(|((member, score), deleted)| {
                **deleted == scripts::revoke_one::REVOKED
                    || (*member != except && *score < now - STALE_MEMBER_MS)
            })
            .map(|((member, _), _)| member.clone())
            .collect();
        if let Err(e) = self.unindex(owner, &done).await {
            tracing::debug!(error = %e, "could not prune an owner's index");
        }
        Ok(revoked
            .iter()
            .filter(|deleted| **deleted == scripts::revoke_one::REVOKED)
            .count() as u64)
    }
}

#[async_trait]
impl session_core::StoreAdmin for RedisStore {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn counts(&self) -> Result<session_core::Counts> {
        Ok(session_core::Counts {
            live: self.count().await?,
            expired: None,
        })
    }

    /// Deletes the namespace's keys (exactly those `clear` deletes).
    async fn drop_namespace(&self) -> Result<()> {
        self.clear().await
    }
}

/// A session key from its hex form in an owner index.
fn hex_key(hex: &str) -> Result<SessionKey> {
    let corrupt = || {
        Error::new(
            ErrorKind::Decode,
            "redis: an owner index member is not a session key",
        )
    };
    if hex.len() != 64 {
        return Err(corrupt());
    }
    let mut bytes = [0u8; 32];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2).ok_or_else(corrupt)?, 16)
            .map_err(|_| corrupt())?;
    }
    SessionKey::from_bytes(&bytes)
}
