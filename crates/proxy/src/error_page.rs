//! The answers the proxy writes itself, as nginx writes them: its HTML error pages.

use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use crate::body::{full, ProxyBody};

/// An error page after which the client connection is closed (its request was not read whole).
pub fn closing_error(status: StatusCode) -> Response<ProxyBody> {
    let mut resp = error_page(status);
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

pub fn error_page(status: StatusCode) -> Response<ProxyBody> {
    let mut resp = Response::new(full(error_page_body(status)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    resp
}

/// nginx's error page for `status`.
pub fn error_page_body(status: StatusCode) -> String {
    let line = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    format!(
        "<html>\r\n<head><title>{line}</title></head>\r\n<body>\r\n<center><h1>{line}</h1></center>\r\n<hr><center>drlab-proxy</center>\r\n</body>\r\n</html>\r\n"
    )
}
