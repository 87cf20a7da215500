//! Where a number is reached: a softphone DN at its phone's registered Contact (here, or as
//! the owner's record says when the phone registered at another node), a PSTN DN or any other
//! number at the PSTN gateway.

use sipcore::transport::Source;

use crate::core::NodeCore;
use crate::dn::DnKind;

impl NodeCore {
    /// Where a number is reached: a softphone DN at its registered Contact, a PSTN DN at the
    /// gateway with its external number, any other number at the gateway.
    pub(super) fn reach(&self, number: &str) -> Result<(String, Source), String> {
        let info = self.plan.lookup(number);
        match info.as_ref().map(|i| i.kind) {
            Some(DnKind::Softphone) => {
                match (self.registrar.binding(number), self.remote_contact(number)) {
                    (Some(b), _) => {
                        let uri = b
                            .contact
                            .trim_start_matches('<')
                            .trim_end_matches('>')
                            .to_string();
                        let tcp = b.transport == crate::registrar::SipTransport::Tcp;
                        let dest = contact_destination(&uri, b.source, tcp);
                        Ok((uri, dest))
                    }
                    // Registered at another node: the owner's record says where the phone is.
                    (None, Some(c)) => {
                        Ok((c.uri.clone(), contact_destination(&c.uri, c.source, false)))
                    }
                    (None, None) => Err(format!("DN {number} has no registered phone")),
                }
            }
            _ => {
                let Some(gw) = self.config.pstn_gateway else {
                    return Err(format!("no PSTN gateway configured to reach {number}"));
                };
                let external = info
                    .and_then(|i| i.external)
                    .unwrap_or_else(|| number.to_string());
                Ok((format!("sip:{external}@{gw}"), Source::udp(gw)))
            }
        }
    }

    /// The calling DN when a registered phone dialled this call (an internal call); None for
    /// any other caller (the PSTN, an unregistered number).
    pub(super) fn internal_caller(&self, ani: &str, dn: &str) -> Option<Box<str>> {
        let phone = self
            .plan
            .lookup(ani)
            .is_some_and(|i| i.kind == DnKind::Softphone);
        let registered =
            self.registrar.binding(ani).is_some() || self.remote_contact(ani).is_some();
        (phone && registered && ani != dn).then(|| ani.into())
    }
}

/// Where to send requests for a registered Contact: its host and port, over its `transport`
/// parameter or the transport it registered with; the source address when the URI has no port.
fn contact_destination(uri: &str, source: std::net::SocketAddr, registered_tcp: bool) -> Source {
    let lower = uri.to_ascii_lowercase();
    let tcp = if lower.contains("transport=tcp") {
        true
    } else if lower.contains("transport=udp") {
        false
    } else {
        registered_tcp
    };
    let hostport = uri
        .split_once(':')
        .map(|(_, rest)| rest)
        .unwrap_or(uri)
        .rsplit('@')
        .next()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("");
    let addr = hostport.parse::<std::net::SocketAddr>().unwrap_or(source);
    if tcp {
        Source::tcp(addr)
    } else {
        Source::udp(addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_destinations() {
        let src: std::net::SocketAddr = "127.0.0.9:40000".parse().unwrap();
        assert_eq!(
            contact_destination("sip:7001@127.0.0.1:5062", src, false),
            Source::udp("127.0.0.1:5062".parse().unwrap())
        );
        assert_eq!(
            contact_destination("sip:7001@127.0.0.1:5062;transport=TCP", src, false),
            Source::tcp("127.0.0.1:5062".parse().unwrap())
        );
        assert_eq!(
            contact_destination("sip:7001@phone.example", src, true),
            Source::tcp(src)
        );
    }
}
