//! SMPP 3.4 protocol data units: the few an ESME (our side) needs, encoded and decoded by hand.
//!
//! Why not a crate: `rusmpp`/`rusmppc` model SMPP 5.0 and pull in a TLS stack by default;
//! `smpp34` is a thin wrapper without the window and receipt handling we need anyway. The
//! wire format is small — a 16-byte header (length, command id, status, sequence), then
//! NUL-terminated strings, single octets and optional TLVs — and owning it lets the outbox
//! record the sequence number of every submit before it is written. Decoding never panics:
//! every read is bounds-checked and a malformed PDU is an error naming what was wrong.

use std::fmt;

/// Command ids used here (SMPP 3.4 §5.1.2.1).
pub mod cmd {
    /// generic_nack.
    pub const GENERIC_NACK: u32 = 0x8000_0000;
    /// bind_transceiver.
    pub const BIND_TRANSCEIVER: u32 = 0x0000_0009;
    /// bind_transceiver_resp.
    pub const BIND_TRANSCEIVER_RESP: u32 = 0x8000_0009;
    /// submit_sm.
    pub const SUBMIT_SM: u32 = 0x0000_0004;
    /// submit_sm_resp.
    pub const SUBMIT_SM_RESP: u32 = 0x8000_0004;
    /// deliver_sm.
    pub const DELIVER_SM: u32 = 0x0000_0005;
    /// deliver_sm_resp.
    pub const DELIVER_SM_RESP: u32 = 0x8000_0005;
    /// unbind.
    pub const UNBIND: u32 = 0x0000_0006;
    /// unbind_resp.
    pub const UNBIND_RESP: u32 = 0x8000_0006;
    /// enquire_link.
    pub const ENQUIRE_LINK: u32 = 0x0000_0015;
    /// enquire_link_resp.
    pub const ENQUIRE_LINK_RESP: u32 = 0x8000_0015;
}

/// Command status values that change what we do (SMPP 3.4 §5.1.3).
pub mod status {
    /// No error.
    pub const OK: u32 = 0x0000_0000;
    /// Invalid command length.
    pub const RINVCMDLEN: u32 = 0x0000_0002;
    /// Invalid command id.
    pub const RINVCMDID: u32 = 0x0000_0003;
    /// Incorrect bind status for the command.
    pub const RINVBNDSTS: u32 = 0x0000_0004;
    /// System error.
    pub const RSYSERR: u32 = 0x0000_0008;
    /// Invalid destination address.
    pub const RINVDSTADR: u32 = 0x0000_000B;
    /// Bind failed.
    pub const RBINDFAIL: u32 = 0x0000_000D;
    /// Invalid password.
    pub const RINVPASWD: u32 = 0x0000_000E;
    /// Invalid system id.
    pub const RINVSYSID: u32 = 0x0000_000F;
    /// Message queue full.
    pub const RMSGQFUL: u32 = 0x0000_0014;
    /// Submit failed.
    pub const RSUBMITFAIL: u32 = 0x0000_0045;
    /// Throttling error (the ESME exceeded its allowed message limits).
    pub const RTHROTTLED: u32 = 0x0000_0058;
    /// Invalid destination TON.
    pub const RINVDSTTON: u32 = 0x0000_0051;
    /// Invalid destination NPI.
    pub const RINVDSTNPI: u32 = 0x0000_0052;
    /// Unknown error.
    pub const RUNKNOWNERR: u32 = 0x0000_00FF;
}

/// What a submit_sm status means for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted.
    Accepted,
    /// The SMSC is saying "slower": queue again, slow the account down, not a failure.
    SlowDown,
    /// Wrong for this message and will stay wrong (bad number): fail it with the reason.
    Permanent,
    /// Worth trying again later (system error, submit failed).
    Transient,
}

