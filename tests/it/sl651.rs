//! SL 651-2014 telemetry: the real frames, and a live listener that an RTU simulator
//! (tests/rtu/rtu.py: its own frame and CRC code, the way GPRS links deliver bytes) talks to,
//! checking every answer.

use crate::common;
use crate::common::backend::{Place, on_both};

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use stormbell::feeds::Observation;
use stormbell::feeds::poller::FeedSpec;
use stormbell::feeds::sl651::{self, Sl651Feed, Station, frame};
use stormbell::runtime::clock::SimClock;

fn hex_file(name: &str) -> String {
    String::from_utf8(common::ext_bytes(&format!(
        "real-formats/03-hydro-samples/{name}"
    )))
    .unwrap()
    .trim()
    .to_string()
}

const RAIN: &str = "sl651_hex_func37_station0040803540_2017-02-06_rain_P.hex";
const TEST_H: &str = "sl651_hex_func30_station0012345678_testreport_H.hex";

#[test]
fn the_real_frames_read_as_the_standard_says() {
    let bytes: Vec<u8> = (0..hex_file(RAIN).len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex_file(RAIN)[i..i + 2], 16).unwrap())
        .collect();
    let r = frame::read(&bytes).unwrap();
    assert_eq!(
        (r.header.station.as_str(), r.header.function, r.header.up),
        ("0040803540", 0x37, true)
    );
    assert_eq!(r.serial, 0xFCA7);
    assert_eq!(r.station_type, Some(b'P'));
    let e: HashMap<u16, Option<f64>> = r.observed[0]
        .elements
        .iter()
        .map(|e| (e.id, e.value))
        .collect();
    assert_eq!(e[&0x20], Some(0.0)); // PJ
    assert_eq!(e[&0x26], Some(1314.3)); // PT
    assert_eq!(e[&0x39], Some(998.099)); // Z, 3 decimals by its definition byte
    assert_eq!(e[&0x38], Some(11.82)); // VT
    // One bit wrong anywhere: the CRC says so.
    let mut bad = bytes.clone();
    bad[30] ^= 0x10;
    assert!(matches!(
        frame::read(&bad),
        Err(frame::FrameError::Crc { .. })
    ));
    // Cut short: truncated, with how much was there.
    assert!(matches!(
        frame::read(&bytes[..40]),
        Err(frame::FrameError::Truncated { have: 40, .. })
    ));
    // The test report with its clock unset (year 59) is read, but refused for correlation.
    let docs = sl651::frames(hex_file(TEST_H).as_bytes());
    let c = docs[0].as_ref().unwrap();
    assert_eq!(c.header.station, "0012345678");
    assert_eq!(c.observed[0].time.yy, 59);
    let received: jiff::Timestamp = "2017-02-06T16:40:00+08:00".parse().unwrap();
    assert_eq!(sl651::times(c, received).unwrap_err().reason, "clock");
}

