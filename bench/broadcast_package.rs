//! Broadcast preparation for a county: synthesise a ~30-second warning (espeak-ng), encode it
//! to MP3 (ffmpeg), then build, sign (SM2/SM3) and tar the platform instruction naming 250
//! villages, and the same 250 times as one package per village (a platform that takes one
//! area per instruction). Cold (nothing cached) and warm (the audio cached, as for every
//! terminal after the first).
//!
//!     cargo run --release --example broadcast_package
//!
//! Needs espeak-ng, ffmpeg and openssl (for the SM2 key) on the PATH.

use std::time::Instant;

use stormbell::dispatch::broadcast::audio::Synth;
use stormbell::dispatch::platform::ebd::{self, Auxiliary, Ebm, Endpoint, MsgType};
use stormbell::dispatch::platform::sign::{Signer, Sm2Signer};

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("k.pem");
    let ok = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "SM2", "-out"])
        .arg(&key)
        .status()?
        .success();
    anyhow::ensure!(ok, "openssl genpkey -algorithm SM2 failed");
    let signer = Sm2Signer::from_pem_file(&key, "SN-1", "BENCH-CA")?;
    let ep = Endpoint {
        src: "010333109800000001".into(),
        dest: "010233100000000001".into(),
        sender: "东溟县防汛办".into(),
        tz: jiff::tz::TimeZone::get("Asia/Shanghai")?,
    };
    // About 30 s of speech at the calm pace: the red flash-flood script's sentences.
    let script = "紧急通知，紧急通知。东溟县防汛办发布山洪灾害红色预警。山洪灾害红色预警。\
        上坞村等十二处的群众，请立即转移。请立即转移。请到溪口镇中心小学避险。";
    let areas: Vec<String> = (0..250)
        .map(|i| format!("331098{:03}{:03}", 100 + i / 20, i % 20 + 1))
        .collect();
    for round in ["cold", "warm"] {
        let cache = dir.path().join("audio");
        let synth = Synth::mandarin(&cache);
        let t0 = Instant::now();
        let wav = synth.render(script)?;
        let mp3 = synth.mp3(&wav, 32)?;
        let t_audio = t0.elapsed();
        let bytes = std::fs::read(&mp3.path)?;
        let now = jiff::Timestamp::now();
        let aux = Auxiliary::of("EBDI_bench.mp3", &bytes);
        let ebm = |areas: Vec<String>, seq: i64| Ebm {
            ebm_id: ebd::ebm_id(&ep.src, seq),
            related: None,
            msg_type: MsgType::Play,
            test: true,
            severity: 1,
            event_type: "11B37".into(),
            title: "东溟县防汛办发布山洪灾害红色预警".into(),
            text: script.into(),
            areas,
            start: now,
            end: now + jiff::SignedDuration::from_hours(6),
            audio: Some(aux.clone()),
        };
        let t1 = Instant::now();
        let id = ebd::ebd_id(&ep.src, 1);
        let doc = ebd::ebm_document(&ep, &id, &ebm(areas.clone(), 1), now);
        let one = ebd::package(
            &id,
            &doc,
            &signer as &dyn Signer,
            now,
            &[("EBDI_bench.mp3", &bytes)],
        )?;
        let t_one = t1.elapsed();
        let t2 = Instant::now();
        let mut total = 0usize;
        for (i, a) in areas.iter().enumerate() {
            let id = ebd::ebd_id(&ep.src, 2 + i as i64);
            let doc = ebd::ebm_document(&ep, &id, &ebm(vec![a.clone()], 2 + i as i64), now);
            total += ebd::package(
                &id,
                &doc,
                &signer as &dyn Signer,
                now,
                &[("EBDI_bench.mp3", &bytes)],
            )?
            .len();
        }
        let t_each = t2.elapsed();
        println!(
            "{round}: audio {:.1} s long ({} KB MP3) ready in {:.3} s; one signed package for 250 villages ({} KB) {:.4} s; 250 signed packages, one per village ({} MB) {:.3} s; end to end {:.3} s",
            mp3.duration.as_secs_f64(),
            mp3.size / 1024,
            t_audio.as_secs_f64(),
            one.len() / 1024,
            t_one.as_secs_f64(),
            total / (1024 * 1024),
            t_each.as_secs_f64(),
            (t_audio + t_one + t_each).as_secs_f64(),
        );
    }
    Ok(())
}
