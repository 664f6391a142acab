//! The few DNS messages the updater needs, encoded and decoded by hand: an A/AAAA query
//! (RFC 1035), an UPDATE that replaces a name's A and AAAA RRsets (RFC 2136), and the
//! answers to both, TSIG record included (RFC 8945).
//!
//! Encoding writes names uncompressed (always valid; compression is optional for senders).
//! Decoding reads anything a server may send, compression pointers included, and returns
//! [`Malformed`] for anything it cannot read: it never panics and never allocates more than
//! the message's own size.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Resource record type A (an IPv4 address).
pub const TYPE_A: u16 = 1;
/// Resource record type SOA (the zone section of an UPDATE names the zone's SOA).
pub const TYPE_SOA: u16 = 6;
/// Resource record type AAAA (an IPv6 address).
pub const TYPE_AAAA: u16 = 28;
/// Resource record type TSIG.
pub const TYPE_TSIG: u16 = 250;
/// Class IN.
pub const CLASS_IN: u16 = 1;
/// Class ANY (in an UPDATE's update section: delete an RRset; the class of TSIG records).
pub const CLASS_ANY: u16 = 255;

/// Opcode QUERY.
pub const OPCODE_QUERY: u8 = 0;
/// Opcode UPDATE (RFC 2136).
pub const OPCODE_UPDATE: u8 = 5;

/// Most bytes of a name on the wire (RFC 1035 §2.3.4).
const MAX_NAME: usize = 255;

/// A message that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub &'static str);

/// A name that cannot be used as a DNS name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a DNS name: {why}")]
pub struct BadName {
    /// The text given.
    pub text: String,
    /// What is wrong with it.
    pub why: &'static str,
}

/// A domain name, absolute, kept in lower case (names compare case-insensitively, and TSIG
/// signs the lower-case form).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name {
    /// Labels from the leftmost, without the empty root label.
    labels: Vec<Vec<u8>>,
}

impl Name {
    /// The root name `.`.
    pub fn root() -> Name {
        Name { labels: Vec::new() }
    }

    /// Reads `mesh.example.com` or `mesh.example.com.` (always absolute). Labels are 1 to
    /// 63 letters, digits, `-` or `_` (host names and key names; nothing this updater writes
    /// needs more).
    pub fn parse(text: &str) -> Result<Name, BadName> {
        let bad = |why| BadName {
            text: text.to_owned(),
            why,
        };
        let trimmed = text.strip_suffix('.').unwrap_or(text);
        if trimmed.is_empty() {
            return if text == "." {
                Ok(Name::root())
            } else {
                Err(bad("it is empty"))
            };
        }
        let mut labels = Vec::new();
        for label in trimmed.split('.') {
            if label.is_empty() {
                return Err(bad("it has an empty label (two dots in a row?)"));
            }
            if label.len() > 63 {
                return Err(bad("a label is longer than 63 characters"));
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(bad("labels may hold only letters, digits, '-' and '_'"));
            }
            labels.push(label.to_ascii_lowercase().into_bytes());
        }
        let name = Name { labels };
        if name.wire_len() > MAX_NAME {
            return Err(bad("it is longer than 255 bytes"));
        }
        Ok(name)
    }

    /// Whether this name is `zone` or below it.
    pub fn is_within(&self, zone: &Name) -> bool {
        self.labels.len() >= zone.labels.len()
            && self.labels[self.labels.len() - zone.labels.len()..] == zone.labels[..]
    }

    /// Bytes on the wire, uncompressed.
    pub fn wire_len(&self) -> usize {
        self.labels.iter().map(|l| l.len() + 1).sum::<usize>() + 1
    }

    /// Appends the uncompressed wire form (also the canonical form TSIG signs).
    pub fn write(&self, out: &mut Vec<u8>) {
        for label in &self.labels {
            // Labels are at most 63 bytes, by construction.
            out.push(label.len() as u8);
            out.extend_from_slice(label);
        }
        out.push(0);
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.labels.is_empty() {
            return f.write_str(".");
        }
        for label in &self.labels {
            // Decoded names may hold any byte; show those escaped as in zone files.
            for &b in label {
                if b.is_ascii_graphic() && b != b'.' && b != b'\\' {
                    write!(f, "{}", b as char)?;
                } else {
                    write!(f, "\\{b:03}")?;
                }
            }
            f.write_str(".")?;
        }
        Ok(())
    }
}

