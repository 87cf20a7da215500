//! Cross-origin requests (GWS `crossOriginSettings`, a Jetty `CrossOriginFilter`): a desktop page
//! served from another origin than GWS (a custom agent desktop, WWE on its own host) calls the
//! API with `fetch(…, {credentials: 'include'})`. [`Policy`] is the pure part — which origin,
//! method and headers are allowed and which `Access-Control-*` headers answer them; [`apply`] is
//! the middleware in front of every route: it answers preflights, refuses cross-origin WebSocket
//! upgrades that are not allowed, and marks every answer to an allowed origin.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::CorsSettings;
use crate::ctx::Ctx;
use crate::rest::error::ApiError;

/// The cross-origin policy of a node.
#[derive(Clone, Debug)]
pub struct Policy<'a> {
    settings: &'a CorsSettings,
}

/// `Access-Control-*` (and `Vary`) headers to put on an answer.
pub type Headers = Vec<(HeaderName, String)>;

/// Matches `text` against `pattern`, where `*` stands for any run of characters
/// (`http://*.example.com`, `*`); case-insensitive, as origins are.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (pattern, text) = (pattern.to_ascii_lowercase(), text.to_ascii_lowercase());
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

fn listed(list: &[String], item: &str) -> bool {
    list.iter()
        .any(|l| l == "*" || l.eq_ignore_ascii_case(item.trim()))
}

impl<'a> Policy<'a> {
    pub fn new(settings: &'a CorsSettings) -> Self {
        Policy { settings }
    }

    /// Whether `origin` may call the API (no origin is allowed while the list is empty).
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.settings
            .allowed_origins
            .iter()
            .any(|p| wildcard_match(p, origin))
    }

    /// The headers every answer to an allowed `origin` carries; None for another origin.
    pub fn actual(&self, origin: &str) -> Option<Headers> {
        if !self.allows_origin(origin) {
            return None;
        }
        let s = self.settings;
        let mut h = self.common(origin);
        if !s.exposed_headers.is_empty() {
            h.push((
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                s.exposed_headers.join(", "),
            ));
        }
        Some(h)
    }

    /// The answer to a preflight (`OPTIONS` with `Access-Control-Request-Method`): the headers
    /// of an allowed request, or why it is refused.
    pub fn preflight(
        &self,
        origin: &str,
        method: &str,
        request_headers: &str,
    ) -> Result<Headers, String> {
        let s = self.settings;
        if !self.allows_origin(origin) {
            return Err(format!("Origin '{origin}' is not allowed"));
        }
        if !listed(&s.allowed_methods, method) {
            return Err(format!("Method '{method}' is not allowed"));
        }
        let refused: Vec<&str> = request_headers
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty() && !listed(&s.allowed_headers, h))
            .collect();
        if !refused.is_empty() {
            return Err(format!("Headers not allowed: {}", refused.join(", ")));
        }
        let mut h = self.common(origin);
        h.push((
            header::ACCESS_CONTROL_ALLOW_METHODS,
            s.allowed_methods.join(", "),
        ));
        if !s.allowed_headers.is_empty() {
            h.push((
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                s.allowed_headers.join(", "),
            ));
        }
        h.push((
            header::ACCESS_CONTROL_MAX_AGE,
            s.max_age.as_secs().to_string(),
        ));
        Ok(h)
    }

    /// Whether a WebSocket upgrade from `origin` may open: a browser page of this very origin
    /// (`Host`), or an allowed one. Browsers do not preflight upgrades, so this is the check.
    pub fn allows_websocket(&self, origin: &str, host: Option<&str>) -> bool {
        let own = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        (own.is_some() && own == host) || self.allows_origin(origin)
    }

    /// The origin itself (never `*`: credentials forbid it), `Vary: Origin` for caches, and the
    /// credentials flag.
    fn common(&self, origin: &str) -> Headers {
        let mut h = vec![
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.to_owned()),
            (header::VARY, "Origin".to_owned()),
        ];
        if self.settings.allow_credentials {
            h.push((header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true".to_owned()));
        }
        h
    }
}

fn header_text<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn add(response: &mut Response, headers: Headers) {
    let h = response.headers_mut();
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.append(name, v);
        }
    }
}

fn refused(message: String) -> Response {
    ApiError::cross_origin_refused(message).into_response()
}

