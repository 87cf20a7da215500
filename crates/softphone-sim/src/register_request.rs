//! The REGISTER, written straight into one pre-sized buffer. A swarm sends tens of thousands of
//! them in a storm; building an rsip message (a parsed Request-URI, header values, a `Display`
//! that grows its string piece by piece) costs several times more than the text itself, and
//! the text never varies but for a few fields. The unit test parses the result back with the
//! same parser the registrars' side uses.

use std::fmt::Write;
use std::net::SocketAddr;

use sipcore::transport::TransportKind;

/// What varies between REGISTERs.
pub struct Register<'a> {
    pub dn: &'a str,
    pub registrar: SocketAddr,
    pub local: SocketAddr,
    pub transport: TransportKind,
    pub branch: &'a str,
    pub call_id: &'a str,
    pub cseq: u32,
    pub expires: u32,
}

impl Register<'_> {
    /// The request as Genesys Softphone sends it (domain.md §5.1): From/To `sip:<DN>@<registrar>`,
    /// Contact at our address, `Expires`.
    pub fn to_text(&self) -> String {
        let (via, contact_param) = match self.transport {
            TransportKind::Udp => ("UDP", ""),
            TransportKind::Tcp => ("TCP", ";transport=tcp"),
        };
        let Register {
            dn,
            registrar,
            local,
            branch,
            call_id,
            cseq,
            expires,
            ..
        } = self;
        let host = registrar.ip();
        // The phone's Call-ID doubles as its From tag: random, and stable across refreshes.
        let mut s = String::with_capacity(512);
        // Writing to a String cannot fail.
        let _ = write!(
            s,
            "REGISTER sip:{registrar} SIP/2.0\r\n\
             Via: SIP/2.0/{via} {local};branch={branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{dn}@{host}>;tag={call_id}\r\n\
             To: <sip:{dn}@{host}>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} REGISTER\r\n\
             Contact: <sip:{dn}@{local}{contact_param}>\r\n\
             Expires: {expires}\r\n\
             User-Agent: drlab softphone-sim\r\n\
             Content-Length: 0\r\n\r\n"
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipcore::rsip::{self, prelude::*};
    use sipcore::{fields, parse_message};

    #[test]
    fn a_registrar_reads_what_it_needs() {
        let text = Register {
            dn: "7001",
            registrar: "127.0.1.1:5060".parse().unwrap(),
            local: "127.0.0.9:40000".parse().unwrap(),
            transport: TransportKind::Tcp,
            branch: "z9hG4bKabc",
            call_id: "cid1",
            cseq: 7,
            expires: 1800,
        }
        .to_text();
        let Ok(rsip::SipMessage::Request(req)) = parse_message(text.as_bytes()) else {
            panic!("{text}")
        };
        assert_eq!(req.method, rsip::Method::Register);
        assert_eq!(req.uri.to_string(), "sip:127.0.1.1:5060");
        assert_eq!(fields::dn_from_to_uri(&req).unwrap(), "7001");
        assert_eq!(fields::call_id(&req).unwrap(), "cid1");
        assert_eq!(fields::cseq(&req).unwrap(), (7, rsip::Method::Register));
        assert_eq!(fields::expires_of_contact(&req).unwrap(), Some(1800));
        assert_eq!(fields::top_via(&req).unwrap().branch, Some("z9hG4bKabc"));
        assert_eq!(fields::top_via(&req).unwrap().transport, "TCP");
        assert_eq!(
            req.contact_header().unwrap().value(),
            "<sip:7001@127.0.0.9:40000;transport=tcp>"
        );
        assert!(fields::from_tag(&req).unwrap().is_some());
    }
}