/// The fixed 12-byte message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Matches an answer to its request.
    pub id: u16,
    /// QR, opcode, AA, TC, RD, RA, Z, RCODE as on the wire.
    pub flags: u16,
    /// Questions (QUERY) or zones (UPDATE).
    pub qdcount: u16,
    /// Answers (QUERY) or prerequisites (UPDATE).
    pub ancount: u16,
    /// Authority records (QUERY) or updates (UPDATE).
    pub nscount: u16,
    /// Additional records (TSIG among them).
    pub arcount: u16,
}

impl Header {
    /// A request header with `opcode` and nothing else set.
    pub fn request(id: u16, opcode: u8) -> Header {
        Header {
            id,
            flags: u16::from(opcode & 0x0f) << 11,
            qdcount: 0,
            ancount: 0,
            nscount: 0,
            arcount: 0,
        }
    }

    /// Whether this is a response.
    pub fn is_response(&self) -> bool {
        self.flags & 0x8000 != 0
    }

    /// The opcode.
    pub fn opcode(&self) -> u8 {
        ((self.flags >> 11) & 0x0f) as u8
    }

    /// The answer was truncated (retry over TCP).
    pub fn truncated(&self) -> bool {
        self.flags & 0x0200 != 0
    }

    /// The response code (the low four bits; TSIG errors travel in the TSIG record).
    pub fn rcode(&self) -> u8 {
        (self.flags & 0x000f) as u8
    }

    fn write(&self, out: &mut Vec<u8>) {
        for v in [
            self.id,
            self.flags,
            self.qdcount,
            self.ancount,
            self.nscount,
            self.arcount,
        ] {
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
}

/// A query for `name`'s records of type `rtype` (class IN), recursion not desired: the
/// updater asks the zone's primary server, which answers with authority.
pub fn query(id: u16, name: &Name, rtype: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + name.wire_len() + 4);
    let mut header = Header::request(id, OPCODE_QUERY);
    header.qdcount = 1;
    header.write(&mut out);
    name.write(&mut out);
    out.extend_from_slice(&rtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out
}

/// An UPDATE of `zone` that makes `name`'s A and AAAA RRsets exactly `addrs` with `ttl`:
/// both RRsets are deleted, then each address added, in one message the server applies
/// atomically (RFC 2136 §3.4.2). No prerequisites: a new host simply overwrites whatever an
/// old (maybe dead) host wrote.
pub fn update(id: u16, zone: &Name, name: &Name, ttl: u32, addrs: &[IpAddr]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + zone.wire_len() + 4 + (addrs.len() + 2) * 40);
    let mut header = Header::request(id, OPCODE_UPDATE);
    header.qdcount = 1;
    // At most a few dozen addresses; the daemon never publishes more than a mesh has nodes.
    header.nscount = u16::try_from(addrs.len() + 2).unwrap_or(u16::MAX);
    header.write(&mut out);
    // Zone section: the zone's name, type SOA, class IN.
    zone.write(&mut out);
    out.extend_from_slice(&TYPE_SOA.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    // "Delete an RRset": class ANY, TTL 0, no data.
    for rtype in [TYPE_A, TYPE_AAAA] {
        name.write(&mut out);
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&CLASS_ANY.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
    }
    for addr in addrs {
        name.write(&mut out);
        let (rtype, data) = match addr {
            IpAddr::V4(a) => (TYPE_A, a.octets().to_vec()),
            IpAddr::V6(a) => (TYPE_AAAA, a.octets().to_vec()),
        };
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        // 4 or 16.
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(&data);
    }
    out
}

/// Sets the additional-record count of an encoded message (TSIG signing adds one).
pub(crate) fn set_arcount(msg: &mut [u8], count: u16) {
    if let Some(slot) = msg.get_mut(10..12) {
        slot.copy_from_slice(&count.to_be_bytes());
    }
}

/// The data of a record, for the types the updater reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RData {
    /// An IPv4 address.
    A(Ipv4Addr),
    /// An IPv6 address.
    Aaaa(Ipv6Addr),
    /// A TSIG record.
    Tsig(TsigRecord),
    /// Any other type, not interpreted.
    Other,
}

/// A resource record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Owner name.
    pub name: Name,
    /// Type.
    pub rtype: u16,
    /// Class.
    pub class: u16,
    /// Time to live, in seconds.
    pub ttl: u32,
    /// Data.
    pub data: RData,
}

