//! The schema history, in order. Each stage adds its own files; never edit one that has
//! shipped — add a new one.

use rusqlite_migration::{M, Migrations};

/// All migrations, oldest first.
pub(crate) fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(include_str!("migrations/0001_audit.sql")),
        M::up(include_str!("migrations/0002_registry.sql")),
        M::up(include_str!("migrations/0003_feeds.sql")),
        M::up(include_str!("migrations/0004_correlate.sql")),
        M::up(include_str!("migrations/0005_dispatch.sql")),
        M::up(include_str!("migrations/0006_broadcast.sql")),
        M::up(include_str!("migrations/0007_link.sql")),
        M::up(include_str!("migrations/0008_notice.sql")),
        M::up(include_str!("migrations/0009_respond.sql")),
        M::up(include_str!("migrations/0010_web.sql")),
        M::up(include_str!("migrations/0011_dispatch_lookups.sql")),
        M::up(include_str!("migrations/0012_office.sql")),
        M::up(include_str!("migrations/0013_return_shelter.sql")),
        M::up(include_str!("migrations/0014_resound.sql")),
        M::up(include_str!("migrations/0015_drill.sql")),
        M::up(include_str!("migrations/0016_dispatch_bind.sql")),
        M::up(include_str!("migrations/0017_claimed_by.sql")),
        M::up(include_str!("migrations/0018_types_and_time.sql")),
        M::up(include_str!("migrations/0019_dispatch_secret.sql")),
        M::up(include_str!("migrations/0020_help_notified.sql")),
        M::up(include_str!("migrations/0021_plausible.sql")),
        M::up(include_str!("migrations/0022_receipts.sql")),
        M::up(include_str!("migrations/0023_feed_refused.sql")),
    ])
}

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_are_valid() {
        assert!(super::migrations().validate().is_ok());
    }
}