/// Classify a submit_sm_resp status.
pub fn verdict(status: u32) -> Verdict {
    match status {
        status::OK => Verdict::Accepted,
        status::RTHROTTLED | status::RMSGQFUL => Verdict::SlowDown,
        status::RINVDSTADR | status::RINVDSTTON | status::RINVDSTNPI => Verdict::Permanent,
        // Message-level errors in the 0x0A–0x63 range that no retry fixes.
        0x0000_000A | 0x0000_0001 | 0x0000_0042 | 0x0000_0043 | 0x0000_0044 | 0x0000_0048
        | 0x0000_0049 | 0x0000_0050 | 0x0000_0061 | 0x0000_0062 => Verdict::Permanent,
        _ => Verdict::Transient,
    }
}

/// The name of a status, for people reading logs and the office page.
pub fn status_name(s: u32) -> String {
    let name = match s {
        status::OK => "ESME_ROK",
        0x01 => "ESME_RINVMSGLEN",
        status::RINVCMDLEN => "ESME_RINVCMDLEN",
        status::RINVCMDID => "ESME_RINVCMDID",
        status::RINVBNDSTS => "ESME_RINVBNDSTS",
        0x05 => "ESME_RALYBND",
        status::RSYSERR => "ESME_RSYSERR",
        0x0A => "ESME_RINVSRCADR",
        status::RINVDSTADR => "ESME_RINVDSTADR",
        status::RBINDFAIL => "ESME_RBINDFAIL",
        status::RINVPASWD => "ESME_RINVPASWD",
        status::RINVSYSID => "ESME_RINVSYSID",
        status::RMSGQFUL => "ESME_RMSGQFUL",
        status::RSUBMITFAIL => "ESME_RSUBMITFAIL",
        status::RINVDSTTON => "ESME_RINVDSTTON",
        status::RINVDSTNPI => "ESME_RINVDSTNPI",
        status::RTHROTTLED => "ESME_RTHROTTLED",
        status::RUNKNOWNERR => "ESME_RUNKNOWNERR",
        _ => return format!("status 0x{s:08X}"),
    };
    name.to_string()
}

/// Optional parameter tags used here (SMPP 3.4 §5.3.2).
pub mod tag {
    /// receipted_message_id (in receipts).
    pub const RECEIPTED_MESSAGE_ID: u16 = 0x001E;
    /// message_state (in receipts).
    pub const MESSAGE_STATE: u16 = 0x0427;
    /// message_payload (long messages without UDH).
    pub const MESSAGE_PAYLOAD: u16 = 0x0424;
    /// user_message_reference: our outbox part id, echoed by some SMSCs.
    pub const USER_MESSAGE_REFERENCE: u16 = 0x0204;
    /// sar_msg_ref_num: the reference of a long message sent in parts without a UDH.
    pub const SAR_MSG_REF_NUM: u16 = 0x020C;
    /// sar_total_segments.
    pub const SAR_TOTAL_SEGMENTS: u16 = 0x020E;
    /// sar_segment_seqnum (1-based).
    pub const SAR_SEGMENT_SEQNUM: u16 = 0x020F;
}

/// esm_class bits.
pub mod esm {
    /// The short message begins with a user data header (concatenation).
    pub const UDHI: u8 = 0x40;
    /// deliver_sm carrying an SMSC delivery receipt (message type bits 2–5 = 0001).
    pub const RECEIPT: u8 = 0x04;
    /// Mask of the message-type bits.
    pub const TYPE_MASK: u8 = 0x3C;
}

/// A decoding or framing error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PduError {
    /// The length field is below the header size or above our limit.
    #[error("command_length {0} is outside 16..={MAX_PDU}")]
    Length(u32),
    /// The body ended before a field was complete.
    #[error("{command}: body ends inside {field}")]
    Truncated {
        /// Which PDU.
        command: &'static str,
        /// Which field.
        field: &'static str,
    },
    /// A C-octet string ran past its maximum without a NUL.
    #[error("{command}: {field} has no terminating NUL within {max} octets")]
    Unterminated {
        /// Which PDU.
        command: &'static str,
        /// Which field.
        field: &'static str,
        /// Its maximum length, NUL included.
        max: usize,
    },
}

/// The largest PDU we accept (a long deliver_sm with TLVs fits in far less).
pub const MAX_PDU: u32 = 64 * 1024;

