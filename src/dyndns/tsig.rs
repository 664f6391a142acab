//! TSIG (RFC 8945): signing requests and verifying answers with a shared HMAC key, and
//! reading the key from the file BIND's `tsig-keygen` writes.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha384, Sha512};

use super::wire::{self, Message, Name, TsigRecord, CLASS_ANY, TYPE_TSIG};

/// Allowed clock difference between this node and the server, in seconds (RFC 8945's
/// recommended value).
pub const FUDGE: u16 = 300;

/// TSIG error BADSIG: the MAC did not verify (wrong secret).
pub const BADSIG: u16 = 16;
/// TSIG error BADKEY: the server does not know the key (name or algorithm).
pub const BADKEY: u16 = 17;
/// TSIG error BADTIME: the clocks differ by more than the fudge.
pub const BADTIME: u16 = 18;

/// An HMAC algorithm TSIG can use (RFC 8945 §6: SHA-256 is mandatory to implement).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `hmac-sha256`.
    HmacSha256,
    /// `hmac-sha384`.
    HmacSha384,
    /// `hmac-sha512`.
    HmacSha512,
}

impl Algorithm {
    /// Reads `hmac-sha256` (trailing dot and case ignored).
    pub fn parse(text: &str) -> Option<Algorithm> {
        match text.trim_end_matches('.').to_ascii_lowercase().as_str() {
            "hmac-sha256" => Some(Algorithm::HmacSha256),
            "hmac-sha384" => Some(Algorithm::HmacSha384),
            "hmac-sha512" => Some(Algorithm::HmacSha512),
            _ => None,
        }
    }

    /// The algorithm's name as text, e.g. `hmac-sha256`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::HmacSha256 => "hmac-sha256",
            Algorithm::HmacSha384 => "hmac-sha384",
            Algorithm::HmacSha512 => "hmac-sha512",
        }
    }

    /// The algorithm's name on the wire.
    pub fn name(self) -> Name {
        // The three names are valid by construction; root only if that ever changed.
        Name::parse(self.as_str()).unwrap_or_else(|_| Name::root())
    }

    /// HMAC of the concatenated `parts`.
    fn mac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
            // HMAC takes keys of any length, so this cannot fail.
            let Ok(mut m) = <M as hmac::digest::KeyInit>::new_from_slice(key) else {
                return Vec::new();
            };
            for p in parts {
                m.update(p);
            }
            m.finalize().into_bytes().to_vec()
        }
        match self {
            Algorithm::HmacSha256 => run::<Hmac<Sha256>>(key, parts),
            Algorithm::HmacSha384 => run::<Hmac<Sha384>>(key, parts),
            Algorithm::HmacSha512 => run::<Hmac<Sha512>>(key, parts),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file cannot be read.
    #[error("cannot read TSIG key file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The text is not a key.
    #[error("TSIG key file {path}: {why}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong, with the expected form.
        why: String,
    },
}

/// A TSIG key: name, algorithm and secret. `Debug` never shows the secret.
#[derive(Clone)]
pub struct TsigKey {
    /// The key's name, as the server knows it.
    name: Name,
    /// Its algorithm.
    algorithm: Algorithm,
    /// The shared secret (decoded from base64).
    secret: Vec<u8>,
}

impl fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// What went wrong verifying an answer's TSIG.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TsigError {
    /// The answer to a signed request is not signed.
    #[error("the answer is not signed")]
    Unsigned,
    /// The server rejected our signature (BADSIG, BADKEY, BADTIME, ...).
    #[error("the server reports TSIG error {}", wire::rcode_name(*.0))]
    Server(u16),
    /// Signed with another key or algorithm.
    #[error("the answer is signed with key {key} ({algorithm}), not ours")]
    OtherKey {
        /// The key name it names.
        key: String,
        /// The algorithm it names.
        algorithm: String,
    },
    /// The MAC does not verify.
    #[error("the answer's TSIG MAC does not verify")]
    BadMac,
    /// Signed too long ago or in the future.
    #[error("the answer's TSIG time is {0} s away from this machine's clock")]
    BadTime(u64),
}