/// The fields of a TSIG record (RFC 8945 §4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsigRecord {
    /// The key's name (the record's owner).
    pub key: Name,
    /// Algorithm name, e.g. `hmac-sha256.`.
    pub algorithm: Name,
    /// Seconds since the epoch when it was signed (48 bits on the wire).
    pub time_signed: u64,
    /// Allowed clock difference, in seconds.
    pub fudge: u16,
    /// The MAC (empty in some error answers).
    pub mac: Vec<u8>,
    /// The message id before any forwarder changed it.
    pub original_id: u16,
    /// TSIG error: 0, or BADSIG (16), BADKEY (17), BADTIME (18), BADTRUNC (22).
    pub error: u16,
    /// Other data (the server's time in BADTIME answers).
    pub other: Vec<u8>,
}

/// A decoded message: header, answers, and the TSIG record if there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The header as sent.
    pub header: Header,
    /// The first question (or zone) if any: name, type, class.
    pub question: Option<(Name, u16, u16)>,
    /// The answer section (the prerequisite section in UPDATE messages).
    pub answers: Vec<Record>,
    /// The authority section (the update section in UPDATE messages).
    pub authority: Vec<Record>,
    /// The TSIG record, which must be the last additional record.
    pub tsig: Option<TsigRecord>,
    /// Where the TSIG record starts: the signed part of the message is everything before.
    pub tsig_start: usize,
}

/// A cursor over a message; every read is bounds-checked.
struct Reader<'a> {
    /// The whole message (compression pointers are offsets into it).
    msg: &'a [u8],
    /// Next byte to read.
    pos: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(Malformed("length overflows"))?;
        let b = self
            .msg
            .get(self.pos..end)
            .ok_or(Malformed("message ends early"))?;
        self.pos = end;
        Ok(b)
    }

    fn u16(&mut self) -> Result<u16, Malformed> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, Malformed> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A name at the cursor, following compression pointers. Pointers must point backwards
    /// (to an earlier byte than the pointer itself), so following them always ends.
    fn name(&mut self) -> Result<Name, Malformed> {
        let mut labels = Vec::new();
        let mut pos = self.pos;
        let mut jumped = false;
        let mut len = 1;
        loop {
            let b = *self
                .msg
                .get(pos)
                .ok_or(Malformed("name runs past the end"))?;
            match b & 0xc0 {
                0x00 if b == 0 => {
                    if !jumped {
                        self.pos = pos + 1;
                    }
                    return Ok(Name { labels });
                }
                0x00 => {
                    let n = usize::from(b);
                    let label = self
                        .msg
                        .get(pos + 1..pos + 1 + n)
                        .ok_or(Malformed("label runs past the end"))?;
                    len += n + 1;
                    if len > MAX_NAME {
                        return Err(Malformed("name longer than 255 bytes"));
                    }
                    labels.push(label.to_ascii_lowercase());
                    pos += 1 + n;
                }
                0xc0 => {
                    let low = *self
                        .msg
                        .get(pos + 1)
                        .ok_or(Malformed("pointer runs past the end"))?;
                    let target = (usize::from(b & 0x3f) << 8) | usize::from(low);
                    if target >= pos {
                        return Err(Malformed("compression pointer does not point back"));
                    }
                    if !jumped {
                        self.pos = pos + 2;
                        jumped = true;
                    }
                    pos = target;
                }
                _ => return Err(Malformed("unknown label type")),
            }
        }
    }

    fn record(&mut self) -> Result<Record, Malformed> {
        let name = self.name()?;
        let rtype = self.u16()?;
        let class = self.u16()?;
        let ttl = self.u32()?;
        let rdlen = usize::from(self.u16()?);
        let start = self.pos;
        let end = start + rdlen;
        if end > self.msg.len() {
            return Err(Malformed("record data runs past the end"));
        }
        let data = match rtype {
            TYPE_A if class == CLASS_IN => {
                let b: [u8; 4] = self
                    .bytes(rdlen)?
                    .try_into()
                    .map_err(|_| Malformed("A record data is not 4 bytes"))?;
                RData::A(Ipv4Addr::from(b))
            }
            TYPE_AAAA if class == CLASS_IN => {
                let b: [u8; 16] = self
                    .bytes(rdlen)?
                    .try_into()
                    .map_err(|_| Malformed("AAAA record data is not 16 bytes"))?;
                RData::Aaaa(Ipv6Addr::from(b))
            }
            TYPE_TSIG => {
                let algorithm = self.name()?;
                let t = self.bytes(6)?;
                let time_signed = t.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
                let fudge = self.u16()?;
                let mac_len = usize::from(self.u16()?);
                let mac = self.bytes(mac_len)?.to_vec();
                let original_id = self.u16()?;
                let error = self.u16()?;
                let other_len = usize::from(self.u16()?);
                let other = self.bytes(other_len)?.to_vec();
                if self.pos != end {
                    return Err(Malformed("TSIG record length does not match its fields"));
                }
                RData::Tsig(TsigRecord {
                    key: name.clone(),
                    algorithm,
                    time_signed,
                    fudge,
                    mac,
                    original_id,
                    error,
                    other,
                })
            }
            _ => {
                self.pos = end;
                RData::Other
            }
        };
        Ok(Record {
            name,
            rtype,
            class,
            ttl,
            data,
        })
    }
}

