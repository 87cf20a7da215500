//! Where a desktop's requests go: `http://host[:port]` taken apart once, so every connection
//! and every `Host` header reuse it. Pure: no name is resolved here.

use std::sync::Arc;

/// The origin of a desktop (the proxy or a GWS node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `host:port`: what a connection dials and what the `Host` header says. Shared by the
    /// desktop's connections (a swarm has thousands).
    authority: Arc<str>,
}

impl Origin {
    /// Parses `http://host[:port][/]`; HTTPS and paths are not supported (the lab speaks plain
    /// HTTP, and GWS API paths are absolute).
    pub fn parse(url: &str) -> Result<Origin, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("`{url}`: only http:// URLs are supported"))?;
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
            return Err(format!("`{url}`: expected http://host[:port]"));
        }
        // A port is whatever follows the last colon outside an IPv6 literal's brackets.
        let has_port = match authority.rfind(':') {
            Some(i) => !authority[i..].contains(']'),
            None => false,
        };
        let authority = if has_port {
            let port = &authority[authority.rfind(':').map_or(0, |i| i + 1)..];
            port.parse::<u16>()
                .map_err(|_| format!("`{url}`: bad port `{port}`"))?;
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(Origin {
            authority: authority.into(),
        })
    }

    /// `host:port`.
    pub fn authority(&self) -> &str {
        &self.authority
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_urls_parse_with_or_without_port() {
        let o = |u: &str| Origin::parse(u).map(|o| o.authority().to_owned());
        assert_eq!(o("http://127.0.1.10:8080"), Ok("127.0.1.10:8080".into()));
        assert_eq!(o("http://gws.lab/"), Ok("gws.lab:80".into()));
        assert_eq!(o("http://[::1]:8090"), Ok("[::1]:8090".into()));
        assert_eq!(o("http://[::1]"), Ok("[::1]:80".into()));
        for bad in [
            "https://gws:443",
            "gws:8080",
            "http://",
            "http://gws:80/api",
            "http://gws:99999",
            "http://u@gws",
        ] {
            assert!(o(bad).is_err(), "{bad}");
        }
    }
}
