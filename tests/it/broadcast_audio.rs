//! Broadcast audio from a real warning: the script from its template, Mandarin speech from
//! espeak-ng (Debian), an alert tone before it, cached by content.

use crate::common;

use std::time::Duration;

use common::dispatch::{contact, mobile, targets};
use stormbell::correlate::lifecycle::MessageKind;
use stormbell::correlate::tier::{Hazard, Tier};
use stormbell::dispatch::broadcast::audio::{AudioError, MP3_TAIL, Synth, rms};
use stormbell::dispatch::broadcast::script::script;
use stormbell::dispatch::outbox::Policy;

#[test]
fn a_red_flash_flood_warning_is_spoken_after_the_tone_and_cached() {
    let policy = Policy {
        office: "东溟县防汛办".into(),
        ..Policy::default()
    };
    let red = targets(
        "flash_flood:FF1",
        2,
        Hazard::FlashFlood,
        Tier::Red,
        MessageKind::Update,
        vec![contact(1, &mobile(1))],
    );
    let text = script(&red, &policy).unwrap();
    // The tier and the action said twice; the shelter named.
    assert_eq!(text.matches("山洪灾害红色预警").count(), 2, "{text}");
    assert_eq!(text.matches("请立即转移").count(), 2, "{text}");
    assert!(
        text.contains("溪口镇中心小学") && text.contains("上坞村"),
        "{text}"
    );

    let dir = tempfile::tempdir().unwrap();
    let synth = Synth::mandarin(dir.path());
    let a = synth.render(&text).unwrap();
    assert!(!a.cached);
    // The CAP resource fields describe the file as it is.
    let bytes = std::fs::read(&a.path).unwrap();
    assert_eq!(a.size, bytes.len() as u64);
    // Digests as coreutils computes them (an independent implementation).
    let sum = |tool: &str| -> String {
        let o = std::process::Command::new(tool)
            .arg(&a.path)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(a.sha1, sum("sha1sum"));
    assert_eq!(a.sha256, sum("sha256sum"));
    // 3 s of tone, 0.5 s of quiet, then speech of a plausible length for the script.
    let speech = a.duration.as_secs_f64() - 3.5;
    assert!(speech > 5.0 && speech < 90.0, "{:?}", a.duration);
    let tone = rms(
        &a.path,
        Duration::from_millis(200),
        Duration::from_millis(2800),
    )
    .unwrap();
    let gap = rms(
        &a.path,
        Duration::from_millis(3050),
        Duration::from_millis(3450),
    )
    .unwrap();
    let voice = rms(&a.path, Duration::from_secs(4), a.duration).unwrap();
    assert!(tone > 0.2, "tone {tone}");
    assert!(gap < 0.001, "gap {gap}");
    assert!(voice > 0.02, "the speech is not silence: {voice}");

    // The same script again: from the cache, same bytes.
    let b = synth.render(&text).unwrap();
    assert!(b.cached);
    assert_eq!(
        (b.path.clone(), b.sha256.clone()),
        (a.path.clone(), a.sha256.clone())
    );
    // Its lift is another file.
    let lift = targets(
        "flash_flood:FF1",
        3,
        Hazard::FlashFlood,
        Tier::Red,
        MessageKind::Cancel,
        vec![],
    );
    let c = synth.render(&script(&lift, &policy).unwrap()).unwrap();
    assert_ne!(c.path, a.path);
    assert!(script(&lift, &policy).unwrap().contains("解除"));
}

#[test]
fn a_missing_speech_program_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut synth = Synth::mandarin(dir.path());
    synth.program = "/nonexistent/espeak-ng".into();
    match synth.render("测试") {
        Err(AudioError::Speech { program, why }) => {
            assert!(program.contains("/nonexistent/espeak-ng"));
            assert!(why.contains("cannot start"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    // Nothing half-written is left in the cache.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn mp3_is_encoded_by_ffmpeg_cached_and_as_long_as_the_wav() {
    let dir = tempfile::tempdir().unwrap();
    let synth = Synth::mandarin(dir.path());
    synth.check(true).unwrap();
    let wav = synth.render("山洪灾害红色预警，请立即转移。").unwrap();
    let mp3 = synth.mp3(&wav, 32).unwrap();
    assert!(!mp3.cached);
    let bytes = std::fs::read(&mp3.path).unwrap();
    assert_eq!(mp3.size, bytes.len() as u64);
    // An MPEG audio frame from the first byte: no ID3 tag before the stream.
    assert!(
        bytes[0] == 0xFF && bytes[1] & 0xE0 == 0xE0,
        "{:02x?}",
        &bytes[..4]
    );
    // Constant 32 kbit/s: the size says the length, within a frame or two of the WAV's.
    let secs = bytes.len() as f64 / 4000.0;
    // …plus the quiet tail that keeps a streaming server's last buffer silent.
    let want = wav.duration.as_secs_f64() + 1.5;
    assert_eq!(mp3.duration, wav.duration + MP3_TAIL);
    assert!(
        (secs - want).abs() < 0.3,
        "mp3 {secs:.2} s vs wav {want:.2} s"
    );
    // ffprobe (part of Debian ffmpeg) reads it as mono MP3 of that length.
    let probe = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,channels:format=duration",
        ])
        .args(["-of", "default=nw=1"])
        .arg(&mp3.path)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&probe.stdout);
    assert!(
        out.contains("codec_name=mp3") && out.contains("channels=1"),
        "{out}"
    );
    let d: f64 = out
        .lines()
        .find_map(|l| l.strip_prefix("duration="))
        .unwrap()
        .parse()
        .unwrap();
    assert!((d - want).abs() < 0.3, "ffprobe {d} vs {want}");
    let again = synth.mp3(&wav, 32).unwrap();
    assert!(again.cached && again.sha256 == mp3.sha256);
}

#[test]
fn a_missing_encoder_is_named_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut synth = Synth::mandarin(dir.path());
    synth.encoder = "/nonexistent/ffmpeg".into();
    synth.check(false).unwrap();
    let mut mute = Synth::mandarin(dir.path());
    mute.program = "/nonexistent/espeak-ng".into();
    match mute.check(false) {
        Err(AudioError::Speech { why, .. }) => {
            assert!(why.contains("Debian package espeak-ng"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    match synth.check(true) {
        Err(AudioError::Encode { program, why }) => {
            assert!(program.contains("/nonexistent/ffmpeg"));
            assert!(why.contains("Debian package ffmpeg"), "{why}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn characters_the_voice_cannot_say_do_not_reach_espeak() {
    let dir = tempfile::tempdir().unwrap();
    let synth = Synth::mandarin(dir.path());
    let with = synth.render("上坞村🌊请立即转移").unwrap();
    let without = synth.render("上坞村 请立即转移").unwrap();
    // The same audio: the wave emoji was left out, not read out as its name.
    assert_eq!(with.sha256, without.sha256);
    assert!(without.cached, "the cleaned script was already synthesised");
}

#[test]
fn the_same_script_rendered_at_once_by_two_routes_is_one_whole_file() {
    let dir = tempfile::tempdir().unwrap();
    let synth = std::sync::Arc::new(Synth::mandarin(dir.path()));
    let text = "山洪灾害红色预警。上坞村的群众，请立即转移。";
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let s = synth.clone();
            std::thread::spawn(move || {
                let wav = s.render(text).unwrap();
                s.mp3(&wav, 32).unwrap()
            })
        })
        .collect();
    let done: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    // Every caller got the same, whole audio; no temporary file is left behind.
    assert!(done.windows(2).all(|w| w[0].sha256 == w[1].sha256));
    let wav = synth.render(text).unwrap();
    assert!(rms(&wav.path, Duration::from_secs(4), wav.duration).unwrap() > 0.02);
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
