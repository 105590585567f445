//! The SL 651 listener: the county's central station end of its rain gauges' telemetry.
//!
//! RTUs connect over TCP (often over GPRS, so links drop and bytes come in pieces), send one or
//! more HEX/BCD frames, and wait for the centre's answer. Each connection has its own task;
//! a frame is read as soon as its stated length has arrived:
//!
//! * read, with a known station and a sane clock: its readings go into the inbox with the
//!   frame's bytes (a station re-sending the same report is not counted twice) and are handed
//!   to the correlate stage; the answer is the same function code with the report's serial
//!   number and the centre's time, ending `EOT` (04);
//! * a bad CRC: answered `NAK` (15), so the station sends it again; counted, logged;
//! * an unknown station or a clock far off: counted and logged, answered `EOT` (it was
//!   received; sending it again would not make it usable);
//! * bytes that are not a frame: skipped to the next `7E 7E`; a frame cut short by a silent
//!   link: refused as truncated when the link has been idle for [`IDLE`].
//!
//! Nothing a station sends can stop the listener: every connection is bounded (a frame is at
//! most 4,095 body bytes; an idle link is closed) and its errors stay in its own task.
//! A station's `PT` (rain since 1 January) is remembered, so the next report's `PT` gives the
//! rain in between.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::frame::{self, FrameError, FrameTime};
use super::{Refusal, Sl651Feed};
use crate::feeds::poller::{FeedSpec, Poller};
use crate::feeds::rainfall::{RainReading, plausible_max};
use crate::feeds::{Item, Observation};
use crate::runtime::Shutdown;

/// A link silent this long is closed (a partial frame on it refused as truncated).
pub const IDLE: Duration = Duration::from_secs(120);
/// At most this many links at once (a county has hundreds of gauges; they report briefly).
const MAX_LINKS: usize = 512;

/// Per station, the last cumulative rain (`PT`) and when.
type LastPt = Arc<Mutex<HashMap<String, (Timestamp, f64)>>>;

/// Listen on the feed's `tcp://` address until shutdown.
pub async fn run(poller: Arc<Poller>, spec: FeedSpec, shutdown: Shutdown) {
    let addr = spec.url.trim_start_matches("tcp://").to_string();
    match TcpListener::bind(&addr).await {
        Ok(l) => serve(poller, spec, l, shutdown).await,
        Err(e) => tracing::error!(feed = %spec.id, "cannot listen on {addr}: {e}"),
    }
}

/// Serve the stations on a bound listener until shutdown.
pub async fn serve(
    poller: Arc<Poller>,
    spec: FeedSpec,
    listener: TcpListener,
    mut shutdown: Shutdown,
) {
    let addr = listener
        .local_addr()
        .map_or_else(|_| spec.url.clone(), |a| a.to_string());
    tracing::info!(feed = %spec.id, "listening for SL 651 stations on {addr}");
    let last_pt: LastPt = Arc::default();
    let links = Arc::new(tokio::sync::Semaphore::new(MAX_LINKS));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(feed = %spec.id, "accept failed: {e}");
                        continue;
                    }
                };
                let Ok(permit) = links.clone().try_acquire_owned() else {
                    tracing::warn!(feed = %spec.id, "{MAX_LINKS} links open: {peer} turned away");
                    continue;
                };
                let (p, s, last, stop) = (poller.clone(), spec.clone(), last_pt.clone(), shutdown.clone());
                tasks.spawn(async move {
                    link(p, s, stream, last, stop).await;
                    drop(permit);
                });
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = shutdown.recv() => break,
        }
    }
    tasks.shutdown().await;
}

fn now_frame(t: Timestamp) -> FrameTime {
    let z = t.to_zoned(super::beijing());
    FrameTime {
        yy: (z.year().rem_euclid(100)) as u8,
        month: z.month() as u8,
        day: z.day() as u8,
        hour: z.hour() as u8,
        minute: z.minute() as u8,
        second: z.second() as u8,
    }
}