fn send_steps(port: u16, steps: &serde_json::Value) -> Vec<serde_json::Value> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rtu/rtu.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(steps.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

on_both! {
    fn a_live_listener_answers_each_frame_and_refuses_what_it_cannot_use(backend) {
        let place = Place::new(backend);
        let store = place.open();
        let bound = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = bound.local_addr().unwrap().port();
        // The clock of the real rain frame's day (2017-02-06 16:40, Beijing).
        let clock = SimClock::new("2017-02-06T16:40:00+08:00".parse().unwrap());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        bound.set_nonblocking(true).unwrap();
        let bound = {
            let _in = rt.enter();
            tokio::net::TcpListener::from_std(bound).unwrap()
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let poller = common::quiet_poller(store.clone(), clock.clone(), tx);
        let station = Station {
            address: "0040803540".into(),
            name: "岭头雨量站（合成）".into(),
            lon: 120.90,
            lat: 28.52,
        };
        let spec = FeedSpec {
            id: "rtu".into(),
            kind: Arc::new(Sl651Feed {
                stations: HashMap::from([(station.address.clone(), station)]),
            }),
            url: format!("tcp://127.0.0.1:{port}"),
            interval: Duration::from_secs(3600),
            gap_intervals: 3,
            max_bytes: 1 << 20,
        };
        let (stop, stop_rx) = stormbell::runtime::Trigger::new();
        rt.block_on(poller.register(std::slice::from_ref(&spec)))
            .unwrap();
        // Bound before the simulator starts, so it connects to a socket already listening.
        let running = rt.spawn(sl651::listen::serve(poller.clone(), spec, bound, stop_rx));

        let rain = hex_file(RAIN);
        let steps = serde_json::json!([
            {"name": "the real rain report, in three pieces", "send": rain, "chunks": 3},
            {"name": "the same report again", "send": rain},
            {"name": "corrupted on the way", "send": rain, "corrupt": true, "expect": "15"},
            {"name": "an unknown station with its clock unset", "send": hex_file(TEST_H)},
            {"name": "a timed report after line noise", "junk": "0102",
             "build": {"station": "0040803540", "function": "32", "serial": 2,
                       "sent": "170206164000", "observed": "1702061640",
                       "elements": [["20", "19", "000025"], ["26", "19", "013168"], ["1A", "19", "000025"]],
                       "drp": [0, 1, 2, 3, 4, 5, 6, 0, 0, 0, 2, 2]}},
            {"name": "a clock three days ahead",
             "build": {"station": "0040803540", "function": "32", "serial": 3,
                       "sent": "170209164000", "observed": "1702091640",
                       "elements": [["1A", "19", "000010"]]}},
            {"name": "cut short by the link", "send": rain, "truncate": true},
        ]);
        let results = send_steps(port, &steps);
        assert_eq!(results.len(), 7);
        for r in &results {
            assert_eq!(r["ok"], true, "{r}");
        }

        // Two reports reached the correlate stage: the first (cumulative only: nothing to add
        // yet) and the timed one. The repeat and everything refused did not.
        let deliveries = rt.block_on(async {
            let mut got = Vec::new();
            while got.len() < 2 {
                let d = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                    .await
                    .expect("a delivery")
                    .unwrap();
                got.push(d);
            }
            // Nothing more comes (the channel is drained of what the frames made).
            assert!(rx.try_recv().is_err());
            got
        });
        let Observation::Rain(first) = &deliveries[0].observation else {
            panic!("not rain");
        };
        assert!(first.readings.is_empty(), "{first:?}");
        let Observation::Rain(timed) = &deliveries[1].observation else {
            panic!("not rain");
        };
        let at = |m: u32| -> Vec<(u32, f64, String)> {
            timed
                .readings
                .iter()
                .filter(|r| r.minutes == m)
                .map(|r| (r.minutes, r.mm.unwrap(), r.end.to_string()))
                .collect()
        };
        // P1: 2.5 mm in the hour to 16:40.
        assert_eq!(at(60), [(60, 2.5, "2017-02-06T08:40:00Z".to_string())]);
        // PT 1314.3 at 16:36, 1316.8 at 16:40: 2.5 mm in those 4 minutes.
        assert_eq!(at(4), [(4, 2.5, "2017-02-06T08:40:00Z".to_string())]);
        // DRP: twelve five-minute amounts, the last ending at 16:40.
        let five = at(5);
        assert_eq!(five.len(), 12);
        assert_eq!(five[11], (5, 0.2, "2017-02-06T08:40:00Z".to_string()));
        assert_eq!(five[0], (5, 0.0, "2017-02-06T07:45:00Z".to_string()));
        assert!(timed.readings.iter().all(|r| r.lon == Some(120.90)));

        stop.fire();
        rt.block_on(running).unwrap();
        let refused: HashMap<String, i64> = store
            .read_blocking(|c| {
                Ok(stormbell::feeds::state::refusals(c)?
                    .into_iter()
                    .map(|(_, reason, n, _)| (reason, n))
                    .collect())
            })
            .unwrap();
        assert_eq!(
            refused,
            HashMap::from([
                ("crc".to_string(), 1),
                ("unknown_station".to_string(), 1),
                ("clock".to_string(), 1),
                ("not_a_frame".to_string(), 1),
                ("truncated".to_string(), 1),
            ])
        );
    }
}
