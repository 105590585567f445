//! Plain IP audio: the warning streamed to an Icecast mount that a village's IP speakers pull.
//!
//! For counties without an emergency-broadcast platform, the simplest loudspeakers are IP
//! speakers that play whatever an Icecast mount carries. stormbell is the mount's *source*: it
//! connects with HTTP `PUT` (Icecast 2.4's source protocol, Basic auth as `source`), then
//! sends the MP3 paced at its bit rate, as a live source would, so listeners that join late
//! still get the whole message through Icecast's burst-on-connect buffer.
//!
//! What Icecast can tell us is how many listeners the mount had while the message played
//! (`/status-json.xsl`); it cannot say which speaker they were. A village whose mount had at
//! least as many listeners as it has IP speakers counts as played; fewer, and the difference
//! is reported as speakers that did not confirm.

use std::time::{Duration, Instant};

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::settings::IcecastSettings;
use crate::dispatch::broadcast::audio::Audio;

/// Why a stream did not play.
#[derive(Debug, thiserror::Error)]
pub enum IcecastError {
    /// The URL is not `http://host:port`.
    #[error("icecast url {0:?} is not http://host:port")]
    Url(String),
    /// Could not connect or the connection broke.
    #[error("icecast {addr}{mount}: {why}")]
    Io {
        /// host:port.
        addr: String,
        /// Mount.
        mount: String,
        /// What happened.
        why: String,
    },
    /// The server refused the source (wrong password, mount in use, too many sources).
    #[error("icecast {addr}{mount} refused the source: {status}")]
    Refused {
        /// host:port.
        addr: String,
        /// Mount.
        mount: String,
        /// The status line it answered.
        status: String,
    },
}

/// What streaming one message to one mount did.
#[derive(Debug, Clone, PartialEq)]
pub struct Streamed {
    /// Mount.
    pub mount: String,
    /// Bytes sent (the whole file when it succeeded).
    pub bytes: u64,
    /// How long it took.
    pub elapsed: Duration,
    /// The most listeners the mount had while it played (`None`: the status page could not
    /// be read).
    pub listeners: Option<u32>,
}

fn host_port(url: &str) -> Result<String, IcecastError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| IcecastError::Url(url.into()))?;
    let hp = rest.trim_end_matches('/');
    if hp.is_empty() || hp.contains('/') || !hp.contains(':') {
        return Err(IcecastError::Url(url.into()));
    }
    Ok(hp.to_string())
}