/// The 16-byte header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// command_length, header included.
    pub length: u32,
    /// command_id.
    pub command: u32,
    /// command_status.
    pub status: u32,
    /// sequence_number.
    pub sequence: u32,
}

impl Header {
    /// Parse the first 16 octets.
    pub fn parse(b: &[u8; 16]) -> Result<Header, PduError> {
        let w = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let h = Header {
            length: w(0),
            command: w(4),
            status: w(8),
            sequence: w(12),
        };
        if h.length < 16 || h.length > MAX_PDU {
            return Err(PduError::Length(h.length));
        }
        Ok(h)
    }
}

/// An optional parameter, kept raw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlv {
    /// Tag.
    pub tag: u16,
    /// Value.
    pub value: Vec<u8>,
}

/// A submit_sm (SMPP 3.4 §4.4.1): one message or one part of a concatenated one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubmitSm {
    /// service_type ("" = default).
    pub service_type: String,
    /// Source TON.
    pub source_ton: u8,
    /// Source NPI.
    pub source_npi: u8,
    /// Sender (the office's short code or alphanumeric id).
    pub source: String,
    /// Destination TON (1 international, 0 unknown).
    pub dest_ton: u8,
    /// Destination NPI (1 ISDN/E.164).
    pub dest_npi: u8,
    /// Destination number.
    pub dest: String,
    /// esm_class.
    pub esm_class: u8,
    /// registered_delivery (1 = receipt on final outcome).
    pub registered_delivery: u8,
    /// data_coding (0 default alphabet, 8 UCS-2).
    pub data_coding: u8,
    /// short_message octets (with the UDH when `esm_class & UDHI`).
    pub short_message: Vec<u8>,
    /// Optional parameters.
    pub tlvs: Vec<Tlv>,
}

/// A deliver_sm (SMPP 3.4 §4.6.1): a receipt or a message from a phone.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeliverSm {
    /// Originator (the phone, for a reply).
    pub source: String,
    /// Destination (our number).
    pub dest: String,
    /// esm_class.
    pub esm_class: u8,
    /// data_coding.
    pub data_coding: u8,
    /// short_message octets (or message_payload's, when that TLV is present).
    pub short_message: Vec<u8>,
    /// Optional parameters.
    pub tlvs: Vec<Tlv>,
}

/// Where one part of a long message from a phone belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Concat {
    /// The reference its parts share (8 or 16 bits).
    pub reference: u16,
    /// How many parts the message has.
    pub total: u8,
    /// This part's number, from 1.
    pub seq: u8,
}

impl DeliverSm {
    /// Which part of which long message this is, from its user data header (IEI 0x00, 8-bit
    /// reference; IEI 0x08, 16-bit) or its SAR parameters; `None` for a message in one piece
    /// (or a header that makes no sense: total 0, or a part number outside 1..=total). Also
    /// the octets of its text, the header removed.
    pub fn concat(&self) -> (Option<Concat>, &[u8]) {
        let sane = |c: Concat| (c.total >= 1 && c.seq >= 1 && c.seq <= c.total).then_some(c);
        let mut body: &[u8] = &self.short_message;
        let mut found = None;
        if self.esm_class & esm::UDHI != 0 && !self.short_message.is_empty() {
            let len = usize::from(self.short_message[0]);
            let udh = self.short_message.get(1..=len).unwrap_or_default();
            body = self.short_message.get(len + 1..).unwrap_or_default();
            let mut i = 0;
            while i + 1 < udh.len() {
                let (iei, l) = (udh[i], usize::from(udh[i + 1]));
                let v = udh.get(i + 2..i + 2 + l).unwrap_or_default();
                match (iei, v) {
                    (0x00, [r, t, q]) => {
                        found = sane(Concat {
                            reference: u16::from(*r),
                            total: *t,
                            seq: *q,
                        })
                    }
                    (0x08, [r1, r2, t, q]) => {
                        found = sane(Concat {
                            reference: u16::from_be_bytes([*r1, *r2]),
                            total: *t,
                            seq: *q,
                        })
                    }
                    _ => {}
                }
                i += 2 + l;
            }
        }
        if found.is_none()
            && let (Some(r), Some([t]), Some([q])) = (
                self.tlv(tag::SAR_MSG_REF_NUM),
                self.tlv(tag::SAR_TOTAL_SEGMENTS),
                self.tlv(tag::SAR_SEGMENT_SEQNUM),
            )
        {
            let reference = match r {
                [a, b] => u16::from_be_bytes([*a, *b]),
                [a] => u16::from(*a),
                _ => 0,
            };
            found = sane(Concat {
                reference,
                total: *t,
                seq: *q,
            });
        }
        (found, body)
    }

