//! Plain IP audio against a real Icecast 2.4 (Debian `icecast2`): stormbell is the mount's
//! source; a listener pulls the mount as an IP speaker would and must get the whole message.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::icecast::Icecast;
use stormbell::dispatch::broadcast::audio::Synth;
use stormbell::dispatch::icecast::{IcecastError, IcecastSettings, stream};

/// Pull a mount like an IP speaker: GET it (retrying until it exists), read until the source
/// ends. The body bytes.
fn listen(addr: &str, mount: &str, within: Duration) -> Vec<u8> {
    let deadline = Instant::now() + within;
    loop {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(
            s,
            "GET {mount} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: test-speaker\r\n\r\n"
        )
        .unwrap();
        let mut all = Vec::new();
        let _ = s.read_to_end(&mut all);
        let head_end = all.windows(4).position(|w| w == b"\r\n\r\n");
        let ok = all.starts_with(b"HTTP/1.0 200") || all.starts_with(b"HTTP/1.1 200");
        if ok && let Some(h) = head_end {
            return all[h + 4..].to_vec();
        }
        assert!(
            Instant::now() < deadline,
            "the mount {mount} never played: {:?}",
            String::from_utf8_lossy(&all[..all.len().min(200)])
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warning_plays_on_the_mount_and_the_listener_is_counted() {
    let ice = Icecast::start(4);
    let dir = tempfile::tempdir().unwrap();
    let synth = Synth::mandarin(dir.path());
    let wav = synth
        .render("演练。山洪灾害红色预警。上坞村的群众，请立即转移。")
        .unwrap();
    let mp3 = synth.mp3(&wav, 32).unwrap();
    let s = IcecastSettings {
        url: ice.url.clone(),
        password: ice.password.clone(),
        mount: "/{village}.mp3".into(),
        kbps: 32,
        connect_secs: 5,
    };
    let mount = s.mount_for("331098001001");
    let addr = ice.addr.clone();
    let m = mount.clone();
    let speaker = std::thread::spawn(move || listen(&addr, &m, Duration::from_secs(10)));
    let http = reqwest::Client::new();
    let played = stream(&s, &http, &mount, &mp3).await.unwrap();
    let heard = speaker.join().unwrap();

    assert_eq!(played.bytes, mp3.size);
    // Paced like a live source: about as long as the audio, not a burst.
    let secs = wav.duration.as_secs_f64();
    assert!(
        played.elapsed.as_secs_f64() > secs - 1.0,
        "{played:?} for {secs} s of audio"
    );
    assert_eq!(
        played.listeners,
        Some(1),
        "the speaker was counted: {}",
        ice.log()
    );
    // The speaker got the message whole: every byte from the first (Icecast's burst covers
    // the join) up to at most the quiet tail (Icecast drops its last partial 4 KB buffer when
    // the source leaves; the tail is 1.5 s = 6,000 bytes at 32 kbit/s).
    let file = std::fs::read(&mp3.path).unwrap();
    assert!(
        file.starts_with(&heard) && heard.len() + 6000 >= file.len(),
        "heard {} of {} bytes (a prefix: {}); log: {}",
        heard.len(),
        file.len(),
        file.starts_with(&heard),
        ice.log()
    );
    let speech_bytes = (wav.duration.as_secs_f64() * 4000.0) as usize;
    assert!(heard.len() >= speech_bytes, "all of the speech arrived");
}

#[tokio::test]
async fn a_wrong_password_is_refused_with_the_servers_words() {
    let ice = Icecast::start(2);
    let dir = tempfile::tempdir().unwrap();
    let synth = Synth::mandarin(dir.path());
    let mp3 = synth.mp3(&synth.render("测试").unwrap(), 32).unwrap();
    let s = IcecastSettings {
        url: ice.url.clone(),
        password: "wrong".into(),
        mount: "/x.mp3".into(),
        kbps: 32,
        connect_secs: 5,
    };
    let http = reqwest::Client::new();
    match stream(&s, &http, "/x.mp3", &mp3).await {
        Err(IcecastError::Refused { status, .. }) => assert!(status.contains("401"), "{status}"),
        other => panic!("{other:?}"),
    }
    // Nobody listening at all: an unreachable server is an error naming it.
    let gone = IcecastSettings {
        url: "http://127.0.0.1:9".into(),
        ..s
    };
    match stream(&gone, &http, "/x.mp3", &mp3).await {
        Err(IcecastError::Io { addr, .. }) => assert_eq!(addr, "127.0.0.1:9"),
        other => panic!("{other:?}"),
    }
}
