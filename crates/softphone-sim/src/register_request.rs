//! The REGISTER, written straight into the outgoing buffer, and the identifiers that let a
//! response find its phone without a lookup table. A swarm sends tens of thousands of REGISTERs
//! in a storm; the text never varies but for a few fields, so everything else is rendered once
//! per simulator. The unit test parses the result back with the parser the registrars use.
//!
//! Identifiers: a random 64-bit nonce per simulator, in hex, plus the phone's index (its line):
//! Call-ID `<nonce>-<line>` (stable across refreshes, so they update the same binding; it doubles
//! as the From tag) and branch `z9hG4bK<nonce>.<line>.<cseq>` (unique per REGISTER, RFC 3261
//! §8.1.1.7: another simulator has another nonce, another REGISTER of the phone another CSeq).

use std::net::SocketAddr;

use bytes::{BufMut, BytesMut};
use sipcore::ids::BRANCH_MAGIC;
use sipcore::transport::TransportKind;

/// The fixed parts of every REGISTER of one simulator.
pub struct RegisterText {
    nonce: Box<str>,
    /// Per registrar: `REGISTER sip:<addr> SIP/2.0\r\nVia: SIP/2.0/<T> <local>;branch=`.
    heads: Vec<Box<str>>,
    /// Per registrar: the host of the From/To URI, `@<ip>>`.
    hosts: Vec<Box<str>>,
    /// `@<local><;transport=tcp>>` for the Contact.
    contact: Box<str>,
}

/// What varies between REGISTERs.
pub struct Register<'a> {
    pub dn: &'a str,
    pub line: u32,
    /// Index into the registrar list the text was made for.
    pub registrar: usize,
    pub cseq: u32,
    pub expires: u32,
}

impl RegisterText {
    pub fn new(registrars: &[SocketAddr], local: SocketAddr, transport: TransportKind) -> Self {
        let (via, contact_param) = match transport {
            TransportKind::Udp => ("UDP", ""),
            TransportKind::Tcp => ("TCP", ";transport=tcp"),
        };
        RegisterText {
            nonce: format!("{:016x}", rand::random::<u64>()).into(),
            heads: registrars
                .iter()
                .map(|r| {
                    format!("REGISTER sip:{r} SIP/2.0\r\nVia: SIP/2.0/{via} {local};branch=").into()
                })
                .collect(),
            hosts: registrars
                .iter()
                .map(|r| format!("@{}>", r.ip()).into())
                .collect(),
            contact: format!("@{local}{contact_param}>").into(),
        }
    }

    /// Appends the request as Genesys Softphone sends it (seen in its logs): From/To
    /// `sip:<DN>@<registrar>`, Contact at our address, `Expires`. Nothing for a registrar
    /// index out of range.
    pub fn write(&self, out: &mut BytesMut, r: &Register<'_>) {
        let (Some(head), Some(host)) = (self.heads.get(r.registrar), self.hosts.get(r.registrar))
        else {
            return;
        };
        out.reserve(400 + 2 * r.dn.len());
        out.put_slice(head.as_bytes());
        self.put_branch(out, r.line, r.cseq);
        out.put_slice(b";rport\r\nMax-Forwards: 70\r\nFrom: <sip:");
        out.put_slice(r.dn.as_bytes());
        out.put_slice(host.as_bytes());
        out.put_slice(b";tag=");
        self.put_call_id(out, r.line);
        out.put_slice(b"\r\nTo: <sip:");
        out.put_slice(r.dn.as_bytes());
        out.put_slice(host.as_bytes());
        out.put_slice(b"\r\nCall-ID: ");
        self.put_call_id(out, r.line);
        out.put_slice(b"\r\nCSeq: ");
        put_u32(out, r.cseq);
        out.put_slice(b" REGISTER\r\nContact: <sip:");
        out.put_slice(r.dn.as_bytes());
        out.put_slice(self.contact.as_bytes());
        out.put_slice(b"\r\nExpires: ");
        put_u32(out, r.expires);
        out.put_slice(b"\r\nUser-Agent: drlab softphone-sim\r\nContent-Length: 0\r\n\r\n");
    }

    fn put_branch(&self, out: &mut BytesMut, line: u32, cseq: u32) {
        out.put_slice(BRANCH_MAGIC.as_bytes());
        out.put_slice(self.nonce.as_bytes());
        out.put_u8(b'.');
        put_u32(out, line);
        out.put_u8(b'.');
        put_u32(out, cseq);
    }

    fn put_call_id(&self, out: &mut BytesMut, line: u32) {
        out.put_slice(self.nonce.as_bytes());
        out.put_u8(b'-');
        put_u32(out, line);
    }

