//! The session description (RFC 4566) of a call: our offer of G.711 at 8 kHz with
//! `telephone-event` (RFC 4733), and what the phone's answer chose.

use std::net::{IpAddr, SocketAddr};

/// The payload types offered: A-law first (China's networks are A-law), μ-law, and DTMF
/// events on 101.
pub const OFFER_PCMA: u8 = 8;
/// μ-law's static payload type.
pub const OFFER_PCMU: u8 = 0;
/// The dynamic payload type offered for `telephone-event`.
pub const OFFER_EVENTS: u8 = 101;

/// A G.711 law.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Law {
    /// G.711 A-law (PCMA).
    A,
    /// G.711 μ-law (PCMU).
    Mu,
}

/// What the answer settled: where to send audio, in which law, and the events' payload type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The phone's RTP address.
    pub rtp: SocketAddr,
    /// The law both sides speak.
    pub law: Law,
    /// Its payload type (8 or 0).
    pub audio_pt: u8,
    /// `telephone-event`'s payload type, if the phone takes events (else keys come as INFO).
    pub events_pt: Option<u8>,
    /// The phone will not listen (`a=sendonly` / `inactive`, port 0): no audio can be heard.
    pub deaf: bool,
}

/// Our offer: audio from `rtp`, session id `id`.
pub fn offer(rtp: SocketAddr, id: u64) -> String {
    let ip = rtp.ip();
    let fam = if ip.is_ipv6() { "IP6" } else { "IP4" };
    format!(
        "v=0\r\no=stormbell {id} {id} IN {fam} {ip}\r\ns=stormbell\r\nc=IN {fam} {ip}\r\nt=0 0\r\n\
         m=audio {} RTP/AVP {OFFER_PCMA} {OFFER_PCMU} {OFFER_EVENTS}\r\n\
         a=rtpmap:{OFFER_PCMA} PCMA/8000\r\na=rtpmap:{OFFER_PCMU} PCMU/8000\r\n\
         a=rtpmap:{OFFER_EVENTS} telephone-event/8000\r\na=fmtp:{OFFER_EVENTS} 0-15\r\n\
         a=ptime:20\r\na=sendrecv\r\n",
        rtp.port()
    )
}

/// Read the phone's answer to [`offer`]; an error says why no call audio can flow.
pub fn answer(body: &[u8]) -> Result<Answer, String> {
    let text =
        std::str::from_utf8(body).map_err(|_| "the answer's SDP is not UTF-8".to_string())?;
    let mut session_ip: Option<IpAddr> = None;
    let mut media_ip: Option<IpAddr> = None;
    let mut media: Option<(u16, Vec<u8>)> = None;
    let mut rtpmaps: Vec<(u8, String)> = Vec::new();
    let mut direction = "sendrecv".to_string();
    let mut audio_seen = false;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        match k {
            "c" => {
                let ip = v
                    .split_whitespace()
                    .nth(2)
                    .and_then(|a| a.split('/').next())
                    .and_then(|a| a.parse::<IpAddr>().ok())
                    .ok_or_else(|| {
                        format!("the answer's connection line is not an address: {v:?}")
                    })?;
                if media.is_some() {
                    media_ip = Some(ip);
                } else {
                    session_ip = Some(ip);
                }
            }
            "m" if !audio_seen => {
                let mut f = v.split_whitespace();
                if f.next() != Some("audio") {
                    continue;
                }
                audio_seen = true;
                let port = f
                    .next()
                    .and_then(|p| p.split('/').next())
                    .and_then(|p| p.parse::<u16>().ok())
                    .ok_or_else(|| format!("the answer's audio line has no port: {v:?}"))?;
                let _proto = f.next();
                let pts = f.filter_map(|p| p.parse::<u8>().ok()).collect();
                media = Some((port, pts));
            }
            "m" => break,
            "a" if media.is_some() => {
                if let Some(rest) = v.strip_prefix("rtpmap:") {
                    if let Some((pt, enc)) = rest.split_once(' ') {
                        if let Ok(pt) = pt.parse::<u8>() {
                            rtpmaps.push((pt, enc.to_ascii_lowercase()));
                        }
                    }
                } else if matches!(v, "sendrecv" | "sendonly" | "recvonly" | "inactive") {
                    direction = v.to_string();
                }
            }
            "a" if matches!(v, "sendrecv" | "sendonly" | "recvonly" | "inactive") => {
                direction = v.to_string();
            }
            _ => {}
        }
    }
    let (port, pts) = media.ok_or("the answer has no audio stream")?;
    let ip = media_ip
        .or(session_ip)
        .ok_or("the answer names no address for its audio")?;
    let name_of = |pt: u8| {
        rtpmaps
            .iter()
            .find(|(p, _)| *p == pt)
            .map(|(_, e)| e.clone())
            .or_else(|| match pt {
                0 => Some("pcmu/8000".into()),
                8 => Some("pcma/8000".into()),
                _ => None,
            })
    };
    let mut law = None;
    let mut events_pt = None;
    for pt in &pts {
        match name_of(*pt).as_deref() {
            Some("pcma/8000") if law.is_none() => law = Some((Law::A, *pt)),
            Some("pcmu/8000") if law.is_none() => law = Some((Law::Mu, *pt)),
            Some("telephone-event/8000") if events_pt.is_none() => events_pt = Some(*pt),
            _ => {}
        }
    }
    let (law, audio_pt) = law.ok_or_else(|| {
        format!(
            "the phone answered with no G.711 codec (payload types {pts:?}); only PCMA and PCMU are spoken"
        )
    })?;
    Ok(Answer {
        rtp: SocketAddr::new(ip, port),
        law,
        audio_pt,
        events_pt,
        deaf: port == 0 || direction == "sendonly" || direction == "inactive",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phone_that_chose_mu_law_is_spoken_to_in_mu_law() {
        let a = answer(
            b"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
              m=audio 26002 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
              a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n",
        )
        .unwrap();
        assert_eq!(a.rtp, "127.0.0.1:26002".parse().unwrap());
        assert_eq!(
            (a.law, a.audio_pt, a.events_pt, a.deaf),
            (Law::Mu, 0, Some(101), false)
        );
    }

    #[test]
    fn an_answer_without_g711_or_audio_is_refused_with_why() {
        let e = answer(
            b"v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 9\r\na=rtpmap:9 G722/8000\r\n",
        )
        .unwrap_err();
        assert!(e.contains("no G.711"), "{e}");
        assert!(
            answer(b"v=0\r\nc=IN IP4 1.2.3.4\r\n")
                .unwrap_err()
                .contains("no audio")
        );
        let held =
            answer(b"v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 8\r\na=sendonly\r\n").unwrap();
        assert!(held.deaf);
        assert_eq!(held.events_pt, None);
    }

    #[test]
    fn our_offer_reads_back_as_an_answer_of_a_law() {
        let o = offer("127.0.0.1:4000".parse().unwrap(), 7);
        let a = answer(o.as_bytes()).unwrap();
        assert_eq!((a.law, a.audio_pt, a.events_pt), (Law::A, 8, Some(101)));
    }
}