    /// Whether this is a delivery receipt rather than a message from a phone.
    pub fn is_receipt(&self) -> bool {
        self.esm_class & esm::TYPE_MASK == esm::RECEIPT
    }

    /// An optional parameter's value.
    pub fn tlv(&self, tag: u16) -> Option<&[u8]> {
        self.tlvs
            .iter()
            .find(|t| t.tag == tag)
            .map(|t| t.value.as_slice())
    }
}

/// A decoded PDU: the header and, for the bodies we read, the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// bind_transceiver_resp: the SMSC's system id.
    BindResp(String),
    /// submit_sm_resp: the message id (empty on error).
    SubmitResp(String),
    /// deliver_sm.
    Deliver(DeliverSm),
    /// Anything with no body we need (enquire_link, unbind, their responses, generic_nack).
    Empty,
    /// A command we do not handle (answered with generic_nack).
    Other,
}

/// A whole PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdu {
    /// Header.
    pub header: Header,
    /// Body.
    pub body: Body,
}

fn command_name(id: u32) -> &'static str {
    match id {
        cmd::BIND_TRANSCEIVER_RESP => "bind_transceiver_resp",
        cmd::SUBMIT_SM_RESP => "submit_sm_resp",
        cmd::DELIVER_SM => "deliver_sm",
        cmd::ENQUIRE_LINK => "enquire_link",
        cmd::ENQUIRE_LINK_RESP => "enquire_link_resp",
        cmd::UNBIND => "unbind",
        cmd::UNBIND_RESP => "unbind_resp",
        cmd::GENERIC_NACK => "generic_nack",
        _ => "pdu",
    }
}

/// A cursor over a body.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
    command: &'static str,
}

impl Reader<'_> {
    fn u8(&mut self, field: &'static str) -> Result<u8, PduError> {
        let v = *self.b.get(self.at).ok_or(PduError::Truncated {
            command: self.command,
            field,
        })?;
        self.at += 1;
        Ok(v)
    }

    fn bytes(&mut self, n: usize, field: &'static str) -> Result<&[u8], PduError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or(PduError::Truncated {
                command: self.command,
                field,
            })?;
        let v = &self.b[self.at..end];
        self.at = end;
        Ok(v)
    }

    /// A C-octet string of at most `max` octets including the NUL. Non-UTF-8 octets are kept
    /// as replacement characters: these are ids and numbers, never message text.
    fn cstr(&mut self, max: usize, field: &'static str) -> Result<String, PduError> {
        let rest = &self.b[self.at..];
        let Some(n) = rest.iter().take(max).position(|&c| c == 0) else {
            return Err(if rest.len() < max && !rest.contains(&0) {
                PduError::Truncated {
                    command: self.command,
                    field,
                }
            } else {
                PduError::Unterminated {
                    command: self.command,
                    field,
                    max,
                }
            });
        };
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.at += n + 1;
        Ok(s)
    }

    fn tlvs(&mut self) -> Result<Vec<Tlv>, PduError> {
        let mut out = Vec::new();
        while self.at < self.b.len() {
            let t = self.bytes(2, "TLV tag")?;
            let tag = u16::from_be_bytes([t[0], t[1]]);
            let l = self.bytes(2, "TLV length")?;
            let len = usize::from(u16::from_be_bytes([l[0], l[1]]));
            let value = self.bytes(len, "TLV value")?.to_vec();
            out.push(Tlv { tag, value });
        }
        Ok(out)
    }
}