    /// The phone and CSeq a response belongs to, from its top Via branch, checked against its
    /// Call-ID; `None` when it is not a REGISTER of this simulator.
    pub fn owner(&self, branch: &str, call_id: &str) -> Option<(u32, u32)> {
        let rest = branch
            .strip_prefix(BRANCH_MAGIC)?
            .strip_prefix(&*self.nonce)?
            .strip_prefix('.')?;
        let (line_text, cseq) = rest.split_once('.')?;
        let same_line = call_id
            .strip_prefix(&*self.nonce)
            .and_then(|c| c.strip_prefix('-'))
            == Some(line_text);
        if !same_line {
            return None;
        }
        Some((parse_u32(line_text)?, parse_u32(cseq)?))
    }
}

/// Decimal digits only (no sign, no spaces), as we write them.
fn parse_u32(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn put_u32(out: &mut BytesMut, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipcore::rsip::{self, prelude::*};
    use sipcore::{fields, parse_message};

    fn text(transport: TransportKind, r: &Register<'_>) -> (RegisterText, String) {
        let registrars = [
            "127.0.1.1:5060".parse().unwrap(),
            "127.0.2.1:5070".parse().unwrap(),
        ];
        let t = RegisterText::new(&registrars, "127.0.0.9:40000".parse().unwrap(), transport);
        let mut out = BytesMut::new();
        t.write(&mut out, r);
        let s = String::from_utf8(out.to_vec()).unwrap();
        (t, s)
    }

    #[test]
    fn a_registrar_reads_what_it_needs() {
        let r = Register {
            dn: "7001",
            line: 42,
            registrar: 1,
            cseq: 7,
            expires: 1800,
        };
        let (t, text) = text(TransportKind::Tcp, &r);
        let Ok(rsip::SipMessage::Request(req)) = parse_message(text.as_bytes()) else {
            panic!("{text}")
        };
        assert_eq!(req.method, rsip::Method::Register);
        assert_eq!(req.uri.to_string(), "sip:127.0.2.1:5070");
        assert_eq!(fields::dn_from_to_uri(&req).unwrap(), "7001");
        assert_eq!(fields::cseq(&req).unwrap(), (7, rsip::Method::Register));
        assert_eq!(fields::expires_of_contact(&req).unwrap(), Some(1800));
        assert_eq!(fields::top_via(&req).unwrap().transport, "TCP");
        assert_eq!(
            req.contact_header().unwrap().value(),
            "<sip:7001@127.0.0.9:40000;transport=tcp>"
        );
        let call_id = fields::call_id(&req).unwrap();
        assert_eq!(fields::from_tag(&req).unwrap().as_deref(), Some(call_id));
        let branch = fields::top_via(&req).unwrap().branch.unwrap();
        assert!(branch.starts_with(BRANCH_MAGIC));
        assert_eq!(t.owner(branch, call_id), Some((42, 7)));
    }

    #[test]
    fn identifiers_name_the_phone_and_the_request() {
        let r = |line, cseq| Register {
            dn: "7001",
            line,
            registrar: 0,
            cseq,
            expires: 60,
        };
        let (t, a) = text(TransportKind::Udp, &r(3, 1));
        let ids = |text: &str| {
            let Ok(rsip::SipMessage::Request(req)) = parse_message(text.as_bytes()) else {
                panic!("{text}")
            };
            let branch = fields::top_via(&req).unwrap().branch.unwrap().to_owned();
            (branch, fields::call_id(&req).unwrap().to_owned())
        };
        let (b1, c1) = ids(&a);
        let mut out = BytesMut::new();
        t.write(&mut out, &r(3, 2));
        let (b2, c2) = ids(std::str::from_utf8(&out).unwrap());
        assert_ne!(b1, b2, "each REGISTER its own branch");
        assert_eq!(c1, c2, "one Call-ID per phone");
        assert_eq!(t.owner(&b2, &c2), Some((3, 2)));
        // Another phone's Call-ID, another simulator's branch, a stranger's.
        let other = c1.replace("-3", "-4");
        assert_eq!(t.owner(&b1, &other), None);
        let (t2, _) = text(TransportKind::Udp, &r(3, 1));
        assert_eq!(t2.owner(&b1, &c1), None);
        assert_eq!(t.owner("z9hG4bKabc", "x"), None);
        assert_eq!(t.owner(&format!("{b1}x"), &c1), None);
        let mut none = BytesMut::new();
        t.write(
            &mut none,
            &Register {
                registrar: 9,
                ..r(1, 1)
            },
        );
        assert!(none.is_empty());
    }
}
