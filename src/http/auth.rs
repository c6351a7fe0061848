//! Who is calling: a bearer token, a session cookie, or (with `[http] auth = false`
//! on loopback) nobody in particular. The guard puts the [`Visitor`] in the request's
//! extensions and refuses what it cannot place: 401 for the API, a redirect to the
//! login page for a browser. A session's state-changing requests carry its CSRF token.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;

use super::site::{error_reply, SiteRef, UNAUTHORIZED};
use crate::accounts::{Identity, Role};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "taskbus_session";
/// The header (or query parameter `csrf`) that carries a session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The caller of one request.
#[derive(Debug, Clone)]
pub struct Visitor {
    pub identity: Identity,
    /// The session's CSRF token, for the forms of the pages (none for tokens).
    pub csrf: Option<String>,
    pub address: Option<IpAddr>,
}

impl Visitor {
    /// Whether this caller may do what `needed` allows.
    pub fn may(&self, needed: Role) -> bool {
        self.identity.role.allows(needed)
    }
}

/// The auth guard of every route but the public ones.
pub async fn guard(State(site): State<SiteRef>, mut request: Request, next: Next) -> Response {
    let address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    let parts = Parts {
        headers: request.headers().clone(),
        method: request.method().clone(),
        uri: request.uri().clone(),
    };
    let visitor = match identify(&site, &parts, address).await {
        Ok(visitor) => visitor,
        Err(refusal) => return refusal,
    };
    request.extensions_mut().insert(visitor);
    next.run(request).await
}

/// What the guard reads of a request (owned, so that it may be held across awaits).
struct Parts {
    headers: axum::http::HeaderMap,
    method: Method,
    uri: axum::http::Uri,
}

async fn identify(
    site: &SiteRef,
    request: &Parts,
    address: Option<IpAddr>,
) -> Result<Visitor, Response> {
    if !site.config.auth {
        return Ok(Visitor {
            identity: Identity {
                name: "anonymous".into(),
                role: Role::Admin,
            },
            csrf: None,
            address,
        });
    }
    let headers = &request.headers;
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let secret = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|s| s.trim().to_owned());
        let accounts = site.accounts.clone();
        let found = match secret {
            Some(secret) => tokio::task::spawn_blocking(move || accounts.check_token(&secret))
                .await
                .ok()
                .flatten(),
            None => None,
        };
        return match found {
            Some(identity) => Ok(Visitor {
                identity,
                csrf: None,
                address,
            }),
            None => {
                log::warn!(
                    "http refused: bad bearer token from {} for {}",
                    show(address),
                    request.uri.path()
                );
                Err(error_reply(UNAUTHORIZED, "invalid or revoked token"))
            }
        };
    }
    let jar = CookieJar::from_headers(headers);
    let session = jar.get(SESSION_COOKIE).and_then(|cookie| {
        let id = cookie.value().to_owned();
        site.accounts.session(&id)
    });
    let Some(session) = session else {
        return Err(unauthenticated(request));
    };
    if !is_safe(&request.method) && !csrf_matches(request, &session.csrf) {
        log::warn!(
            "http refused: missing or wrong csrf token from {} user={} for {}",
            show(address),
            session.identity.name,
            request.uri.path()
        );
        return Err(error_reply(
            super::site::FORBIDDEN,
            "missing or wrong CSRF token: reload the page and try again",
        ));
    }
    Ok(Visitor {
        identity: session.identity,
        csrf: Some(session.csrf),
        address,
    })
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn csrf_matches(request: &Parts, expected: &str) -> bool {
    let from_header = request
        .headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok());
    let from_query = request.uri.query().and_then(|query| {
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == "csrf")
            .map(|(_, value)| value.into_owned())
    });
    from_header == Some(expected) || from_query.as_deref() == Some(expected)
}

/// 401 for the API and metrics; a redirect to the login page for a browser.
fn unauthenticated(request: &Parts) -> Response {
    let path = request.uri.path();
    if path.starts_with("/api") || path == "/metrics" {
        return error_reply(
            UNAUTHORIZED,
            "log in or send Authorization: Bearer TOKEN (taskbus token create NAME)",
        );
    }
    let next = request
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let target = format!(
        "/login?next={}",
        url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
    );
    Redirect::to(&target).into_response()
}

pub fn show(address: Option<IpAddr>) -> String {
    address.map_or_else(|| "unknown".into(), |a| a.to_string())
}

/// Headers every answer carries: no framing, no sniffing, no referrer off the site.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    response
}
