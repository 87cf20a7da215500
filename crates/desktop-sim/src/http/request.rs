//! One HTTP/1.1 request as bytes, written into a buffer the caller reuses: the request line and
//! exactly the headers a browser sends GWS — `Host`, `Authorization` on the login probe, the
//! desktop's cookies, the CSRF token on POSTs, and a JSON body. Pure: no I/O.

use std::io::Write;

use crate::cookies::CookieJar;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

/// A request to encode. The values come from the desktop's configuration and from header values
/// the server sent (cookies, the CSRF token), which cannot hold CR or LF.
pub struct Request<'a> {
    pub method: Method,
    /// Absolute path with query.
    pub path: &'a str,
    /// `host:port`.
    pub authority: &'a str,
    /// The whole `Authorization` value (`Basic …`).
    pub authorization: Option<&'a str>,
    pub cookies: &'a CookieJar,
    /// `(header name, token)`.
    pub csrf: Option<(&'a str, &'a str)>,
    /// A JSON body (POST).
    pub body: Option<&'a [u8]>,
}

impl Request<'_> {
    /// Replaces the contents of `out` with the request.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.clear();
        let method = match self.method {
            Method::Get => "GET",
            Method::Post => "POST",
        };
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            "{method} {} HTTP/1.1\r\nHost: {}\r\n",
            self.path, self.authority
        );
        if let Some(auth) = self.authorization {
            let _ = write!(out, "Authorization: {auth}\r\n");
        }
        if !self.cookies.is_empty() {
            out.extend_from_slice(b"Cookie: ");
            self.cookies.write_pairs(out);
            out.extend_from_slice(b"\r\n");
        }
        if let Some((name, token)) = self.csrf {
            let _ = write!(out, "{name}: {token}\r\n");
        }
        match self.body {
            Some(body) => {
                let _ = write!(
                    out,
                    "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                out.extend_from_slice(body);
            }
            None => out.extend_from_slice(b"\r\n"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_host_credentials_cookies_csrf_and_body() {
        let mut out = Vec::new();
        let empty = CookieJar::new();
        Request {
            method: Method::Get,
            path: "/api/v2/me",
            authority: "127.0.0.1:8080",
            authorization: Some("Basic YTpi"),
            cookies: &empty,
            csrf: None,
            body: None,
        }
        .encode(&mut out);
        assert_eq!(
            out,
            b"GET /api/v2/me HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nAuthorization: Basic YTpi\r\n\r\n"
        );
        let mut jar = CookieJar::new();
        jar.store("JSESSIONID=s1; Path=/");
        jar.store("BAYEUX_BROWSER=b1");
        Request {
            method: Method::Post,
            path: "/api/v2/me",
            authority: "127.0.0.1:8080",
            authorization: None,
            cookies: &jar,
            csrf: Some(("X-CSRF-TOKEN", "t1")),
            body: Some(b"{}"),
        }
        .encode(&mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "POST /api/v2/me HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\
             Cookie: BAYEUX_BROWSER=b1; JSESSIONID=s1\r\nX-CSRF-TOKEN: t1\r\n\
             Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        );
    }
}