/// Decode a PDU from its header and body (the octets after the header).
pub fn decode(header: Header, body: &[u8]) -> Result<Pdu, PduError> {
    let command = command_name(header.command);
    let mut r = Reader {
        b: body,
        at: 0,
        command,
    };
    let body = match header.command {
        cmd::BIND_TRANSCEIVER_RESP => {
            // On error the SMSC may send no body at all.
            if body.is_empty() {
                Body::BindResp(String::new())
            } else {
                Body::BindResp(r.cstr(16, "system_id")?)
            }
        }
        cmd::SUBMIT_SM_RESP => {
            if body.is_empty() {
                Body::SubmitResp(String::new())
            } else {
                Body::SubmitResp(r.cstr(65, "message_id")?)
            }
        }
        cmd::DELIVER_SM => {
            let mut d = DeliverSm::default();
            r.cstr(6, "service_type")?;
            r.u8("source_addr_ton")?;
            r.u8("source_addr_npi")?;
            d.source = r.cstr(21, "source_addr")?;
            r.u8("dest_addr_ton")?;
            r.u8("dest_addr_npi")?;
            d.dest = r.cstr(21, "destination_addr")?;
            d.esm_class = r.u8("esm_class")?;
            r.u8("protocol_id")?;
            r.u8("priority_flag")?;
            r.cstr(17, "schedule_delivery_time")?;
            r.cstr(17, "validity_period")?;
            r.u8("registered_delivery")?;
            r.u8("replace_if_present_flag")?;
            d.data_coding = r.u8("data_coding")?;
            r.u8("sm_default_msg_id")?;
            let len = usize::from(r.u8("sm_length")?);
            d.short_message = r.bytes(len, "short_message")?.to_vec();
            d.tlvs = r.tlvs()?;
            if d.short_message.is_empty()
                && let Some(p) = d.tlv(tag::MESSAGE_PAYLOAD)
            {
                d.short_message = p.to_vec();
            }
            Body::Deliver(d)
        }
        cmd::ENQUIRE_LINK
        | cmd::ENQUIRE_LINK_RESP
        | cmd::UNBIND
        | cmd::UNBIND_RESP
        | cmd::GENERIC_NACK
        | cmd::DELIVER_SM_RESP => Body::Empty,
        _ => Body::Other,
    };
    Ok(Pdu { header, body })
}

/// Builds a PDU's octets.
struct Writer(Vec<u8>);

impl Writer {
    fn new(command: u32, status: u32, sequence: u32) -> Writer {
        let mut v = Vec::with_capacity(64);
        v.extend_from_slice(&[0; 4]);
        v.extend_from_slice(&command.to_be_bytes());
        v.extend_from_slice(&status.to_be_bytes());
        v.extend_from_slice(&sequence.to_be_bytes());
        Writer(v)
    }
    fn u8(&mut self, x: u8) -> &mut Self {
        self.0.push(x);
        self
    }
    /// A C-octet string, cut to `max - 1` octets (callers validate lengths before).
    fn cstr(&mut self, s: &str, max: usize) -> &mut Self {
        let b = s.as_bytes();
        self.0.extend_from_slice(&b[..b.len().min(max - 1)]);
        self.0.push(0);
        self
    }
    fn finish(mut self) -> Vec<u8> {
        let len = (self.0.len() as u32).to_be_bytes();
        self.0[..4].copy_from_slice(&len);
        self.0
    }
}

/// bind_transceiver.
pub fn bind_transceiver(
    sequence: u32,
    system_id: &str,
    password: &str,
    system_type: &str,
) -> Vec<u8> {
    let mut w = Writer::new(cmd::BIND_TRANSCEIVER, 0, sequence);
    w.cstr(system_id, 16)
        .cstr(password, 9)
        .cstr(system_type, 13)
        .u8(0x34) // interface_version 3.4
        .u8(0) // addr_ton
        .u8(0) // addr_npi
        .cstr("", 41); // address_range
    w.finish()
}

/// A header-only PDU (enquire_link, unbind, their responses, generic_nack, deliver_sm_resp's
/// empty message id aside).
pub fn simple(command: u32, status: u32, sequence: u32) -> Vec<u8> {
    Writer::new(command, status, sequence).finish()
}