async fn link(
    poller: Arc<Poller>,
    spec: FeedSpec,
    mut stream: TcpStream,
    last_pt: LastPt,
    mut shutdown: Shutdown,
) {
    let Some(kind) = spec.kind.sl651() else {
        return;
    };
    let mut buf: Vec<u8> = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        // Whole frames first.
        loop {
            // Resynchronise on the next 7E 7E.
            match buf.windows(2).position(|w| w == [0x7E, 0x7E]) {
                Some(0) => {}
                Some(k) => {
                    let skipped: Vec<u8> = buf.drain(..k).collect();
                    poller
                        .refuse(
                            &spec.id,
                            "not_a_frame",
                            format!("{} byte(s) that are not a frame skipped", skipped.len()),
                        )
                        .await;
                }
                None => {
                    if buf.len() > 1 {
                        let keep = usize::from(buf.last() == Some(&0x7E));
                        let n = buf.len() - keep;
                        buf.drain(..n);
                        poller
                            .refuse(
                                &spec.id,
                                "not_a_frame",
                                format!("{n} byte(s) that are not a frame skipped"),
                            )
                            .await;
                    }
                    break;
                }
            }
            let n = match frame::frame_len(&buf) {
                Ok(Some(n)) => n,
                Ok(None) => break,
                Err(_) => {
                    buf.drain(..2);
                    continue;
                }
            };
            let bytes: Vec<u8> = buf.drain(..n).collect();
            let reply = handle(&poller, &spec, kind, &bytes, &last_pt).await;
            if let Some(reply) = reply
                && stream.write_all(&reply).await.is_err()
            {
                return;
            }
        }
        let read = tokio::select! {
            r = tokio::time::timeout(IDLE, stream.read(&mut chunk)) => r,
            _ = shutdown.recv() => return,
        };
        match read {
            Ok(Ok(0)) | Err(_) => {
                if buf.len() >= 2 {
                    let detail = match frame::read(&buf) {
                        Err(e @ FrameError::Truncated { .. }) => e.to_string(),
                        Err(e) => e.to_string(),
                        Ok(_) => "frame without its end".into(),
                    };
                    poller
                        .refuse(
                            &spec.id,
                            "truncated",
                            format!("link closed mid-frame: {detail}"),
                        )
                        .await;
                }
                return;
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(_)) => return,
        }
    }
}

/// One whole frame: stored or refused, and the answer to send.
async fn handle(
    poller: &Arc<Poller>,
    spec: &FeedSpec,
    kind: &Sl651Feed,
    bytes: &[u8],
    last_pt: &LastPt,
) -> Option<Vec<u8>> {
    let now = poller.clock().now();
    let report = match frame::read(bytes) {
        Ok(r) => r,
        Err(e) => {
            let r = Refusal::of(&e);
            poller.refuse(&spec.id, r.reason, r.detail).await;
            // A corrupted frame: ask for it again (the header may still be readable).
            if let FrameError::Crc { .. } = e
                && bytes.len() >= 14
            {
                let station: String = bytes[3..8].iter().map(|b| format!("{b:02X}")).collect();
                let h = frame::Header {
                    centre: bytes[2],
                    station,
                    password: format!("{:02X}{:02X}", bytes[8], bytes[9]),
                    function: bytes[10],
                    up: true,
                    start: bytes[13],
                    end: 0x03,
                };
                return Some(frame::answer(&h, 0, now_frame(now), 0x15));
            }
            return None;
        }
    };
    if !report.header.up {
        poller
            .refuse(
                &spec.id,
                "malformed",
                "a downlink frame sent to the centre".into(),
            )
            .await;
        return None;
    }
    let answer = frame::answer(&report.header, report.serial, now_frame(now), 0x04);
    match kind.item(&report, now) {
        Ok(mut item) => {
            add_pt_rain(&mut item, &report, kind, now, last_pt);
            if let Err(e) = poller.push(&spec.id, item, bytes.to_vec()).await {
                // Not stored: no answer, so the station sends it again.
                tracing::error!(feed = %spec.id, "cannot store a frame from {}: {e}", report.header.station);
                return None;
            }
        }
        Err(r) => poller.refuse(&spec.id, r.reason, r.detail).await,
    }
    Some(answer)
}

/// The rain between a station's previous `PT` and this one, as one reading.
fn add_pt_rain(
    item: &mut Item,
    report: &frame::Report,
    kind: &Sl651Feed,
    now: Timestamp,
    last_pt: &LastPt,
) {
    let Observation::Rain(batch) = &mut item.observation else {
        return;
    };
    let tz = super::beijing();
    let station = kind.stations.get(&report.header.station);
    for o in &report.observed {
        let Some(pt) = o
            .elements
            .iter()
            .find(|e| e.id == 0x26)
            .and_then(|e| e.value)
        else {
            continue;
        };
        let Some(t) = o.time.at(&tz, now) else {
            continue;
        };
        let mut book = last_pt.lock().unwrap_or_else(|p| p.into_inner());
        let prev = book.insert(report.header.station.clone(), (t, pt));
        let Some((t0, pt0)) = prev else { continue };
        let span = t.duration_since(t0);
        // Only forward in time, within a day, and never across the yearly reset.
        if span <= SignedDuration::ZERO || span > SignedDuration::from_hours(24) || pt < pt0 {
            continue;
        }
        let minutes = span.as_mins() as u32;
        let mm = ((pt - pt0) * 10.0).round() / 10.0;
        batch.readings.push(RainReading {
            station: report.header.station.clone(),
            name: station.map(|s| s.name.clone()),
            lon: station.map(|s| s.lon),
            lat: station.map(|s| s.lat),
            end: t,
            minutes,
            mm: Some(mm),
            flag: (mm > plausible_max(minutes)).then_some(
                crate::feeds::rainfall::RainFlag::Absurd {
                    limit_mm: plausible_max(minutes),
                },
            ),
        });
    }
}
