//! The little SDP a heartbeat needs: where the other end wants its media (`c=` + `m=audio`).

use std::net::{IpAddr, SocketAddr};

/// The audio destination of an SDP body: the `c=` address (media-level over session-level) and
/// the `m=audio` port. `None` when there is no usable one (port 0 means the stream is refused).
pub fn media_destination(body: &[u8]) -> Option<SocketAddr> {
    let text = std::str::from_utf8(body).ok()?;
    let mut session_ip: Option<IpAddr> = None;
    let mut audio: Option<(u16, Option<IpAddr>)> = None;
    for line in text.lines().map(str::trim) {
        if let Some(c) = line.strip_prefix("c=") {
            // c=IN IP4 198.51.100.1
            let ip = c.split_whitespace().nth(2).and_then(|a| a.parse().ok());
            match audio.as_mut() {
                Some((_, media_ip @ None)) => *media_ip = ip,
                Some(_) => {}
                None => session_ip = ip,
            }
        } else if let Some(m) = line.strip_prefix("m=") {
            if audio.is_some() {
                break; // only the first audio stream matters
            }
            let mut parts = m.split_whitespace();
            if parts.next() == Some("audio") {
                let port = parts.next()?.split('/').next()?.parse().ok()?;
                audio = Some((port, None));
            }
        }
    }
    let (port, media_ip) = audio?;
    let ip = media_ip.or(session_ip)?;
    (port != 0).then(|| SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_session_and_media_level_addresses() {
        let offer = sipcore::builder::sdp_offer("127.0.0.1".parse().unwrap(), 40000);
        assert_eq!(
            media_destination(offer.as_bytes()),
            Some("127.0.0.1:40000".parse().unwrap())
        );
        let media_level = "v=0\r\nc=IN IP4 10.0.0.1\r\nm=video 5000 RTP/AVP 96\r\nm=audio 6000 RTP/AVP 0\r\nc=IN IP4 10.0.0.2\r\n";
        assert_eq!(
            media_destination(media_level.as_bytes()),
            Some("10.0.0.2:6000".parse().unwrap())
        );
        // SIPp's built-in scenarios put `[media_ip]` style addresses and a port.
        let sipp = "v=0\no=user1 53655765 2353687637 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 6000 RTP/AVP 0\n";
        assert_eq!(
            media_destination(sipp.as_bytes()),
            Some("127.0.0.1:6000".parse().unwrap())
        );
    }

    #[test]
    fn refused_or_missing_streams_give_none() {
        assert_eq!(media_destination(b""), None);
        assert_eq!(
            media_destination(b"v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 0 RTP/AVP 0\r\n"),
            None
        );
        assert_eq!(media_destination(b"m=audio 4000 RTP/AVP 0\r\n"), None);
        assert_eq!(media_destination(&[0xff, 0xfe]), None);
        assert_eq!(
            media_destination(b"c=IN IP4 nonsense\r\nm=audio 4000 RTP/AVP 0\r\n"),
            None
        );
    }
}
