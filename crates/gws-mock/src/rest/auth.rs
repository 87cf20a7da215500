//! Who is calling: the `JSESSIONID` session, or HTTP Basic credentials that open a new one
//! (docs/protocols.md §5.1). CSRF protection, when on, checks POSTs against the session's token.

use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::json;
use tokio::time::Instant;

use super::error::ApiError;
use crate::ctx::{random_id, Ctx};
use crate::http::{cookie, SESSION_COOKIE};

const CSRF_HEADER: &str = "X-CSRF-TOKEN";

/// An authenticated request.
#[derive(Debug)]
pub struct Authed {
    /// The session id.
    pub sid: String,
    /// The session was created by this request (the response sets the cookie).
    pub created: bool,
    pub csrf_token: String,
}

/// Finds or creates the caller's session. A session is only created when everything else about
/// the request was already checked (callers validate the body first), so a refused request never
/// leaves a session behind.
pub fn authenticate(ctx: &Ctx, method: &Method, headers: &HeaderMap) -> Result<Authed, ApiError> {
    let now = Instant::now();
    let csrf_given = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    let needs_csrf = ctx.cfg.csrf && *method != Method::GET;
    if let Some(sid) = cookie(headers, SESSION_COOKIE) {
        let mut st = ctx.state();
        if let Some(s) = st.sessions.get_mut(sid) {
            if needs_csrf && csrf_given != Some(s.csrf_token.as_str()) {
                return Err(ApiError::csrf());
            }
            s.last_seen = now;
            return Ok(Authed {
                sid: s.id.clone(),
                created: false,
                csrf_token: s.csrf_token.clone(),
            });
        }
    }
    let Some((name, password)) = basic_credentials(headers) else {
        return Err(ApiError::access_denied());
    };
    let Some(user) = ctx.users.authenticate(&name, &password) else {
        return Err(ApiError::bad_credentials());
    };
    // A POST cannot carry the token of a session that does not exist yet.
    if needs_csrf {
        return Err(ApiError::csrf());
    }
    let mut st = ctx.state();
    if st.sessions.len() >= ctx.cfg.max_sessions {
        return Err(ApiError::too_many_sessions());
    }
    let (sid, csrf_token) = (random_id(), random_id());
    ctx.journal.record(
        "session.created",
        json!({ "user": user.name, "dn": user.dn }),
    );
    st.sessions
        .create(sid.clone(), csrf_token.clone(), user, now);
    ctx.metrics.logins.inc();
    Ok(Authed {
        sid,
        created: true,
        csrf_token,
    })
}

/// `Authorization: Basic base64(name:password)`.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (name, password) = text.split_once(':')?;
    Some((name.to_owned(), password.to_owned()))
}

/// A successful answer: sets the session cookie for a new session and, with CSRF protection,
/// hands out the token on GETs.
pub fn respond(ctx: &Ctx, authed: &Authed, method: &Method, body: serde_json::Value) -> Response {
    let mut response = axum::Json(body).into_response();
    let h = response.headers_mut();
    if authed.created {
        let cookie = format!("{SESSION_COOKIE}={}; Path=/; HttpOnly", authed.sid);
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            h.append(header::SET_COOKIE, v);
        }
    }
    if ctx.cfg.csrf && *method == Method::GET {
        h.insert("X-CSRF-HEADER", HeaderValue::from_static(CSRF_HEADER));
        if let Ok(v) = HeaderValue::from_str(&authed.csrf_token) {
            h.insert(CSRF_HEADER, v);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_decoded_strictly() {
        let mut h = HeaderMap::new();
        assert_eq!(basic_credentials(&h), None);
        // "agent7001:password"
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic YWdlbnQ3MDAxOnBhc3N3b3Jk"),
        );
        assert_eq!(
            basic_credentials(&h),
            Some(("agent7001".into(), "password".into()))
        );
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert_eq!(basic_credentials(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(basic_credentials(&h), None);
        // "nocolon"
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic bm9jb2xvbg=="),
        );
        assert_eq!(basic_credentials(&h), None);
    }
}