/// Decodes a whole message. Trailing bytes after the counted records are an error.
pub fn decode(msg: &[u8]) -> Result<Message, Malformed> {
    let mut r = Reader { msg, pos: 0 };
    let header = Header {
        id: r.u16()?,
        flags: r.u16()?,
        qdcount: r.u16()?,
        ancount: r.u16()?,
        nscount: r.u16()?,
        arcount: r.u16()?,
    };
    let mut question = None;
    for _ in 0..header.qdcount {
        let q = (r.name()?, r.u16()?, r.u16()?);
        question.get_or_insert(q);
    }
    let mut answers = Vec::new();
    for _ in 0..header.ancount {
        answers.push(r.record()?);
    }
    let mut authority = Vec::new();
    for _ in 0..header.nscount {
        authority.push(r.record()?);
    }
    let mut tsig = None;
    let mut tsig_start = msg.len();
    for i in 0..header.arcount {
        let start = r.pos;
        let rec = r.record()?;
        if let RData::Tsig(t) = rec.data {
            if i + 1 != header.arcount {
                return Err(Malformed("TSIG record is not the last record"));
            }
            tsig = Some(t);
            tsig_start = start;
        }
    }
    if r.pos != msg.len() {
        return Err(Malformed("bytes after the last record"));
    }
    Ok(Message {
        header,
        question,
        answers,
        authority,
        tsig,
        tsig_start,
    })
}

