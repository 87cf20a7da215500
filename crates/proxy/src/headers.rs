//! The header rules both request paths apply: which fields are hop-by-hop (RFC 9110 §7.6.1,
//! plus those a `Connection` field names) and so never forwarded, and the fields the proxy
//! reads or sets. The fast path's codec ([`crate::h1`]) asks them of `httparse` fields, the
//! general path of hyper's [`HeaderMap`].

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};

/// The hop-by-hop fields, in lower case.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// [`HOP_BY_HOP`] as header names, so that removing them from a map parses nothing.
const HOP_BY_HOP_NAMES: [HeaderName; 7] = [
    HeaderName::from_static(HOP_BY_HOP[0]),
    HeaderName::from_static(HOP_BY_HOP[1]),
    HeaderName::from_static(HOP_BY_HOP[2]),
    HeaderName::from_static(HOP_BY_HOP[3]),
    HeaderName::from_static(HOP_BY_HOP[4]),
    HeaderName::from_static(HOP_BY_HOP[5]),
    HeaderName::from_static(HOP_BY_HOP[6]),
];

/// `Connection` options that name no field.
const CONNECTION_OPTIONS: [&[u8]; 3] = [b"close", b"keep-alive", b"upgrade"];

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Whether field `name` is hop-by-hop: by definition or because the head's `Connection` fields
/// name it (`named`, see [`connection_named`]). Runs for every field the fast path passes on, so
/// lengths are compared before any bytes.
pub fn is_hop_by_hop(name: &str, named: &[&[u8]]) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|f| f.len() == name.len() && name.eq_ignore_ascii_case(f))
        || named
            .iter()
            .any(|n| name.as_bytes().eq_ignore_ascii_case(n))
}

/// The field names listed by `Connection` field values (most heads list none, and then nothing
/// is allocated).
pub fn connection_named<'b>(connection: impl Iterator<Item = &'b [u8]>) -> Vec<&'b [u8]> {
    let mut named = Vec::new();
    for value in connection {
        for t in tokens(value) {
            if !CONNECTION_OPTIONS.iter().any(|o| t.eq_ignore_ascii_case(o)) {
                named.push(t);
            }
        }
    }
    named
}

/// The comma-separated tokens of a field value.
pub fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// Removes the hop-by-hop fields from `headers`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = connection_named(field_values(headers, header::CONNECTION))
            .into_iter()
            .filter_map(|t| HeaderName::from_bytes(t).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP_NAMES {
        headers.remove(name);
    }
}

/// The `Upgrade` field of a request that asks for a protocol switch (`Connection: upgrade`).
pub fn upgrade_requested(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = field_values(headers, header::CONNECTION)
        .flat_map(tokens)
        .any(|t| t.eq_ignore_ascii_case(b"upgrade"));
    if asks {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    }
}

/// The values of the fields called `name`, as bytes.
pub fn field_values(headers: &HeaderMap, name: HeaderName) -> impl Iterator<Item = &[u8]> {
    headers.get_all(name).into_iter().map(HeaderValue::as_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_of_a_head_lose_the_same_fields() {
        let fields = [
            ("Connection", "keep-alive, X-Secret, close"),
            ("X-Secret", "1"),
            ("TE", "trailers"),
            ("Keep-Alive", "5"),
            ("Proxy-Connection", "x"),
            ("Trailer", "x"),
            ("Transfer-Encoding", "chunked"),
            ("Upgrade", "websocket"),
            ("Host", "x"),
            ("Cookie", "a=1"),
        ];
        let named = connection_named(
            fields
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
                .map(|(_, v)| v.as_bytes()),
        );
        let kept_raw: Vec<&str> = fields
            .iter()
            .filter(|(n, _)| !is_hop_by_hop(n, &named))
            .map(|(n, _)| *n)
            .collect();
        let mut map = HeaderMap::new();
        for (n, v) in fields {
            map.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_static(v),
            );
        }
        strip_hop_by_hop(&mut map);
        let kept_map: Vec<&str> = map.keys().map(HeaderName::as_str).collect();
        assert_eq!(kept_raw, ["Host", "Cookie"]);
        assert_eq!(kept_map, ["host", "cookie"]);
    }

    #[test]
    fn upgrade_needs_connection_upgrade() {
        let mut map = HeaderMap::new();
        map.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert_eq!(upgrade_requested(&map), None);
        map.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert_eq!(
            upgrade_requested(&map),
            Some(HeaderValue::from_static("websocket"))
        );
    }
}
