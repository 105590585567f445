//! Rain rows from a county's SL 323 database: a real PostgreSQL started by the test, holding
//! `ST_PPTN_R` and `ST_STBPRP_B` as real installations type them (char(8) codes, numeric
//! values, a timestamp without zone in Beijing time), read by the `sl323` feed through the
//! live poller; a row corrected after it was read is read again and the latest value wins.

use crate::common;
use crate::common::backend::{Place, on_both};

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use stormbell::correlate::rain::RainBook;
use stormbell::feeds::Observation;
use stormbell::feeds::poller::FeedSpec;
use stormbell::feeds::rainfall::RainBatch;
use stormbell::feeds::sl323::{DEFAULT_QUERY, Sl323Feed};
use stormbell::runtime::clock::SimClock;

on_both! {
    fn an_sl323_rain_table_is_read_and_a_correction_wins(backend) {
        let place = Place::new(backend);
        let pg = common::postgres::Postgres::start();
        pg.sql(
            "CREATE TABLE st_stbprp_b (stcd char(8) PRIMARY KEY, stnm varchar(30), \
               lgtd numeric(10,6), lttd numeric(10,6), sttp char(2));
             CREATE TABLE st_pptn_r (stcd char(8), tm timestamp, drp numeric(5,1), \
               intv numeric(5,2), pdr numeric(5,2), dyp numeric(5,1), wth char(1), \
               PRIMARY KEY (stcd, tm));
             INSERT INTO st_stbprp_b VALUES ('70412005', '岭头（合成）', 120.900000, 28.520000, 'PP'),
                                            ('70412006', '溪口（合成）', 120.980000, 28.220000, 'PP');
             INSERT INTO st_pptn_r (stcd, tm, drp, intv) VALUES
               ('70412005', '2024-07-09 09:00:00', 3.5, 1.00),
               ('70412005', '2024-07-09 10:00:00', 12.5, 1.00),
               ('70412005', '2024-07-09 11:00:00', 41.0, 1.00),
               ('70412006', '2024-07-09 10:55:00', 2.0, 0.05),
               ('70412006', '2024-07-09 11:00:00', 1.5, 0.05),
               -- older than the first poll reads (48 h): not read
               ('70412006', '2024-07-01 11:00:00', 9.9, 1.00);",
        );
        let store = place.open();
        let clock = SimClock::new("2024-07-09T11:10:00+08:00".parse().unwrap());
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let poller = common::quiet_poller(store, clock.clone(), tx);
        let spec = FeedSpec {
            id: "sq".into(),
            kind: Arc::new(Sl323Feed {
                query: DEFAULT_QUERY.into(),
            }),
            url: pg.url(),
            interval: Duration::from_secs(600),
            gap_intervals: 3,
            max_bytes: 1 << 20,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let poll = |rx: &mut tokio::sync::mpsc::Receiver<_>| -> RainBatch {
            rt.block_on(async {
                poller.register(std::slice::from_ref(&spec)).await.unwrap();
                let report = poller.poll_once(&spec).await.unwrap();
                assert_eq!(report.new_items.len(), 1, "{report:?}");
                let d: stormbell::feeds::poller::Delivery =
                    tokio::time::timeout(Duration::from_secs(5), rx.recv())
                        .await
                        .unwrap()
                        .unwrap();
                match d.observation {
                    Observation::Rain(b) => b,
                    other => panic!("{other:?}"),
                }
            })
        };
        let bj = |s: &str| -> Timestamp { format!("{s}+08:00").parse().unwrap() };
        let first = poll(&mut rx);
        let got: Vec<(String, Timestamp, u32, Option<f64>)> = first
            .readings
            .iter()
            .map(|r| (r.station.clone(), r.end, r.minutes, r.mm))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "70412005".to_string(),
                    bj("2024-07-09T09:00:00"),
                    60,
                    Some(3.5)
                ),
                (
                    "70412005".to_string(),
                    bj("2024-07-09T10:00:00"),
                    60,
                    Some(12.5)
                ),
                (
                    "70412006".to_string(),
                    bj("2024-07-09T10:55:00"),
                    5,
                    Some(2.0)
                ),
                (
                    "70412005".to_string(),
                    bj("2024-07-09T11:00:00"),
                    60,
                    Some(41.0)
                ),
                (
                    "70412006".to_string(),
                    bj("2024-07-09T11:00:00"),
                    5,
                    Some(1.5)
                ),
            ]
        );
        // Positions and names come from the station table (char(8), numeric: read as text).
        let r = &first.readings[0];
        assert_eq!(
            (r.lon, r.lat, r.name.as_deref()),
            (Some(120.9), Some(28.52), Some("岭头（合成）"))
        );

        // The 10:00 value is corrected in the database, and a new hour arrives.
        pg.sql(
            "UPDATE st_pptn_r SET drp = 15.0 WHERE stcd = '70412005' AND tm = '2024-07-09 10:00:00';
             INSERT INTO st_pptn_r (stcd, tm, drp, intv) VALUES ('70412005', '2024-07-09 12:00:00', 30.5, 1.00);",
        );
        clock.advance(Duration::from_secs(3600));
        let second = poll(&mut rx);
        let at10 = |b: &RainBatch| {
            b.readings
                .iter()
                .find(|r| r.station == "70412005" && r.end == bj("2024-07-09T10:00:00"))
                .and_then(|r| r.mm)
        };
        assert_eq!(at10(&second), Some(15.0));
        assert!(
            second
                .readings
                .iter()
                .any(|r| r.end == bj("2024-07-09T12:00:00"))
        );

        // One value per (station, time), the latest read winning: 3.5 + 15.0 + 41.0 + 30.5.
        let mut book = RainBook::new(SignedDuration::from_hours(72));
        book.add(&first, 1);
        book.add(&second, 2);
        book.index();
        let g = book.near(120.9, 28.52, 1, 1.0)[0];
        assert_eq!(book.sum(g, bj("2024-07-09T12:00:00"), 4.0), Some(90.0));
    }
}
