//! One desktop's cookie jar: what a browser keeps for the GWS origin — `JSESSIONID` (the GWS
//! session), `BAYEUX_BROWSER` (CometD's browser id) and, behind a proxy in `sticky cookie` mode,
//! the proxy's route cookie. Every desktop has its own jar (CometD allows one
//! long-poll per `BAYEUX_BROWSER`, and sessions are per desktop), so a swarm of thousands behaves
//! like thousands of browsers. A desktop talks to one origin, so cookies are keyed by name only.

use std::collections::BTreeMap;

/// Cookies kept at most; a server that sets more loses the newest (a browser caps them too).
const MAX_COOKIES: usize = 32;
/// Longest `name=value` kept (browsers: 4096 bytes).
const MAX_COOKIE_BYTES: usize = 4096;

/// The cookies of one desktop.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CookieJar {
    cookies: BTreeMap<String, String>,
}

impl CookieJar {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one `Set-Cookie` header value: stores the cookie, or removes it when the server
    /// expires it (`Max-Age=0` or an empty value).
    pub fn store(&mut self, set_cookie: &str) {
        if set_cookie.len() > MAX_COOKIE_BYTES {
            return;
        }
        let mut parts = set_cookie.split(';');
        let Some((name, value)) = parts.next().and_then(|p| p.split_once('=')) else {
            return;
        };
        let (name, value) = (name.trim(), value.trim().trim_matches('"'));
        if name.is_empty() {
            return;
        }
        let expired = parts.any(|attr| {
            attr.split_once('=').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("max-age") && v.trim().starts_with(['0', '-'])
            })
        });
        if expired || value.is_empty() {
            self.cookies.remove(name);
        } else if self.cookies.len() < MAX_COOKIES || self.cookies.contains_key(name) {
            self.cookies.insert(name.to_owned(), value.to_owned());
        }
    }

    /// The value of cookie `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.cookies.get(name).map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.cookies.is_empty()
    }

    /// Appends the value of the `Cookie` request header (`a=1; b=2`), written straight into the
    /// request being encoded.
    pub fn write_pairs(&self, out: &mut Vec<u8>) {
        for (i, (name, value)) in self.cookies.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b"; ");
            }
            out.extend_from_slice(name.as_bytes());
            out.push(b'=');
            out.extend_from_slice(value.as_bytes());
        }
    }

    /// Forgets everything (a new login starts from a clean browser).
    pub fn clear(&mut self) {
        self.cookies.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(jar: &CookieJar) -> Option<String> {
        let mut out = Vec::new();
        jar.write_pairs(&mut out);
        (!jar.is_empty()).then(|| String::from_utf8_lossy(&out).into_owned())
    }

    #[test]
    fn keeps_session_browser_and_route_cookies() {
        let mut jar = CookieJar::new();
        assert_eq!(header(&jar), None);
        jar.store("JSESSIONID=abc; Path=/; HttpOnly");
        jar.store("BAYEUX_BROWSER=\"b1\"; Path=/");
        jar.store("srv_id=1a2b; path=/; expires=Thu, 01 Jan 2099 00:00:00 GMT");
        assert_eq!(jar.get("JSESSIONID"), Some("abc"));
        assert_eq!(
            header(&jar).as_deref(),
            Some("BAYEUX_BROWSER=b1; JSESSIONID=abc; srv_id=1a2b")
        );
        jar.store("JSESSIONID=def; Path=/");
        assert_eq!(jar.get("JSESSIONID"), Some("def"), "replaced");
        jar.store("JSESSIONID=def; Max-Age=0");
        assert_eq!(jar.get("JSESSIONID"), None, "expired by the server");
        jar.clear();
        assert_eq!(header(&jar), None);
    }

    #[test]
    fn garbage_and_floods_are_bounded() {
        let mut jar = CookieJar::new();
        for bad in ["", "novalue", "=x", ";;;", "a=", &"x".repeat(10_000)] {
            jar.store(bad);
        }
        assert_eq!(header(&jar), None);
        for i in 0..100 {
            jar.store(&format!("c{i}=v"));
        }
        assert_eq!(jar.cookies.len(), MAX_COOKIES);
    }
}