/// deliver_sm_resp (its message_id is unused and empty).
pub fn deliver_sm_resp(status: u32, sequence: u32) -> Vec<u8> {
    let mut w = Writer::new(cmd::DELIVER_SM_RESP, status, sequence);
    w.cstr("", 1);
    w.finish()
}

/// submit_sm.
pub fn submit_sm(sequence: u32, m: &SubmitSm) -> Vec<u8> {
    let mut w = Writer::new(cmd::SUBMIT_SM, 0, sequence);
    w.cstr(&m.service_type, 6)
        .u8(m.source_ton)
        .u8(m.source_npi)
        .cstr(&m.source, 21)
        .u8(m.dest_ton)
        .u8(m.dest_npi)
        .cstr(&m.dest, 21)
        .u8(m.esm_class)
        .u8(0) // protocol_id
        .u8(0) // priority_flag
        .cstr("", 17) // schedule_delivery_time: now
        .cstr("", 17) // validity_period: SMSC default
        .u8(m.registered_delivery)
        .u8(0) // replace_if_present_flag
        .u8(m.data_coding)
        .u8(0); // sm_default_msg_id
    let sm = &m.short_message[..m.short_message.len().min(254)];
    w.u8(sm.len() as u8);
    w.0.extend_from_slice(sm);
    for t in &m.tlvs {
        w.0.extend_from_slice(&t.tag.to_be_bytes());
        w.0.extend_from_slice(&(t.value.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
        w.0.extend_from_slice(&t.value[..t.value.len().min(usize::from(u16::MAX))]);
    }
    w.finish()
}

/// A delivery receipt's fields (SMPP 3.4 Appendix B text, or the receipt TLVs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The message id the SMSC gave in submit_sm_resp.
    pub id: String,
    /// Final state: DELIVRD, EXPIRED, DELETED, UNDELIV, ACCEPTD, UNKNOWN, REJECTD.
    pub stat: String,
    /// The network's error code, if given.
    pub err: Option<String>,
    /// When done, as the SMSC wrote it (YYMMDDhhmm, its local time).
    pub done: Option<String>,
}

impl Receipt {
    /// Whether the phone got it.
    pub fn delivered(&self) -> bool {
        self.stat == "DELIVRD"
    }

    /// Whether the outcome is final and bad.
    pub fn failed(&self) -> bool {
        matches!(
            self.stat.as_str(),
            "UNDELIV" | "REJECTD" | "DELETED" | "UNKNOWN" | "EXPIRED"
        )
    }
}

/// message_state TLV values → receipt stat words.
fn state_word(s: u8) -> &'static str {
    match s {
        2 => "DELIVRD",
        3 => "EXPIRED",
        4 => "DELETED",
        5 => "UNDELIV",
        6 => "ACCEPTD",
        8 => "REJECTD",
        _ => "UNKNOWN",
    }
}

/// Read a receipt: the TLVs when present (they are unambiguous), else the Appendix B text
/// `id:… sub:… dlvrd:… submit date:… done date:… stat:… err:… text:…`.
pub fn parse_receipt(d: &DeliverSm) -> Option<Receipt> {
    let text = String::from_utf8_lossy(&d.short_message);
    let field = |name: &str| -> Option<String> {
        let start = text.find(&format!("{name}:"))? + name.len() + 1;
        let rest = &text[start..];
        // "submit date" and "done date" hold digits only; other fields end at a space.
        let end = rest.find(' ').unwrap_or(rest.len());
        Some(rest[..end].to_string())
    };
    let tlv_id = d.tlv(tag::RECEIPTED_MESSAGE_ID).map(|v| {
        String::from_utf8_lossy(v.split(|c| *c == 0).next().unwrap_or_default()).into_owned()
    });
    let tlv_state = d
        .tlv(tag::MESSAGE_STATE)
        .and_then(|v| v.first().copied())
        .map(|s| state_word(s).to_string());
    let id = tlv_id.filter(|s| !s.is_empty()).or_else(|| field("id"))?;
    let stat = tlv_state.or_else(|| field("stat"))?;
    Some(Receipt {
        id,
        stat,
        err: field("err"),
        done: field("done date"),
    })
}

