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
];

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
    fn migrations_are_valid() {
        assert!(super::migrations().validate().is_ok());
    }
}