/// Stream an MP3 to a mount, paced at `kbps`, counting listeners as it plays.
pub async fn stream(
    s: &IcecastSettings,
    http: &reqwest::Client,
    mount: &str,
    mp3: &Audio,
) -> Result<Streamed, IcecastError> {
    let addr = host_port(&s.url)?;
    let io = |why: String| IcecastError::Io {
        addr: addr.clone(),
        mount: mount.to_string(),
        why,
    };
    let body = tokio::fs::read(&mp3.path)
        .await
        .map_err(|e| io(format!("reading {}: {e}", mp3.path.display())))?;
    let wait = Duration::from_secs(s.connect_secs.max(1));
    let mut tcp = tokio::time::timeout(wait, TcpStream::connect(&addr))
        .await
        .map_err(|_| io(format!("no connection within {wait:?}")))?
        .map_err(|e| io(e.to_string()))?;
    tcp.set_nodelay(true).map_err(|e| io(e.to_string()))?;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("source:{}", s.password));
    let head = format!(
        "PUT {mount} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {auth}\r\n\
         User-Agent: stormbell/{}\r\nContent-Type: audio/mpeg\r\nIce-Public: 0\r\n\
         Ice-Name: stormbell warning\r\nIce-Audio-Info: bitrate={}\r\n\r\n",
        env!("CARGO_PKG_VERSION"),
        s.kbps
    );
    tcp.write_all(head.as_bytes())
        .await
        .map_err(|e| io(e.to_string()))?;
    // Icecast answers the request head at once: 200 when the source is accepted.
    let status = tokio::time::timeout(wait, read_head(&mut tcp))
        .await
        .map_err(|_| io(format!("no answer to the source request within {wait:?}")))?
        .map_err(|e| io(e.to_string()))?;
    let code = status.split_whitespace().nth(1).unwrap_or_default();
    if code != "200" && code != "100" {
        return Err(IcecastError::Refused {
            addr: addr.clone(),
            mount: mount.into(),
            status,
        });
    }

    // Paced at the bit rate, in tenths of a second, after a first half second at once.
    let per_sec = u64::from(s.kbps.max(8)) * 1000 / 8;
    let chunk = (per_sec / 10).max(1) as usize;
    let start = Instant::now();
    let first = (per_sec / 2) as usize;
    let mut sent = 0usize;
    let mut listeners: Option<u32> = None;
    let mut last_poll = Instant::now() - Duration::from_secs(10);
    while sent < body.len() {
        let n = if sent == 0 { first } else { chunk }.min(body.len() - sent);
        tcp.write_all(&body[sent..sent + n])
            .await
            .map_err(|e| io(format!("after {sent} of {} bytes: {e}", body.len())))?;
        sent += n;
        if last_poll.elapsed() >= Duration::from_secs(1) {
            last_poll = Instant::now();
            if let Some(l) = mount_listeners(http, &s.url, mount).await {
                listeners = Some(listeners.unwrap_or(0).max(l));
            }
        }
        let due =
            start + Duration::from_secs_f64(sent.saturating_sub(first) as f64 / per_sec as f64);
        tokio::time::sleep_until(due.into()).await;
    }
    // Let listeners drain what Icecast still holds for them before the source goes away.
    let tail = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < tail {
        if let Some(l) = mount_listeners(http, &s.url, mount).await {
            listeners = Some(listeners.unwrap_or(0).max(l));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _ = tcp.shutdown().await;
    Ok(Streamed {
        mount: mount.into(),
        bytes: sent as u64,
        elapsed: start.elapsed(),
        listeners,
    })
}

/// The status line of an HTTP answer (the head is read to its blank line).
async fn read_head(tcp: &mut TcpStream) -> std::io::Result<String> {
    let mut buf = Vec::with_capacity(256);
    let mut b = [0u8; 256];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tcp.read(&mut b).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&b[..n]);
        if buf.len() > 16 * 1024 {
            break;
        }
    }
    let text = String::from_utf8_lossy(&buf);
    Ok(text
        .lines()
        .next()
        .unwrap_or("(closed without an answer)")
        .to_string())
}

/// Listeners on a mount now, from Icecast's public `/status-json.xsl`.
pub async fn mount_listeners(http: &reqwest::Client, base: &str, mount: &str) -> Option<u32> {
    let url = format!("{}/status-json.xsl", base.trim_end_matches('/'));
    let resp = http
        .get(&url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    let body = crate::http::read_capped(resp, &url, 4 * 1024 * 1024)
        .await
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    let sources = v.get("icestats")?.get("source")?;
    // One source is an object, several an array.
    let list: Vec<&serde_json::Value> = match sources {
        serde_json::Value::Array(a) => a.iter().collect(),
        o => vec![o],
    };
    list.into_iter()
        .find(|s| {
            s.get("listenurl")
                .and_then(|u| u.as_str())
                .is_some_and(|u| u.ends_with(mount))
        })
        .and_then(|s| s.get("listeners"))
        .and_then(|l| l.as_u64())
        .map(|l| l as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_and_urls() {
        let s = IcecastSettings {
            url: "http://127.0.0.1:8000".into(),
            password: "x".into(),
            mount: "/{village}.mp3".into(),
            kbps: 32,
            connect_secs: 10,
        };
        assert_eq!(s.mount_for("331098001001"), "/331098001001.mp3");
        assert_eq!(host_port(&s.url).unwrap(), "127.0.0.1:8000");
        assert!(host_port("https://x:1").is_err());
        assert!(host_port("http://x/mount").is_err());
    }
}