/// Standard name of a response code or TSIG error, for messages.
pub fn rcode_name(code: u16) -> String {
    match code {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        6 => "YXDOMAIN".into(),
        7 => "YXRRSET".into(),
        8 => "NXRRSET".into(),
        9 => "NOTAUTH".into(),
        10 => "NOTZONE".into(),
        16 => "BADSIG".into(),
        17 => "BADKEY".into(),
        18 => "BADTIME".into(),
        22 => "BADTRUNC".into(),
        n => format!("RCODE {n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn name(s: &str) -> Name {
        Name::parse(s).expect("valid name")
    }

    #[test]
    fn names_parse_compare_and_print() {
        assert_eq!(name("Mesh.Example.COM"), name("mesh.example.com."));
        assert_eq!(name("mesh.example.com").to_string(), "mesh.example.com.");
        assert_eq!(Name::parse(".").expect("root"), Name::root());
        assert!(name("mesh.example.com").is_within(&name("example.com")));
        assert!(name("example.com").is_within(&name("example.com")));
        assert!(!name("example.com").is_within(&name("mesh.example.com")));
        assert!(!name("mesh.xexample.com").is_within(&name("example.com")));
        for bad in ["", "a..b", "a b.c", &"x".repeat(64), &"abc.".repeat(70)] {
            assert!(Name::parse(bad).is_err(), "{bad:?}");
        }
    }

    /// Captured on loopback: `dig +noedns +norecurse +noadflag cloud.mesh.test A` and
    /// named's (BIND 9.18) answer, which compresses names.
    const DIG_QUERY: &str = "bfdd0000000100000000000005636c6f7564046d65736804746573740000010001";
    const NAMED_ANSWER: &str = "bfdd8400000100010001000105636c6f7564046d6573680474657374000001\
        0001c00c000100010000001e00047f00000bc012000200010000003c0005026e73c012c03d000100010000\
        003c00047f000001";

    #[test]
    fn query_encodes_as_dig_does_and_named_answer_decodes() {
        let q = query(0xbfdd, &name("cloud.mesh.test"), TYPE_A);
        assert_eq!(hex::encode(q), DIG_QUERY);
        let raw = hex::decode(NAMED_ANSWER).expect("hex");
        let m = decode(&raw).expect("decodes");
        assert!(m.header.is_response() && m.header.rcode() == 0);
        assert_eq!(
            m.question,
            Some((name("cloud.mesh.test"), TYPE_A, CLASS_IN))
        );
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].name, name("cloud.mesh.test"));
        assert_eq!(m.answers[0].ttl, 30);
        assert_eq!(
            m.answers[0].data,
            RData::A("127.0.0.11".parse().expect("ip"))
        );
        // The NS record in authority (its owner a pointer into the question) reads too.
        assert_eq!(m.authority[0].name, name("mesh.test"));
        assert_eq!(m.tsig, None);
    }

    /// Hand-checked against RFC 2136 §2: header (opcode 5 = 0x2800), zone section (SOA IN),
    /// two "delete an RRset" entries (class ANY, TTL 0, RDLENGTH 0), two additions.
    #[test]
    fn update_encodes_per_rfc_2136() {
        let zone = name("t");
        let n = name("m.t");
        let u = update(
            7,
            &zone,
            &n,
            30,
            &[
                "10.0.0.1".parse().expect("ip"),
                "fd00::1".parse().expect("ip"),
            ],
        );
        let mut want = vec![0, 7, 0x28, 0x00, 0, 1, 0, 0, 0, 4, 0, 0];
        want.extend_from_slice(&[1, b't', 0, 0, 6, 0, 1]);
        for t in [1u8, 28] {
            want.extend_from_slice(&[1, b'm', 1, b't', 0, 0, t, 0, 255, 0, 0, 0, 0, 0, 0]);
        }
        want.extend_from_slice(&[1, b'm', 1, b't', 0, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4]);
        want.extend_from_slice(&[10, 0, 0, 1]);
        want.extend_from_slice(&[1, b'm', 1, b't', 0, 0, 28, 0, 1, 0, 0, 0, 30, 0, 16]);
        want.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(u, want);
        // And it reads back.
        let m = decode(&u).expect("decodes");
        assert_eq!(m.header.opcode(), OPCODE_UPDATE);
        assert_eq!(m.question, Some((zone, TYPE_SOA, CLASS_IN)));
        assert_eq!(m.authority.len(), 4);
        assert_eq!(
            m.authority[2].data,
            RData::A("10.0.0.1".parse().expect("ip"))
        );
    }

    #[test]
    fn compressed_answers_decode() {
        // An answer to the query above: the answer's owner is a pointer to offset 12.
        let mut msg = query(0x1234, &name("mesh.example.com"), TYPE_A);
        msg[2] = 0x84; // QR + AA
        msg[7] = 2; // two answers
        for ip in [[127, 0, 0, 11], [127, 0, 0, 12]] {
            msg.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
            msg.extend_from_slice(&ip);
        }
        let m = decode(&msg).expect("decodes");
        assert!(m.header.is_response());
        assert_eq!(m.answers.len(), 2);
        assert_eq!(m.answers[1].name, name("mesh.example.com"));
        assert_eq!(m.answers[1].ttl, 60);
        assert_eq!(
            m.answers[1].data,
            RData::A("127.0.0.12".parse().expect("ip"))
        );
    }

    #[test]
    fn malformed_messages_are_errors() {
        let ok = query(1, &name("a.b"), TYPE_A);
        // Every truncation of a valid message fails cleanly.
        for n in 0..ok.len() {
            assert!(decode(&ok[..n]).is_err(), "{n}");
        }
        // A pointer to itself, and one pointing forward.
        let mut looped = ok[..12].to_vec();
        looped.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(
            decode(&looped),
            Err(Malformed("compression pointer does not point back"))
        );
        // Trailing garbage.
        let mut extra = ok.clone();
        extra.push(0);
        assert!(decode(&extra).is_err());
        // An A record with 5 bytes of data.
        let mut bad_a = ok.clone();
        bad_a[7] = 1;
        bad_a.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 5, 1, 2, 3, 4, 5]);
        assert_eq!(
            decode(&bad_a),
            Err(Malformed("A record data is not 4 bytes"))
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode(&bytes);
        }

        /// Valid-looking headers with random bodies reach deeper into the decoder.
        #[test]
        fn random_bodies_never_panic(
            counts in proptest::array::uniform4(0u16..4),
            body in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            let mut msg = vec![0x12, 0x34, 0x84, 0x00];
            for c in counts {
                msg.extend_from_slice(&c.to_be_bytes());
            }
            msg.extend_from_slice(&body);
            let _ = decode(&msg);
        }

        #[test]
        fn names_round_trip(labels in proptest::collection::vec("[a-z0-9_-]{1,20}", 1..6)) {
            let text = labels.join(".");
            let n = Name::parse(&text).expect("valid");
            let mut wire = vec![0u8; 12];
            n.write(&mut wire);
            let mut r = Reader { msg: &wire, pos: 12 };
            prop_assert_eq!(r.name().expect("reads"), n);
            prop_assert_eq!(r.pos, wire.len());
        }
    }
}