impl TsigKey {
    /// A key from its parts; the secret must not be empty.
    pub fn new(name: Name, algorithm: Algorithm, secret: Vec<u8>) -> Option<TsigKey> {
        (!secret.is_empty()).then_some(TsigKey {
            name,
            algorithm,
            secret,
        })
    }

    /// The key's name.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The shared secret (for writing a key file back out; never logged).
    pub(crate) fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// Reads a key file (see [`TsigKey::parse`]).
    pub fn from_file(path: &Path) -> Result<TsigKey, KeyError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text).map_err(|why| KeyError::Parse { path: shown, why })
    }

    /// Reads a key in BIND's format, as `tsig-keygen -a hmac-sha256 NAME` writes it and
    /// `named.conf` includes it:
    ///
    /// ```text
    /// key "cloudd" {
    ///     algorithm hmac-sha256;
    ///     secret "base64...";
    /// };
    /// ```
    ///
    /// or the one-line form `nsupdate -y` takes: `[ALGORITHM:]NAME:BASE64` (algorithm
    /// hmac-sha256 when left out). The file must hold exactly one key.
    pub fn parse(text: &str) -> Result<TsigKey, String> {
        let tokens = tokenize(text)?;
        if tokens.first().map(String::as_str) == Some("key") {
            return Self::parse_bind(&tokens);
        }
        match tokens.as_slice() {
            [line] if line.contains(':') => Self::parse_line(line),
            _ => Err(KEY_FORMS.to_owned()),
        }
    }

    fn parse_bind(tokens: &[String]) -> Result<TsigKey, String> {
        let mut it = tokens.iter().map(String::as_str);
        it.next(); // "key"
        let name = it.next().ok_or("the key has no name")?;
        if it.next() != Some("{") {
            return Err(format!("expected `{{` after key {name:?}; {KEY_FORMS}"));
        }
        let (mut algorithm, mut secret) = (None, None);
        loop {
            match it.next() {
                Some("}") => break,
                Some("algorithm") => algorithm = it.next(),
                Some("secret") => secret = it.next(),
                Some(other) => return Err(format!("unknown statement {other:?} in the key")),
                None => return Err("the key's `{` is not closed".into()),
            }
            if it.next() != Some(";") {
                return Err("a `;` is missing in the key".into());
            }
        }
        // The closing `;` is optional; anything after it is a second key.
        let rest: Vec<&str> = it.filter(|t| *t != ";").collect();
        if !rest.is_empty() {
            return Err(
                "the file holds more than one key; give a file with only this node's".into(),
            );
        }
        let algorithm = algorithm.ok_or("the key has no `algorithm`")?;
        let secret = secret.ok_or("the key has no `secret`")?;
        Self::from_parts(name, algorithm, secret)
    }

    fn parse_line(line: &str) -> Result<TsigKey, String> {
        let parts: Vec<&str> = line.split(':').collect();
        match parts.as_slice() {
            [name, secret] => Self::from_parts(name, "hmac-sha256", secret),
            [algorithm, name, secret] => Self::from_parts(name, algorithm, secret),
            _ => Err(KEY_FORMS.to_owned()),
        }
    }

    fn from_parts(name: &str, algorithm: &str, secret: &str) -> Result<TsigKey, String> {
        let name = Name::parse(name).map_err(|e| format!("key name: {e}"))?;
        let algorithm = Algorithm::parse(algorithm).ok_or_else(|| {
            format!(
                "unsupported algorithm {algorithm:?}: use hmac-sha256, hmac-sha384 or \
                 hmac-sha512"
            )
        })?;
        let secret = base64::engine::general_purpose::STANDARD
            .decode(secret)
            .map_err(|e| format!("the secret is not base64: {e}"))?;
        TsigKey::new(name, algorithm, secret).ok_or_else(|| "the secret is empty".to_owned())
    }

    /// The TSIG variables (RFC 8945 §4.3.3) in wire form.
    fn variables(&self, rec: &TsigRecord) -> Vec<u8> {
        let mut v = Vec::with_capacity(64);
        self.name.write(&mut v);
        v.extend_from_slice(&CLASS_ANY.to_be_bytes());
        v.extend_from_slice(&0u32.to_be_bytes());
        rec.algorithm.write(&mut v);
        v.extend_from_slice(&rec.time_signed.to_be_bytes()[2..]);
        v.extend_from_slice(&rec.fudge.to_be_bytes());
        v.extend_from_slice(&rec.error.to_be_bytes());
        v.extend_from_slice(&(rec.other.len() as u16).to_be_bytes());
        v.extend_from_slice(&rec.other);
        v
    }

    /// Signs an encoded request (header first, no TSIG yet) at `now` (seconds since the
    /// epoch): appends the TSIG record and counts it. Returns the MAC, which the answer's
    /// MAC covers.
    pub fn sign(&self, msg: &mut Vec<u8>, now: u64) -> Vec<u8> {
        let id = msg
            .get(0..2)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
        let arcount = msg
            .get(10..12)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
        let mut rec = TsigRecord {
            key: self.name.clone(),
            algorithm: self.algorithm.name(),
            time_signed: now & 0xffff_ffff_ffff,
            fudge: FUDGE,
            mac: Vec::new(),
            original_id: id,
            error: 0,
            other: Vec::new(),
        };
        rec.mac = self
            .algorithm
            .mac(&self.secret, &[msg.as_slice(), &self.variables(&rec)]);
        let mut rdata = Vec::with_capacity(64);
        rec.algorithm.write(&mut rdata);
        rdata.extend_from_slice(&rec.time_signed.to_be_bytes()[2..]);
        rdata.extend_from_slice(&rec.fudge.to_be_bytes());
        rdata.extend_from_slice(&(rec.mac.len() as u16).to_be_bytes());
        rdata.extend_from_slice(&rec.mac);
        rdata.extend_from_slice(&rec.original_id.to_be_bytes());
        rdata.extend_from_slice(&rec.error.to_be_bytes());
        rdata.extend_from_slice(&0u16.to_be_bytes());
        self.name.write(msg);
        msg.extend_from_slice(&TYPE_TSIG.to_be_bytes());
        msg.extend_from_slice(&CLASS_ANY.to_be_bytes());
        msg.extend_from_slice(&0u32.to_be_bytes());
        msg.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        msg.extend_from_slice(&rdata);
        wire::set_arcount(msg, arcount.saturating_add(1));
        rec.mac
    }

    /// Verifies the TSIG of an answer (`raw`, decoded as `msg`) to a request signed with
    /// `request_mac`, at `now`. An answer carrying a TSIG error (BADKEY, ...) is reported as
    /// [`TsigError::Server`] without checking its MAC, which such answers often lack.
    pub fn verify(
        &self,
        raw: &[u8],
        msg: &Message,
        request_mac: &[u8],
        now: u64,
    ) -> Result<(), TsigError> {
        let rec = msg.tsig.as_ref().ok_or(TsigError::Unsigned)?;
        if rec.error != 0 {
            return Err(TsigError::Server(rec.error));
        }
        // The decoder lower-cases names, as `self.name` is.
        if rec.key != self.name || rec.algorithm != self.algorithm.name() {
            return Err(TsigError::OtherKey {
                key: rec.key.to_string(),
                algorithm: rec.algorithm.to_string(),
            });
        }
        // The signed message: as sent, without the TSIG record, with the original id and
        // the additional count the signer saw.
        let mut unsigned = raw.get(..msg.tsig_start).ok_or(TsigError::BadMac)?.to_vec();
        if unsigned.len() < 12 {
            return Err(TsigError::BadMac);
        }
        unsigned[0..2].copy_from_slice(&rec.original_id.to_be_bytes());
        wire::set_arcount(&mut unsigned, msg.header.arcount.saturating_sub(1));
        let len = (request_mac.len() as u16).to_be_bytes();
        let want = self.algorithm.mac(
            &self.secret,
            &[&len, request_mac, &unsigned, &self.variables(rec)],
        );
        // Constant-time: the answer comes from the network. Truncated MACs are not accepted.
        if rec.mac.len() != want.len()
            || !bool::from(subtle::ConstantTimeEq::ct_eq(&rec.mac[..], &want[..]))
        {
            return Err(TsigError::BadMac);
        }
        let skew = now.abs_diff(rec.time_signed);
        if skew > u64::from(rec.fudge) {
            return Err(TsigError::BadTime(skew));
        }
        Ok(())
    }
}