impl fmt::Display for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} seq {} status {}",
            command_name(self.command),
            self.sequence,
            status_name(self.status)
        )
    }
}

#[cfg(test)]
mod tests {
    fn deliver(esm_class: u8, short_message: Vec<u8>, tlvs: Vec<Tlv>) -> DeliverSm {
        DeliverSm {
            source: "8613810000001".into(),
            dest: "12379".into(),
            esm_class,
            data_coding: 8,
            short_message,
            tlvs,
        }
    }

    #[test]
    fn the_parts_of_a_long_reply_say_where_they_belong() {
        let body = [0x4E, 0x2D, 0x65, 0x87];
        // 8-bit reference.
        let mut m = vec![5, 0x00, 3, 0x2A, 3, 2];
        m.extend_from_slice(&body);
        let d = deliver(esm::UDHI, m, vec![]);
        let (c, b) = d.concat();
        assert_eq!(
            c,
            Some(Concat {
                reference: 0x2A,
                total: 3,
                seq: 2
            })
        );
        assert_eq!(b, &body);
        // 16-bit reference, after another element (a port address) in the same header.
        let mut m = vec![
            12, 0x05, 4, 0x0B, 0x84, 0x23, 0xF0, 0x08, 4, 0x12, 0x34, 2, 1,
        ];
        m.extend_from_slice(&body);
        let d = deliver(esm::UDHI, m, vec![]);
        let (c, b) = d.concat();
        assert_eq!(
            c,
            Some(Concat {
                reference: 0x1234,
                total: 2,
                seq: 1
            })
        );
        assert_eq!(b, &body);
        // SAR parameters, no header.
        let tlv = |tag, value: Vec<u8>| Tlv { tag, value };
        let d = deliver(
            0,
            body.to_vec(),
            vec![
                tlv(tag::SAR_MSG_REF_NUM, vec![0, 7]),
                tlv(tag::SAR_TOTAL_SEGMENTS, vec![2]),
                tlv(tag::SAR_SEGMENT_SEQNUM, vec![2]),
            ],
        );
        assert_eq!(
            d.concat().0,
            Some(Concat {
                reference: 7,
                total: 2,
                seq: 2
            })
        );
        // Nonsense is a message in one piece, never a panic: part 4 of 3, a header longer
        // than the message, no header at all.
        let mut m = vec![5, 0x00, 3, 1, 3, 4];
        m.extend_from_slice(&body);
        assert_eq!(deliver(esm::UDHI, m, vec![]).concat().0, None);
        let d = deliver(esm::UDHI, vec![40, 0x00, 3], vec![]);
        let (c, b) = d.concat();
        assert_eq!((c, b), (None, &[][..]));
        assert_eq!(
            deliver(0, body.to_vec(), vec![]).concat(),
            (None, &body[..])
        );
    }

    use super::*;

    fn split(pdu: &[u8]) -> (Header, &[u8]) {
        let h: [u8; 16] = pdu[..16].try_into().unwrap();
        (Header::parse(&h).unwrap(), &pdu[16..])
    }

    #[test]
    fn bind_has_the_right_length_and_fields() {
        let b = bind_transceiver(1, "county", "secret", "");
        let (h, body) = split(&b);
        assert_eq!(h.length as usize, b.len());
        assert_eq!(h.command, cmd::BIND_TRANSCEIVER);
        assert_eq!(&body[..7], b"county\0");
        assert_eq!(&body[7..14], b"secret\0");
        assert_eq!(body[15], 0x34);
    }

