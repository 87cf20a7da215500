//! Building the SIP messages of a dialog from the callee's side (the caller's side uses
//! `sipcore::builder::{ack_for, bye_for, cancel_for}`), and resolving where they go.

use std::net::SocketAddr;

use rsip::headers::{self, UntypedHeader};
use rsip::prelude::*;
use rsip::{Header, Method};
use sipcore::builder::{self, status, BuildError};
use sipcore::rsip;
use sipcore::transport::{Source, TransportKind};
use sipcore::{fields, response_for};

/// Our Contact for `user` at `local`.
pub fn contact(user: &str, local: SocketAddr, transport: TransportKind) -> String {
    match transport {
        TransportKind::Udp => format!("<sip:{user}@{local}>"),
        TransportKind::Tcp => format!("<sip:{user}@{local};transport=tcp>"),
    }
}

/// A response to a received INVITE in our dialog: our To tag, Contact on 1xx/2xx, and the SDP
/// answer on a 2xx.
pub fn invite_response(
    invite: &rsip::Request,
    code: u16,
    to_tag: &str,
    contact: &str,
    sdp: Option<String>,
) -> rsip::Response {
    let mut r = response_for(invite, status(code));
    if let Ok(to) = invite.to_header() {
        let value = if fields::to_tag(invite).ok().flatten().is_some() {
            to.value().to_owned()
        } else {
            format!("{};tag={to_tag}", to.value())
        };
        builder::set_header(&mut r, Header::To(headers::To::new(value)));
    }
    if code < 300 {
        builder::add_contact(&mut r, contact, None);
    }
    if let Some(sdp) = sdp {
        builder::set_response_body(&mut r, "application/sdp", sdp.into_bytes());
    }
    r
}

/// A request from the callee in the dialog of `invite` (BYE): Request-URI = the caller's
/// Contact, From = the INVITE's To with our tag, To = the INVITE's From, the Record-Route set as
/// Route (RFC 3261 §12.1.1).
pub fn callee_request(
    invite: &rsip::Request,
    to_tag: &str,
    method: Method,
    cseq: u32,
    local: SocketAddr,
    transport: TransportKind,
) -> Result<rsip::Request, BuildError> {
    let err = |detail: &str| BuildError::From {
        what: "INVITE",
        detail: detail.into(),
    };
    let target = match fields::contact_uri(invite) {
        Ok(Some(uri)) => uri.to_string(),
        _ => invite
            .from_header()
            .ok()
            .and_then(|f| f.typed().ok())
            .map(|f| f.uri.to_string())
            .ok_or_else(|| err("no Contact or From URI"))?,
    };
    let to = invite.to_header().map_err(|_| err("no To"))?.value();
    let from = invite.from_header().map_err(|_| err("no From"))?.value();
    let call_id = fields::call_id(invite).map_err(|_| err("no Call-ID"))?;
    let mut req = sipcore::RequestBuilder::new(method, target, local)
        .transport(match transport {
            TransportKind::Udp => rsip::Transport::Udp,
            TransportKind::Tcp => rsip::Transport::Tcp,
        })
        .from(to)
        .from_tag(Some(to_tag.to_owned()))
        .to(from)
        .call_id(call_id)
        .cseq(cseq)
        .no_contact();
    for h in invite.headers.iter() {
        if let Header::RecordRoute(rr) = h {
            req = req.header(Header::Route(headers::Route::new(rr.value())));
        }
    }
    req.build()
}

/// Where requests to `uri` go: its IP and port (5060 by default), over its `transport`
/// parameter or `default` otherwise; `fallback` when the host is not an IP address.
pub fn destination(uri: &rsip::Uri, default: TransportKind, fallback: SocketAddr) -> Source {
    let port = uri
        .host_with_port
        .port
        .as_ref()
        .map(|p| *p.value())
        .unwrap_or(5060);
    let addr = match &uri.host_with_port.host {
        rsip::Host::IpAddr(ip) => SocketAddr::new(*ip, port),
        rsip::Host::Domain(_) => fallback,
    };
    let tcp = uri
        .params
        .iter()
        .any(|p| matches!(p, rsip::Param::Transport(t) if *t == rsip::Transport::Tcp));
    let udp = uri
        .params
        .iter()
        .any(|p| matches!(p, rsip::Param::Transport(t) if *t == rsip::Transport::Udp));
    match (tcp, udp, default) {
        (true, _, _) | (false, false, TransportKind::Tcp) => Source::tcp(addr),
        _ => Source::udp(addr),
    }
}

