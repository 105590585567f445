//! SIP messages (RFC 3261 §7): read strictly, written plainly.
//!
//! What comes from a trunk is outside input: a message larger than [`MAX_MESSAGE`], a start
//! line that is neither a request nor a response, a header line without a colon, folded
//! headers (obsolete since RFC 3261), a body shorter than its Content-Length or a
//! Content-Length that does not parse is an error that says which, never a guess.

use std::fmt::Write as _;

/// The largest message read (a SIP message over UDP fits one datagram; a proxy's answers are
/// a few kilobytes).
pub const MAX_MESSAGE: usize = 65_535;

/// A request's start line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLine {
    /// INVITE, ACK, BYE, CANCEL, INFO, OPTIONS, …
    pub method: String,
    /// The Request-URI as written.
    pub uri: String,
}

/// A response's start line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusLine {
    /// 100–699.
    pub code: u16,
    /// The reason phrase as written.
    pub reason: String,
}

/// A message's first line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// A request.
    Request(RequestLine),
    /// A response.
    Response(StatusLine),
}

/// One SIP message: its start line, its headers in order (names in their long form), its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Request or response line.
    pub start: Start,
    /// (name, value) in order; a name as [`long_name`] spells it.
    pub headers: Vec<(String, String)>,
    /// The body (an SDP, a DTMF relay).
    pub body: Vec<u8>,
}

/// Why a message could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// The head has not all arrived (a stream reader waits for more).
    #[error("incomplete message")]
    Incomplete,
    /// Larger than [`MAX_MESSAGE`].
    #[error("message larger than {MAX_MESSAGE} bytes")]
    TooLarge,
    /// Anything else, with what and where.
    #[error("{0}")]
    Bad(String),
}

/// A compact header name (RFC 3261 §7.3.3) in its long form; other names as written.
pub fn long_name(name: &str) -> &str {
    match name {
        "v" | "V" => "Via",
        "f" | "F" => "From",
        "t" | "T" => "To",
        "i" | "I" => "Call-ID",
        "m" | "M" => "Contact",
        "l" | "L" => "Content-Length",
        "c" | "C" => "Content-Type",
        "k" | "K" => "Supported",
        "s" | "S" => "Subject",
        _ => name,
    }
}

