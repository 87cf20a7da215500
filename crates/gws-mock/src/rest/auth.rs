//! Who is calling: the `JSESSIONID` session, or HTTP Basic credentials that open a new one
//! (docs/protocols.md §5.1); on the notification endpoint Basic credentials find the user's
//! session first. CSRF protection, when on, checks POSTs against the session's token.

use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::json;
use tlib::{AddressInfoType, Request};
use tokio::time::Instant;

use super::error::ApiError;
use crate::ctx::{random_id, Ctx};
use crate::http::{cookie, SESSION_COOKIE};
use crate::users::User;

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
pub async fn authenticate(
    ctx: &Ctx,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Authed, ApiError> {
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
    let user = basic_user(ctx, headers)?;
    // A POST cannot carry the token of a session that does not exist yet.
    if needs_csrf {
        return Err(ApiError::csrf());
    }
    open_session(ctx, user).await
}

/// The user whose Basic credentials the request carries.
fn basic_user(ctx: &Ctx, headers: &HeaderMap) -> Result<User, ApiError> {
    let Some((name, password)) = basic_credentials(headers) else {
        return Err(ApiError::access_denied());
    };
    ctx.users
        .authenticate(&name, &password)
        .ok_or_else(ApiError::bad_credentials)
}

/// Opens a session for `user`. When no other session of the user's DN is open, GWS does not
/// know the device yet and asks the SIP node (`RequestQueryAddress`): a phone registered before
/// StartContactCenterSession shows `Active`, its agent logged out.
async fn open_session(ctx: &Ctx, user: User) -> Result<Authed, ApiError> {
    let (sid, csrf_token) = (random_id(), random_id());
    let dn = user.dn.clone();
    let new_device = {
        let mut st = ctx.state();
        if st.sessions.len() >= ctx.cfg.max_sessions {
            return Err(ApiError::too_many_sessions());
        }
        ctx.journal.record(
            "session.created",
            json!({ "user": user.name, "dn": user.dn }),
        );
        st.sessions
            .create(sid.clone(), csrf_token.clone(), user, Instant::now())
    };
    ctx.metrics.logins.inc();
    if new_device {
        query_device(ctx, &dn).await;
    }
    Ok(Authed {
        sid,
        created: true,
        csrf_token,
    })
}

/// Learns the DN's status from the SIP node; without an answer the device stays `Inactive`.
async fn query_device(ctx: &Ctx, dn: &str) {
    let Some(client) = ctx.tlib() else { return };
    let request = Request::QueryAddress {
        dn: dn.to_owned(),
        info_type: AddressInfoType::AddressStatus,
    };
    let answer = client
        .request_with_timeout(request.to_message(None), ctx.cfg.request_timeout)
        .await;
    match answer {
        Ok(info) if !info.is_error() => {
            let sent = ctx.state().on_tevent(&info).0;
            ctx.metrics.notifications_sent.inc_by(sent as u64);
        }
        Ok(_) | Err(_) => tracing::debug!(%dn, "no status for the DN"),
    }
}

/// The session a CometD request belongs to: its `JSESSIONID` if known, else — for clients that
/// send Basic credentials on every request and keep no cookie (the .NET client) — the user's
/// newest session on this node, or a new one. `None`: neither. The flag says the session was
/// opened by this request (the answer sets its cookie).
pub async fn notification_session(ctx: &Ctx, headers: &HeaderMap) -> Option<(String, bool)> {
    if let Some(sid) = cookie(headers, SESSION_COOKIE) {
        if ctx.state().sessions.get(sid).is_some() {
            return Some((sid.to_owned(), false));
        }
    }
    let user = basic_user(ctx, headers).ok()?;
    if let Some(s) = ctx.state().sessions.newest_of(&user) {
        return Some((s.id.clone(), false));
    }
    open_session(ctx, user).await.ok().map(|a| (a.sid, true))
}

/// `Set-Cookie` for a session this request opened.
pub fn session_cookie(sid: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("{SESSION_COOKIE}={sid}; Path=/; HttpOnly")).ok()
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

/// The answer to an authenticated request, success or refusal. Either way it sets the session
/// cookie when this request opened the session (a refused StartContactCenterSession must not
/// lose the session it opened) and, with CSRF protection, hands out the token on GETs.
pub fn answer(
    ctx: &Ctx,
    authed: &Authed,
    method: &Method,
    result: Result<serde_json::Value, ApiError>,
) -> Response {
    let mut response = match result {
        Ok(body) => axum::Json(body).into_response(),
        Err(e) => e.into_response(),
    };
    let h = response.headers_mut();
    if authed.created {
        if let Some(v) = session_cookie(&authed.sid) {
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