/// The expiry a registrar's 200 grants: the Contact's `expires`, else the Expires header.
pub fn granted_expires(resp: &rsip::Response) -> Option<u32> {
    let from_contact = resp.contact_headers().into_iter().find_map(|c| {
        let typed = c.typed().ok()?;
        typed.expires()?.value().trim().parse::<u32>().ok()
    });
    from_contact.or_else(|| fields::expires_header(resp).ok().flatten())
}

/// A 423's Min-Expires.
pub fn min_expires(resp: &rsip::Response) -> Option<u32> {
    resp.headers.iter().find_map(|h| match h {
        Header::MinExpires(m) => m.value().trim().parse().ok(),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipcore::parse_message;

    fn request(text: &str) -> rsip::Request {
        match parse_message(text.as_bytes()) {
            Ok(rsip::SipMessage::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    fn response(text: &str) -> rsip::Response {
        match parse_message(text.as_bytes()) {
            Ok(rsip::SipMessage::Response(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    const INVITE: &str = "INVITE sip:7001@127.0.0.1:5070 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1;rport\r\n\
Record-Route: <sip:127.0.0.9;lr>\r\n\
From: <sip:5551000@127.0.0.1>;tag=caller\r\n\
To: <sip:7001@127.0.0.1>\r\n\
Call-ID: c1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:ss1@127.0.0.1:5060>\r\n\
Content-Length: 0\r\n\r\n";

    #[test]
    fn answer_and_bye_from_the_callee_side() {
        let invite = request(INVITE);
        let local: SocketAddr = "127.0.0.1:5070".parse().unwrap();
        let ok = invite_response(
            &invite,
            200,
            "phone",
            &contact("7001", local, TransportKind::Udp),
            Some("v=0\r\n".into()),
        );
        let text = ok.to_string();
        assert!(
            text.contains("To: <sip:7001@127.0.0.1>;tag=phone\r\n"),
            "{text}"
        );
        assert!(
            text.contains("Contact: <sip:7001@127.0.0.1:5070>\r\n"),
            "{text}"
        );
        assert!(text.contains("Content-Type: application/sdp\r\n"), "{text}");

        let bye =
            callee_request(&invite, "phone", Method::Bye, 1, local, TransportKind::Udp).unwrap();
        let text = bye.to_string();
        assert!(
            text.starts_with("BYE sip:ss1@127.0.0.1:5060 SIP/2.0\r\n"),
            "{text}"
        );
        assert!(
            text.contains("From: <sip:7001@127.0.0.1>;tag=phone\r\n"),
            "{text}"
        );
        assert!(
            text.contains("To: <sip:5551000@127.0.0.1>;tag=caller\r\n"),
            "{text}"
        );
        assert!(text.contains("Route: <sip:127.0.0.9;lr>\r\n"), "{text}");
        assert!(text.contains("CSeq: 1 BYE\r\n"), "{text}");
        assert_eq!(
            destination(&bye.uri, TransportKind::Udp, local),
            Source::udp("127.0.0.1:5060".parse().unwrap())
        );
    }

    #[test]
    fn destinations_follow_the_uri() {
        let fallback: SocketAddr = "127.0.0.2:5000".parse().unwrap();
        let dest = |uri: &str, t| destination(&rsip::Uri::try_from(uri).unwrap(), t, fallback);
        assert_eq!(
            dest("sip:a@127.0.0.1;transport=tcp", TransportKind::Udp),
            Source::tcp("127.0.0.1:5060".parse().unwrap())
        );
        assert_eq!(
            dest("sip:a@127.0.0.1:5080", TransportKind::Tcp),
            Source::tcp("127.0.0.1:5080".parse().unwrap())
        );
        assert_eq!(
            dest("sip:a@example.com", TransportKind::Udp),
            Source::udp(fallback)
        );
    }

    #[test]
    fn registrar_answers() {
        let ok = response(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:7001@h>;tag=1\r\nTo: <sip:7001@h>;tag=2\r\nCall-ID: r\r\nCSeq: 2 REGISTER\r\nContact: <sip:7001@127.0.0.1:5070>;expires=120\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n",
        );
        assert_eq!(granted_expires(&ok), Some(120));
        let brief = response(
            "SIP/2.0 423 Interval Too Brief\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:7001@h>;tag=1\r\nTo: <sip:7001@h>;tag=2\r\nCall-ID: r\r\nCSeq: 2 REGISTER\r\nMin-Expires: 60\r\nContent-Length: 0\r\n\r\n",
        );
        assert_eq!(min_expires(&brief), Some(60));
        assert_eq!(granted_expires(&brief), None);
    }
}