const KEY_FORMS: &str = "expected BIND's key format (`key \"NAME\" { algorithm hmac-sha256; \
    secret \"BASE64\"; };`, as `tsig-keygen -a hmac-sha256 NAME` writes it) or one line \
    `hmac-sha256:NAME:BASE64`";

/// Splits BIND configuration text into tokens: quoted strings (unquoted), words, and the
/// punctuation `{`, `}`, `;`. Comments (`#`, `//`, `/* */`) are dropped.
fn tokenize(text: &str) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                let mut closed = false;
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        closed = true;
                        break;
                    }
                    prev = c;
                }
                if !closed {
                    return Err("a `/*` comment is not closed".into());
                }
            }
            '{' | '}' | ';' => tokens.push(c.to_string()),
            '"' => {
                let mut s = String::new();
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == '"' {
                        closed = true;
                        break;
                    }
                    s.push(c);
                }
                if !closed {
                    return Err("a quoted string is not closed".into());
                }
                tokens.push(s);
            }
            c => {
                let mut s = c.to_string();
                while let Some(&n) = chars.peek() {
                    if n.is_whitespace() || matches!(n, '{' | '}' | ';' | '"') {
                        break;
                    }
                    s.push(n);
                    chars.next();
                }
                tokens.push(s);
            }
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dyndns::wire::{decode, query, update, TYPE_A};

    fn key() -> TsigKey {
        TsigKey::parse(
            "key \"cloudd-test\" {\n\talgorithm hmac-sha256;\n\tsecret \
             \"q0j7x5m9bZq3Yk0lDdXH2fHq2pBvHcx4J6S1hQh3nG4=\";\n};\n",
        )
        .expect("key parses")
    }

    #[test]
    fn key_files_parse_in_both_forms() {
        let k = key();
        assert_eq!(k.name().to_string(), "cloudd-test.");
        assert_eq!(k.algorithm(), Algorithm::HmacSha256);
        assert_eq!(k.secret.len(), 32);
        assert!(!format!("{k:?}").contains("q0j7"), "Debug hides the secret");
        let line = TsigKey::parse("hmac-sha512:other:c2VjcmV0\n").expect("line form");
        assert_eq!(line.algorithm(), Algorithm::HmacSha512);
        assert_eq!(line.secret, b"secret");
        let short = TsigKey::parse("name:c2VjcmV0").expect("short line form");
        assert_eq!(short.algorithm(), Algorithm::HmacSha256);
        let commented = TsigKey::parse(
            "# made by tsig-keygen\n/* block */ key k { algorithm HMAC-SHA256; secret \
             \"c2VjcmV0\"; } // end\n",
        )
        .expect("comments and case");
        assert_eq!(commented.name().to_string(), "k.");
        for (bad, says) in [
            ("", "expected BIND's key format"),
            (
                "key k { algorithm hmac-md5; secret \"c2VjcmV0\"; };",
                "unsupported algorithm",
            ),
            (
                "key k { algorithm hmac-sha256; secret \"!!\"; };",
                "not base64",
            ),
            ("key k { algorithm hmac-sha256; };", "no `secret`"),
            (
                "key k { algorithm hmac-sha256; secret \"c2VjcmV0\" };",
                "`;` is missing",
            ),
            (
                "key a { algorithm hmac-sha256; secret \"c2VjcmV0\"; }; key b { };",
                "more than one key",
            ),
            ("key \"k { }", "not closed"),
        ] {
            let e = TsigKey::parse(bad).err().unwrap_or_default();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }

    /// The MAC of a request is HMAC over the message and the TSIG variables (RFC 8945
    /// §4.3.3), checked here by recomputing it independently from the pieces.
    #[test]
    fn signing_appends_a_tsig_record_over_the_message_and_variables() {
        let k = key();
        let name = Name::parse("mesh.example.com").expect("name");
        let plain = update(
            0x4242,
            &Name::parse("example.com").expect("zone"),
            &name,
            30,
            &[],
        );
        let mut signed = plain.clone();
        let mac = k.sign(&mut signed, 1_700_000_000);
        let m = decode(&signed).expect("decodes");
        assert_eq!(m.header.arcount, 1);
        assert_eq!(m.tsig_start, plain.len());
        let rec = m.tsig.expect("signed");
        assert_eq!(rec.mac, mac);
        assert_eq!(rec.original_id, 0x4242);
        assert_eq!(rec.time_signed, 1_700_000_000);
        assert_eq!(rec.fudge, 300);
        let mut vars = Vec::new();
        vars.extend_from_slice(b"\x0bcloudd-test\x00\x00\xff\x00\x00\x00\x00");
        vars.extend_from_slice(b"\x0bhmac-sha256\x00");
        vars.extend_from_slice(&[0, 0, 0x65, 0x53, 0xf1, 0x00]); // 1700000000
        vars.extend_from_slice(&[0x01, 0x2c, 0, 0, 0, 0]);
        let mut h = <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(&k.secret)
            .expect("any key length");
        h.update(&plain);
        h.update(&vars);
        assert_eq!(mac, h.finalize().into_bytes().to_vec());
    }

    /// Captured on loopback between `nsupdate -k key.conf` (BIND 9.18) and `named`, with
    /// the key below (made by `tsig-keygen -a hmac-sha256 cloudd-test`): the update
    /// `delete cloud.mesh.test A; delete ... AAAA; add cloud.mesh.test 30 A 127.0.0.11`
    /// and named's signed NOERROR answer.
    const BIND_KEY: &str = "key \"cloudd-test\" {\n\talgorithm hmac-sha256;\n\tsecret \
        \"r+E3Y8W5EX9ahKzIvSrLWFXRh4rY5hDzbgvUf4eFTeo=\";\n};\n";
    const NSUPDATE_REQUEST: &str = "d41428000001000000030001046d6573680474657374000006000105\
        636c6f7564c00c000100ff000000000000c01b001c00ff000000000000c01b000100010000001e00047f\
        00000b0b636c6f7564642d746573740000fa00ff00000000003d0b686d61632d73686132353600000\
        06b048854012c0020250d9e5c222f312b83427813c8cca918f1c48f1a5a99e9451ebfdba5feb30d86d4\
        1400000000";
    const NAMED_ANSWER: &str = "d414a8000001000000000001046d657368047465737400000600010b63\
        6c6f7564642d746573740000fa00ff00000000003d0b686d61632d7368613235360000006b04885401\
        2c0020fe34b7cc0bbc0667581dbb5ba2d4a90e208ea18ad8e3aa5682b11d58e8990568d41400000000";

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).expect("fixture is hex")
    }

    /// Signing nsupdate's message (without its TSIG) at its time gives nsupdate's bytes
    /// exactly: same MAC, same TSIG record.
    #[test]
    fn signing_reproduces_nsupdate_byte_for_byte() {
        let k = TsigKey::parse(BIND_KEY).expect("key");
        let req = unhex(NSUPDATE_REQUEST);
        let m = decode(&req).expect("nsupdate's request decodes");
        let rec = m.tsig.clone().expect("signed");
        let mut plain = req[..m.tsig_start].to_vec();
        wire::set_arcount(&mut plain, 0);
        let mac = k.sign(&mut plain, rec.time_signed);
        assert_eq!(mac, rec.mac);
        assert_eq!(hex::encode(&plain), hex::encode(&req));
        // Our own encoding of the same update says the same thing (nsupdate compresses
        // names; we do not).
        let ours = update(
            m.header.id,
            &Name::parse("mesh.test").expect("zone"),
            &Name::parse("cloud.mesh.test").expect("name"),
            30,
            &["127.0.0.11".parse().expect("ip")],
        );
        let o = decode(&ours).expect("decodes");
        assert_eq!(
            (o.header.flags, o.question, o.authority),
            (m.header.flags, m.question, m.authority)
        );
    }

    /// named's signed answer verifies against nsupdate's request MAC, and not otherwise.
    #[test]
    fn named_answer_verifies() {
        let k = TsigKey::parse(BIND_KEY).expect("key");
        let req = decode(&unhex(NSUPDATE_REQUEST)).expect("decodes");
        let req_mac = req.tsig.expect("signed").mac;
        let raw = unhex(NAMED_ANSWER);
        let m = decode(&raw).expect("named's answer decodes");
        assert_eq!(m.header.rcode(), 0);
        let t = m.tsig.as_ref().expect("signed").time_signed;
        assert_eq!(k.verify(&raw, &m, &req_mac, t), Ok(()));
        let mut other_mac = req_mac.clone();
        other_mac[0] ^= 1;
        assert_eq!(k.verify(&raw, &m, &other_mac, t), Err(TsigError::BadMac));
    }

    /// Builds an answer to `request_mac` signed as a server would: by the same rules.
    fn signed_answer(k: &TsigKey, request_mac: &[u8], time: u64, error: u16) -> Vec<u8> {
        let mut answer = query(0x0101, &Name::parse("a.b").expect("name"), TYPE_A);
        answer[2] |= 0x84;
        let rec = TsigRecord {
            key: k.name.clone(),
            algorithm: k.algorithm.name(),
            time_signed: time,
            fudge: FUDGE,
            mac: Vec::new(),
            original_id: 0x0101,
            error,
            other: Vec::new(),
        };
        let len = (request_mac.len() as u16).to_be_bytes();
        let mac = k
            .algorithm
            .mac(&k.secret, &[&len, request_mac, &answer, &k.variables(&rec)]);
        let mut rdata = Vec::new();
        rec.algorithm.write(&mut rdata);
        rdata.extend_from_slice(&time.to_be_bytes()[2..]);
        rdata.extend_from_slice(&FUDGE.to_be_bytes());
        rdata.extend_from_slice(&(mac.len() as u16).to_be_bytes());
        rdata.extend_from_slice(&mac);
        rdata.extend_from_slice(&[0x01, 0x01]);
        rdata.extend_from_slice(&error.to_be_bytes());
        rdata.extend_from_slice(&[0, 0]);
        k.name.write(&mut answer);
        answer.extend_from_slice(&[0, 250, 0, 255, 0, 0, 0, 0]);
        answer.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        answer.extend_from_slice(&rdata);
        wire::set_arcount(&mut answer, 1);
        answer
    }

    #[test]
    fn answers_verify_only_with_the_right_key_mac_and_time() {
        let k = key();
        let req_mac = vec![7u8; 32];
        let now = 1_700_000_000;
        let ok = signed_answer(&k, &req_mac, now, 0);
        let m = decode(&ok).expect("decodes");
        assert_eq!(k.verify(&ok, &m, &req_mac, now + 10), Ok(()));
        // Another request's MAC, a flipped byte, a wrong secret, a stale time.
        assert_eq!(k.verify(&ok, &m, &[8u8; 32], now), Err(TsigError::BadMac));
        let mut flipped = ok.clone();
        // The question's type (header counts must stay valid).
        flipped[12 + 5] ^= 0x20;
        let fm = decode(&flipped).expect("still decodes");
        assert_eq!(
            k.verify(&flipped, &fm, &req_mac, now),
            Err(TsigError::BadMac)
        );
        let other =
            TsigKey::new(k.name.clone(), Algorithm::HmacSha256, b"other".to_vec()).expect("key");
        assert_eq!(other.verify(&ok, &m, &req_mac, now), Err(TsigError::BadMac));
        assert_eq!(
            k.verify(&ok, &m, &req_mac, now + 301),
            Err(TsigError::BadTime(301))
        );
        let renamed = TsigKey::new(
            Name::parse("someone-else").expect("name"),
            Algorithm::HmacSha256,
            k.secret.clone(),
        )
        .expect("key");
        assert!(matches!(
            renamed.verify(&ok, &m, &req_mac, now),
            Err(TsigError::OtherKey { .. })
        ));
        // A server's BADKEY answer is reported as such.
        let bad = signed_answer(&k, &req_mac, now, BADKEY);
        let bm = decode(&bad).expect("decodes");
        assert_eq!(
            k.verify(&bad, &bm, &req_mac, now),
            Err(TsigError::Server(BADKEY))
        );
        // No TSIG at all.
        let plain = query(1, &Name::parse("a.b").expect("name"), TYPE_A);
        let pm = decode(&plain).expect("decodes");
        assert_eq!(
            k.verify(&plain, &pm, &req_mac, now),
            Err(TsigError::Unsigned)
        );
    }
}
