//! The schema history, in order. Each stage adds its own files; never edit one that has
//! shipped — add a new one.

use rusqlite_migration::{M, Migrations};

/// The migrations' SQL, oldest first: a database's schema version is how many of these it has.
const ALL: &[&str] = &[
    include_str!("migrations/0001_audit.sql"),
    include_str!("migrations/0002_registry.sql"),
    include_str!("migrations/0003_feeds.sql"),
    include_str!("migrations/0004_correlate.sql"),
    include_str!("migrations/0005_dispatch.sql"),
    include_str!("migrations/0006_broadcast.sql"),
    include_str!("migrations/0007_link.sql"),
    include_str!("migrations/0008_notice.sql"),
    include_str!("migrations/0009_respond.sql"),
    include_str!("migrations/0010_web.sql"),
    include_str!("migrations/0011_dispatch_lookups.sql"),
    include_str!("migrations/0012_office.sql"),
    include_str!("migrations/0013_return_shelter.sql"),
    include_str!("migrations/0014_resound.sql"),
    include_str!("migrations/0015_drill.sql"),
    include_str!("migrations/0016_dispatch_bind.sql"),
    include_str!("migrations/0017_claimed_by.sql"),
    include_str!("migrations/0018_types_and_time.sql"),
    include_str!("migrations/0019_dispatch_secret.sql"),
    include_str!("migrations/0020_help_notified.sql"),
    include_str!("migrations/0021_plausible.sql"),
    include_str!("migrations/0022_receipts.sql"),
    include_str!("migrations/0023_feed_refused.sql"),
    include_str!("migrations/0024_link_keyed.sql"),
    include_str!("migrations/0025_link_on_message.sql"),
    include_str!("migrations/0026_voice.sql"),
    include_str!("migrations/0027_audit_lineage.sql"),
    include_str!("migrations/0028_board_calls.sql"),
];

/// The schema on PostgreSQL, by the version each file brings a database to: a new database
/// takes the baseline (the SQLite schema at that version), then every later migration in its
/// PostgreSQL form. Each SQLite migration after the baseline has one here with its number.
const POSTGRES: &[(usize, &str)] = &[
    (25, include_str!("migrations/postgres/0025_baseline.sql")),
    (26, include_str!("migrations/postgres/0026_voice.sql")),
    (
        27,
        include_str!("migrations/postgres/0027_audit_lineage.sql"),
    ),
    (28, include_str!("migrations/postgres/0028_board_calls.sql")),
];

/// Bring a PostgreSQL database to the latest schema, in one transaction under an advisory
/// lock (two nodes starting together: one migrates, the other then finds it done).
pub(crate) fn to_latest_postgres(client: &mut postgres::Client) -> Result<(), String> {
    let shown = |e: postgres::Error| super::sql::pg_message(&e);
    let mut tx = client.transaction().map_err(shown)?;
    tx.batch_execute(
        "SELECT pg_advisory_xact_lock(7340031);
         CREATE TABLE IF NOT EXISTS stormbell_schema (
             version BIGINT PRIMARY KEY,
             applied TEXT NOT NULL
         )",
    )
    .map_err(shown)?;
    tx.batch_execute(super::lease::TABLE).map_err(shown)?;
    let current: i64 = tx
        .query_one(
            "SELECT COALESCE(max(version), 0) FROM stormbell_schema",
            &[],
        )
        .map_err(shown)?
        .get(0);
    if current > count() as i64 {
        return Err(format!(
            "the database is at schema version {current}, newer than this stormbell's {}: \
             upgrade stormbell on this node",
            count()
        ));
    }
    for (version, sql) in POSTGRES {
        if *version as i64 <= current {
            continue;
        }
        tx.batch_execute(sql)
            .map_err(|e| format!("version {version}: {}", shown(e)))?;
        tx.execute(
            "INSERT INTO stormbell_schema (version, applied) VALUES ($1, $2)",
            &[&(*version as i64), &super::stamp(jiff::Timestamp::now())],
        )
        .map_err(shown)?;
    }
    tx.commit().map_err(shown)
}

/// All migrations, oldest first.
pub(crate) fn migrations() -> Migrations<'static> {
    Migrations::new(ALL.iter().map(|sql| M::up(sql)).collect())
}

/// How many migrations this program has: the schema version it brings a database to.
pub(crate) fn count() -> usize {
    ALL.len()
}

#[cfg(test)]
mod tests {
    #[test]
    fn postgres_has_every_version_after_its_baseline_in_order() {
        let versions: Vec<usize> = super::POSTGRES.iter().map(|(v, _)| *v).collect();
        let first = versions[0];
        assert_eq!(versions, (first..=super::count()).collect::<Vec<_>>());
    }

    #[test]
    fn migrations_are_valid() {
        assert!(super::migrations().validate().is_ok());
    }
}