impl Message {
    /// Read one message from the start of `buf`: the message and how many bytes it took.
    /// [`ParseError::Incomplete`] when more bytes may complete it (a TCP stream).
    pub fn parse(buf: &[u8]) -> Result<(Message, usize), ParseError> {
        let Some(head_end) = memchr::memmem::find(buf, b"\r\n\r\n") else {
            return Err(if buf.len() > MAX_MESSAGE {
                ParseError::TooLarge
            } else {
                ParseError::Incomplete
            });
        };
        if head_end > MAX_MESSAGE {
            return Err(ParseError::TooLarge);
        }
        let head = std::str::from_utf8(&buf[..head_end]).map_err(|e| {
            ParseError::Bad(format!("the head is not UTF-8 (byte {})", e.valid_up_to()))
        })?;
        let mut lines = head.split("\r\n");
        let first = lines.next().unwrap_or_default();
        let start = start_line(first)?;
        let mut headers = Vec::new();
        for (n, line) in lines.enumerate() {
            if line.starts_with([' ', '\t']) {
                return Err(ParseError::Bad(format!(
                    "header line {} is folded (obsolete line folding is not accepted)",
                    n + 2
                )));
            }
            let Some((name, value)) = line.split_once(':') else {
                return Err(ParseError::Bad(format!(
                    "header line {} has no colon: {:?}",
                    n + 2,
                    clip(line)
                )));
            };
            let name = name.trim();
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(ParseError::Bad(format!(
                    "header line {} has no valid name: {:?}",
                    n + 2,
                    clip(line)
                )));
            }
            headers.push((long_name(name).to_string(), value.trim().to_string()));
        }
        let body_at = head_end + 4;
        let length = match headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("Content-Length"))
        {
            Some((_, v)) => v.parse::<usize>().map_err(|_| {
                ParseError::Bad(format!("Content-Length is not a number: {:?}", clip(v)))
            })?,
            // A datagram's body is the rest of it; a stream must say (checked by the reader).
            None => buf.len() - body_at,
        };
        // A length from outside: checked before any arithmetic relies on it.
        let end = body_at
            .checked_add(length)
            .filter(|e| *e <= MAX_MESSAGE)
            .ok_or(ParseError::TooLarge)?;
        if buf.len() < end {
            return Err(ParseError::Incomplete);
        }
        Ok((
            Message {
                start,
                headers,
                body: buf[body_at..end].to_vec(),
            },
            end,
        ))
    }

    /// A request with no headers yet.
    pub fn request(method: &str, uri: &str) -> Message {
        Message {
            start: Start::Request(RequestLine {
                method: method.into(),
                uri: uri.into(),
            }),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A response with no headers yet.
    pub fn response(code: u16, reason: &str) -> Message {
        Message {
            start: Start::Response(StatusLine {
                code,
                reason: reason.into(),
            }),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// The same message with one more header.
    pub fn with(mut self, name: &str, value: impl Into<String>) -> Message {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`, in order, a comma-separated value split into its items
    /// (Record-Route and Via may be written either way).
    pub fn all(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| split_list(v))
            .collect()
    }

    /// The status code, for a response.
    pub fn code(&self) -> Option<u16> {
        match &self.start {
            Start::Response(s) => Some(s.code),
            Start::Request(_) => None,
        }
    }

    /// The method, for a request.
    pub fn method(&self) -> Option<&str> {
        match &self.start {
            Start::Request(r) => Some(&r.method),
            Start::Response(_) => None,
        }
    }

    /// CSeq's number and method.
    pub fn cseq(&self) -> Option<(u32, String)> {
        let v = self.header("CSeq")?;
        let (n, m) = v.split_once(char::is_whitespace)?;
        Some((n.trim().parse().ok()?, m.trim().to_string()))
    }

    /// The `branch` of the topmost Via.
    pub fn branch(&self) -> Option<String> {
        let via = self.all("Via").into_iter().next()?;
        param(&via, "branch")
    }

    /// The message as bytes, with its Content-Length.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = String::with_capacity(512 + self.body.len());
        match &self.start {
            Start::Request(r) => {
                let _ = write!(s, "{} {} SIP/2.0\r\n", r.method, r.uri);
            }
            Start::Response(st) => {
                let _ = write!(s, "SIP/2.0 {} {}\r\n", st.code, st.reason);
            }
        }
        for (k, v) in &self.headers {
            if k.eq_ignore_ascii_case("Content-Length") {
                continue;
            }
            let _ = write!(s, "{k}: {v}\r\n");
        }
        let _ = write!(s, "Content-Length: {}\r\n\r\n", self.body.len());
        let mut out = s.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

fn start_line(line: &str) -> Result<Start, ParseError> {
    if let Some(rest) = line.strip_prefix("SIP/2.0 ") {
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let code: u16 = code
            .parse()
            .ok()
            .filter(|c| (100..700).contains(c))
            .ok_or_else(|| {
                ParseError::Bad(format!(
                    "status line without a status code: {:?}",
                    clip(line)
                ))
            })?;
        return Ok(Start::Response(StatusLine {
            code,
            reason: reason.into(),
        }));
    }
    let mut parts = line.split(' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(method), Some(uri), Some("SIP/2.0"), None)
            if !method.is_empty()
                && method.bytes().all(|b| b.is_ascii_uppercase())
                && !uri.is_empty() =>
        {
            Ok(Start::Request(RequestLine {
                method: method.into(),
                uri: uri.into(),
            }))
        }
        _ => Err(ParseError::Bad(format!(
            "neither a request nor a status line: {:?}",
            clip(line)
        ))),
    }
}

/// Items of a header value written as a comma-separated list, commas inside `<…>` or quotes
/// kept.
pub fn split_list(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut angle, mut quote) = (false, false);
    let mut cur = String::new();
    for c in v.chars() {
        match c {
            '"' => quote = !quote,
            '<' if !quote => angle = true,
            '>' if !quote => angle = false,
            ',' if !angle && !quote => {
                out.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// A `;name=value` parameter of a header value (outside its `<…>`), unquoted.
pub fn param(v: &str, name: &str) -> Option<String> {
    let after = v.rfind('>').map(|i| &v[i + 1..]).unwrap_or(v);
    after.split(';').skip(1).find_map(|p| {
        let (k, val) = p.split_once('=').unwrap_or((p, ""));
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| val.trim().trim_matches('"').to_string())
    })
}

/// The URI of a name-addr (`"x" <sip:…>;tag=…`) or of a bare addr-spec.
pub fn uri_of(v: &str) -> &str {
    match (v.find('<'), v.find('>')) {
        (Some(a), Some(b)) if a < b => &v[a + 1..b],
        _ => v.split(';').next().unwrap_or(v).trim(),
    }
}

/// The host and port a SIP URI names (`sip:user@host:port;params`), port 5060 if none.
pub fn host_port(uri: &str) -> Option<(String, u16)> {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))?;
    let rest = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
    let hostport = rest.split([';', '?', '>']).next()?;
    match hostport.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), p.parse().ok()?)),
        None => Some((hostport.to_string(), 5060)),
    }
}

fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

/// A fresh random token (tags, Call-IDs, branches): 64 bits as hex.
pub fn token() -> String {
    let mut b = [0u8; 8];
    // The operating system's generator; should it fail, the clock keeps tokens apart.
    if getrandom::getrandom(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        b = t.to_le_bytes();
    }
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_answer_is_read_with_its_compact_headers() {
        let raw = b"SIP/2.0 407 Proxy Authentication Required\r\n\
v: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKabc;rport=5070\r\n\
f: <sip:office@county.cn>;tag=1\r\n\
t: <sip:13800000001@county.cn>;tag=k\r\n\
i: c1\r\n\
CSeq: 1 INVITE\r\n\
Proxy-Authenticate: Digest realm=\"county.cn\", nonce=\"n1\", qop=\"auth\"\r\n\
l: 0\r\n\r\n";
        let (m, used) = Message::parse(raw).unwrap();
        assert_eq!(used, raw.len());
        assert_eq!(m.code(), Some(407));
        assert_eq!(m.header("Call-ID"), Some("c1"));
        assert_eq!(m.cseq(), Some((1, "INVITE".into())));
        assert_eq!(m.branch().as_deref(), Some("z9hG4bKabc"));
        assert_eq!(param(m.header("To").unwrap(), "tag").as_deref(), Some("k"));
    }

    #[test]
    fn a_stream_waits_for_the_rest_and_bad_input_says_what() {
        let full = Message::request("BYE", "sip:a@b")
            .with("Call-ID", "x")
            .with("Content-Type", "text/plain");
        let mut full = full;
        full.body = b"hello".to_vec();
        let bytes = full.to_bytes();
        assert_eq!(
            Message::parse(&bytes[..bytes.len() - 2]),
            Err(ParseError::Incomplete)
        );
        let (back, used) = Message::parse(&bytes).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(
            (back.header("Call-ID"), &back.body[..]),
            (Some("x"), &b"hello"[..])
        );
        assert_eq!(back.header("Content-Length"), Some("5"));
        let e = Message::parse(b"HELLO\r\n\r\n").unwrap_err();
        assert!(e.to_string().contains("neither a request"), "{e}");
        let e = Message::parse(b"SIP/2.0 200 OK\r\nVia x\r\n\r\n").unwrap_err();
        assert!(e.to_string().contains("line 2 has no colon"), "{e}");
        let e = Message::parse(b"SIP/2.0 200 OK\r\nContent-Length: -1\r\n\r\n").unwrap_err();
        assert!(e.to_string().contains("Content-Length"), "{e}");
        let e = Message::parse(b"SIP/2.0 200 OK\r\nVia: a\r\n b\r\n\r\n").unwrap_err();
        assert!(e.to_string().contains("folded"), "{e}");
        let e = Message::parse(b"SIP/2.0 999 Odd\r\n\r\n").unwrap_err();
        assert!(e.to_string().contains("status code"), "{e}");
        let big = vec![b'a'; MAX_MESSAGE + 10];
        assert_eq!(Message::parse(&big), Err(ParseError::TooLarge));
        // A Content-Length near the top of usize is refused, not added to (an overflow).
        let huge = format!(
            "SIP/2.0 200 OK\r\nContent-Length: {}\r\n\r\n",
            usize::MAX - 3
        );
        assert_eq!(Message::parse(huge.as_bytes()), Err(ParseError::TooLarge));
    }

    #[test]
    fn lists_and_uris_are_split_where_they_should_be() {
        assert_eq!(
            split_list("<sip:p1;lr>, <sip:p2;lr;x=\"a,b\">"),
            vec!["<sip:p1;lr>", "<sip:p2;lr;x=\"a,b\">"]
        );
        assert_eq!(
            uri_of("\"值班\" <sip:a@b:5080;transport=tcp>;tag=9"),
            "sip:a@b:5080;transport=tcp"
        );
        assert_eq!(
            host_port("sip:a@10.0.0.1:5080;transport=tcp"),
            Some(("10.0.0.1".into(), 5080))
        );
        assert_eq!(
            host_port("sip:10.0.0.1;lr"),
            Some(("10.0.0.1".into(), 5060))
        );
        assert_eq!(host_port("http://x"), None);
    }
}