/// The middleware: requests without `Origin` (desktop-sim, curl, the proxy's health checks) go
/// straight through.
pub async fn apply(State(ctx): State<Arc<Ctx>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let Some(origin) = header_text(headers, &header::ORIGIN).map(str::to_owned) else {
        return next.run(request).await;
    };
    let policy = Policy::new(&ctx.cfg.cors);
    let preflight_method = header_text(headers, &header::ACCESS_CONTROL_REQUEST_METHOD);
    if request.method() == Method::OPTIONS {
        if let Some(method) = preflight_method {
            let asked = header_text(headers, &header::ACCESS_CONTROL_REQUEST_HEADERS).unwrap_or("");
            return match policy.preflight(&origin, method, asked) {
                Ok(allowed) => {
                    let mut response = StatusCode::NO_CONTENT.into_response();
                    add(&mut response, allowed);
                    response
                }
                Err(why) => refused(why),
            };
        }
    }
    let upgrade =
        header_text(headers, &header::UPGRADE).is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
    if upgrade && !policy.allows_websocket(&origin, header_text(headers, &header::HOST)) {
        return refused(format!(
            "Origin '{origin}' may not open the notification WebSocket"
        ));
    }
    let mut response = next.run(request).await;
    if let Some(allowed) = policy.actual(&origin) {
        add(&mut response, allowed);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(origins: &[&str]) -> CorsSettings {
        CorsSettings {
            allowed_origins: origins.iter().map(|o| o.to_string()).collect(),
            ..CorsSettings::default()
        }
    }

    fn value(h: &Headers, name: HeaderName) -> Option<&str> {
        h.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn origins_match_exactly_or_by_wildcard() {
        assert!(wildcard_match("http://a:1", "http://A:1"));
        assert!(!wildcard_match("http://a:1", "http://a:12"));
        assert!(wildcard_match("*", "http://x"));
        assert!(wildcard_match(
            "http://*.example.com",
            "http://wwe.example.com"
        ));
        assert!(!wildcard_match(
            "http://*.example.com",
            "http://example.com.evil"
        ));
        assert!(wildcard_match(
            "http://127.0.1.10:*",
            "http://127.0.1.10:8765"
        ));
        assert!(!wildcard_match(
            "http://127.0.1.10:*",
            "http://127.0.1.11:8765"
        ));
        let off = CorsSettings::default();
        assert!(
            !Policy::new(&off).allows_origin("http://x"),
            "off by default"
        );
    }

    #[test]
    fn allowed_origin_gets_its_origin_vary_and_credentials() {
        let s = settings(&["http://wwe:8765"]);
        let p = Policy::new(&s);
        let h = p.actual("http://wwe:8765").expect("allowed");
        assert_eq!(
            value(&h, header::ACCESS_CONTROL_ALLOW_ORIGIN),
            Some("http://wwe:8765")
        );
        assert_eq!(value(&h, header::VARY), Some("Origin"));
        assert_eq!(
            value(&h, header::ACCESS_CONTROL_ALLOW_CREDENTIALS),
            Some("true")
        );
        assert!(value(&h, header::ACCESS_CONTROL_EXPOSE_HEADERS)
            .unwrap()
            .contains("X-CSRF-TOKEN"));
        assert_eq!(p.actual("http://other:8765"), None);
    }

    #[test]
    fn preflight_checks_origin_method_and_headers() {
        let s = settings(&["http://wwe:8765"]);
        let p = Policy::new(&s);
        let h = p
            .preflight("http://wwe:8765", "POST", "content-type, Authorization")
            .expect("allowed");
        assert!(value(&h, header::ACCESS_CONTROL_ALLOW_METHODS)
            .unwrap()
            .contains("POST"));
        assert_eq!(value(&h, header::ACCESS_CONTROL_MAX_AGE), Some("1800"));
        assert!(p.preflight("http://evil:1", "POST", "").is_err());
        assert!(p.preflight("http://wwe:8765", "PATCH", "").is_err());
        let e = p
            .preflight("http://wwe:8765", "POST", "content-type, x-evil")
            .unwrap_err();
        assert!(e.contains("x-evil"), "{e}");
    }

    #[test]
    fn websocket_from_its_own_origin_or_an_allowed_one() {
        let s = settings(&["http://wwe:8765"]);
        let p = Policy::new(&s);
        assert!(p.allows_websocket("http://gws:8090", Some("gws:8090")));
        assert!(p.allows_websocket("http://wwe:8765", Some("gws:8090")));
        assert!(!p.allows_websocket("http://evil:1", Some("gws:8090")));
        assert!(!p.allows_websocket("null", None));
    }
}