    #[test]
    fn submit_sm_lays_out_fields_in_order() {
        let m = SubmitSm {
            source: "12379".into(),
            dest_ton: 1,
            dest_npi: 1,
            dest: "8613800000001".into(),
            esm_class: esm::UDHI,
            registered_delivery: 1,
            data_coding: 8,
            short_message: vec![5, 0, 3, 7, 2, 1, 0x4e, 0x2d],
            tlvs: vec![Tlv {
                tag: tag::USER_MESSAGE_REFERENCE,
                value: vec![0, 42],
            }],
            ..SubmitSm::default()
        };
        let b = submit_sm(9, &m);
        let (h, body) = split(&b);
        assert_eq!((h.length as usize, h.sequence), (b.len(), 9));
        // service_type NUL, ton, npi, "12379\0", ton, npi, number NUL…
        assert_eq!(&body[..9], b"\0\0\x0012379\0");
        assert_eq!(&body[9..11], &[1, 1]);
        assert_eq!(&body[11..25], b"8613800000001\0");
        let rest = &body[25..];
        assert_eq!(rest[0], esm::UDHI);
        // protocol_id, priority, two empty times, registered_delivery, replace, coding…
        assert_eq!(&rest[1..5], &[0, 0, 0, 0]);
        assert_eq!(&rest[5..9], &[1, 0, 8, 0]);
        assert_eq!(rest[9], 8);
        assert_eq!(&rest[10..18], &m.short_message[..]);
        assert_eq!(&rest[18..], &[0x02, 0x04, 0, 2, 0, 42]);
    }

    #[test]
    fn deliver_sm_receipts_and_replies_decode() {
        // A receipt as node-smpp's test server would send it, text form.
        let mut body = Vec::new();
        body.extend_from_slice(b"\0\x01\x018613800000001\0\x00\x0012379\0");
        body.push(esm::RECEIPT);
        body.extend_from_slice(&[0, 0]);
        body.extend_from_slice(b"\0\0");
        body.extend_from_slice(&[0, 0, 0, 0]);
        let text = b"id:abc123 sub:001 dlvrd:001 submit date:2608090312 done date:2608090313 stat:DELIVRD err:000 text:";
        body.push(text.len() as u8);
        body.extend_from_slice(text);
        let h = Header {
            length: 16 + body.len() as u32,
            command: cmd::DELIVER_SM,
            status: 0,
            sequence: 77,
        };
        let Body::Deliver(d) = decode(h, &body).unwrap().body else {
            panic!("not a deliver_sm")
        };
        assert!(d.is_receipt());
        assert_eq!(d.source, "8613800000001");
        let r = parse_receipt(&d).unwrap();
        assert_eq!(r.id, "abc123");
        assert!(r.delivered());
        assert_eq!(r.done.as_deref(), Some("2608090313"));
        assert_eq!(r.err.as_deref(), Some("000"));
        // The TLVs win over the text.
        let mut d2 = d.clone();
        d2.tlvs = vec![
            Tlv {
                tag: tag::RECEIPTED_MESSAGE_ID,
                value: b"XYZ\0".to_vec(),
            },
            Tlv {
                tag: tag::MESSAGE_STATE,
                value: vec![5],
            },
        ];
        let r2 = parse_receipt(&d2).unwrap();
        assert_eq!((r2.id.as_str(), r2.stat.as_str()), ("XYZ", "UNDELIV"));
        assert!(r2.failed());
        // Truncated bodies are errors naming the field, never panics.
        for cut in 0..body.len() {
            let h = Header {
                length: 16 + cut as u32,
                ..h
            };
            if let Err(e) = decode(h, &body[..cut]) {
                assert!(e.to_string().starts_with("deliver_sm"), "{e}");
            }
        }
    }

    #[test]
    fn header_lengths_are_bounded() {
        let mut h = [0u8; 16];
        h[3] = 15;
        assert_eq!(Header::parse(&h), Err(PduError::Length(15)));
        h[..4].copy_from_slice(&(MAX_PDU + 1).to_be_bytes());
        assert!(Header::parse(&h).is_err());
    }

    #[test]
    fn statuses_are_classified() {
        assert_eq!(verdict(status::OK), Verdict::Accepted);
        assert_eq!(verdict(status::RTHROTTLED), Verdict::SlowDown);
        assert_eq!(verdict(status::RMSGQFUL), Verdict::SlowDown);
        assert_eq!(verdict(status::RINVDSTADR), Verdict::Permanent);
        assert_eq!(verdict(status::RSYSERR), Verdict::Transient);
        assert_eq!(status_name(0x58), "ESME_RTHROTTLED");
        assert_eq!(status_name(0x1234), "status 0x00001234");
    }
}
