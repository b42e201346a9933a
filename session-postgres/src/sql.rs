//! The statements of `PostgresStore`, written once per table: the SQL, nothing else.

pub(crate) struct Sql {
    pub(crate) table: String,
    pub(crate) owner_columns: String,
    pub(crate) index: String,
    pub(crate) owner_index: String,
    pub(crate) sessions_of: String,
    pub(crate) revoke: String,
    pub(crate) schema: String,
    pub(crate) create: String,
    pub(crate) read: String,
    pub(crate) update_fast: String,
    pub(crate) rotate_fast: String,
    pub(crate) update: String,
    pub(crate) rotate: String,
    pub(crate) touch: String,
    pub(crate) delete: String,
    pub(crate) delete_expired: String,
    pub(crate) clear: String,
    pub(crate) counts: String,
}

impl Sql {
    pub(crate) fn new(schema: &str, table: &str) -> Self {
        let t = format!("\"{schema}\".\"{table}\"");
        Self {
            table: format!(
                "CREATE TABLE IF NOT EXISTS {t} (\
                     key bytea PRIMARY KEY, \
                     expires_at timestamptz NOT NULL, \
                     version bigint NOT NULL, \
                     data bytea NOT NULL, \
                     owner text, \
                     label text)"
            ),
            // Tables made before the owner index get its columns (NULL: no owner).
            owner_columns: format!(
                "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS owner text, ADD COLUMN IF NOT EXISTS label text"
            ),
            index: format!("CREATE INDEX IF NOT EXISTS \"{table}_expires_at\" ON {t} (expires_at)"),
            // Partial: sessions without an owner cost the index nothing.
            owner_index: format!(
                "CREATE INDEX IF NOT EXISTS \"{table}_owner\" ON {t} (owner, expires_at) WHERE owner IS NOT NULL"
            ),
            // No ORDER BY (sorted by the client): ordering by expiry tempted the planner into
            // walking the expiry index over every live session (measured: 29 ms at 1M
            // sessions whatever the owner's count, 0.5 ms through the owner index).
            sessions_of: format!(
                "SELECT key, CASE WHEN isfinite(expires_at) THEN (extract(epoch FROM expires_at) * 1000)::bigint END, \
                 version, label FROM {t} WHERE owner = $1 AND expires_at > now()"
            ),
            // $1 owner, $2 the key kept (NULL: none). READ COMMITTED: a row that a concurrent
            // rotation moves is re-checked on its new version (same owner), so it is deleted too.
            revoke: format!(
                "WITH gone AS (DELETE FROM {t} WHERE owner = $1 AND key IS DISTINCT FROM $2::bytea \
                 RETURNING expires_at > now() AS live) SELECT count(*) FILTER (WHERE live) FROM gone"
            ),
            schema: format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""),
            create: format!(
                "INSERT INTO {t} AS s (key, expires_at, version, data, owner, label) VALUES ($1, $2, 1, $3, $4, $5) \
                 ON CONFLICT (key) DO UPDATE SET expires_at = EXCLUDED.expires_at, version = 1, data = EXCLUDED.data, \
                 owner = EXCLUDED.owner, label = EXCLUDED.label \
                 WHERE s.expires_at <= now()"
            ),
            // Expiry travels as epoch milliseconds: the driver panics on decoding `infinity` into
            // a date, and a NULL here (a non-finite stored value) is a clean decode error instead.
            read: format!(
                "SELECT CASE WHEN isfinite(expires_at) THEN (extract(epoch FROM expires_at) * 1000)::bigint END, version, data \
                 FROM {t} WHERE key = $1 AND expires_at > now()"
            ),
            // The common case in one plain statement: $1 key, $2 expected, $3 expiry, $4 data.
            update_fast: format!(
                "UPDATE {t} SET expires_at = $3, version = $2 + 1, data = $4, \
                 owner = CASE WHEN $5 THEN $6 ELSE owner END, label = CASE WHEN $5 THEN $7 ELSE label END \
                 WHERE key = $1 AND version = $2 AND expires_at > now()"
            ),
            // $1 current, $2 previous, $3 expected, $4 expiry, $5 data. Any occupant of
            // `current`, live or expired, makes it fail on the primary key.
            // Both rows are locked first, in key order, so that two rotations crossing each
            // other (a → b, b → a) queue instead of deadlocking.
            rotate_fast: format!(
                "WITH locked AS (SELECT 1 FROM {t} WHERE key IN ($1, $2) ORDER BY key FOR UPDATE) \
                 UPDATE {t} SET key = $1, expires_at = $4, version = $3 + 1, data = $5, \
                 owner = CASE WHEN $6 THEN $7 ELSE owner END, label = CASE WHEN $6 THEN $8 ELSE label END \
                 WHERE key = $2 AND version = $3 AND expires_at > now() AND (SELECT count(*) FROM locked) >= 0"
            ),
            // $1 key, $2 expected version, $3 expiry, $4 data. `prev` locks the live row and
            // reads its newest version; `done` writes only if that version is the expected one.
            update: format!(
                "WITH prev AS (SELECT version FROM {t} WHERE key = $1 AND expires_at > now() FOR UPDATE), \
                 done AS (UPDATE {t} SET expires_at = $3, version = $2 + 1, data = $4, \
                          owner = CASE WHEN $5 THEN $6 ELSE owner END, label = CASE WHEN $5 THEN $7 ELSE label END \
                          WHERE key = $1 AND (SELECT version FROM prev) = $2 RETURNING version) \
                 SELECT (SELECT version FROM prev) AS found, FALSE AS taken, (SELECT version FROM done) AS written"
            ),
            // $1 current, $2 previous, $3 expected version, $4 expiry, $5 data. `locked` takes
            // both rows in key order (no deadlock between crossing rotations); `cleared` (an
            // expired occupant of `current`) runs before `moved`, which reads its count; a live
            // occupant that commits meanwhile makes `moved` fail on the primary key (IdTaken).
            rotate: format!(
                "WITH locked AS (SELECT key, version, expires_at > now() AS live FROM {t} \
                                  WHERE key IN ($1, $2) ORDER BY key FOR UPDATE), \
                 prev AS (SELECT version FROM locked WHERE key = $2 AND live), \
                 occupant AS (SELECT 1 FROM locked WHERE key = $1 AND live), \
                 go AS (SELECT (SELECT version FROM prev) = $3 AND NOT EXISTS (SELECT 1 FROM occupant) AS ok), \
                 cleared AS (DELETE FROM {t} WHERE key = $1 AND expires_at <= now() AND (SELECT ok FROM go) RETURNING 1), \
                 moved AS (UPDATE {t} SET key = $1, expires_at = $4, version = $3 + 1, data = $5, \
                           owner = CASE WHEN $6 THEN $7 ELSE owner END, label = CASE WHEN $6 THEN $8 ELSE label END \
                           WHERE key = $2 AND (SELECT ok FROM go) AND (SELECT count(*) FROM cleared) >= 0 RETURNING version) \
                 SELECT (SELECT version FROM prev) AS found, EXISTS (SELECT 1 FROM occupant) AS taken, \
                        (SELECT version FROM moved) AS written"
            ),
            touch: format!("UPDATE {t} SET expires_at = $2 WHERE key = $1 AND expires_at > now()"),
            delete: format!("DELETE FROM {t} WHERE key = $1"),
            delete_expired: format!("DELETE FROM {t} WHERE expires_at <= now()"),
            clear: format!("DELETE FROM {t}"),
            counts: format!(
                "SELECT count(*) FILTER (WHERE expires_at > now()), count(*) FILTER (WHERE expires_at <= now()) FROM {t}"
            ),
        }
    }
}
