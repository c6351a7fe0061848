//! The operators' web site: server-rendered pages (maud) over the same verbs as the
//! HTTP API, each going through [`crate::http::api::call_raw`], so roles, refusals
//! and the audit log are the API's own. Pages work without JavaScript; the embedded
//! `live.js` only refreshes the overview's counters. Every asset is in the binary.
//!
//! Not here: login, sessions and CSRF checks (`http::auth`, `http::login`).

mod admin;
mod dead;
pub mod i18n;
mod layout;
mod pages;
mod schedules;

use axum::extract::{Path, Query};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use serde::Deserialize;

use crate::http::SiteRef;

/// The stylesheet, light and dark.
pub const SITE_CSS: &str = include_str!("../../static/site.css");
/// The overview's live refresh.
pub const LIVE_JS: &str = include_str!("../../static/live.js");

/// The pages and their forms, behind the auth guard.
/// The site's pages and assets, for [`crate::http::start`].
pub fn pages() -> crate::http::Pages {
    crate::http::Pages {
        guarded: routes(),
        public: public_routes(),
    }
}

pub fn routes() -> Router<SiteRef> {
    Router::new()
        .route("/", get(pages::overview))
        .route("/workers", get(pages::workers))
        .route("/topic", get(pages::topic))
        .route("/task", get(pages::task))
        .route("/search", get(pages::search))
        .route("/schedules", get(schedules::list).post(schedules::add))
        .route("/schedules/{id}/pause", post(schedules::pause))
        .route("/schedules/{id}/resume", post(schedules::resume))
        .route(
            "/schedules/{id}/delete",
            get(schedules::confirm_delete).post(schedules::delete),
        )
        .route("/dead", get(dead::list))
        .route("/dead/retry", post(dead::retry))
        .route("/dead/purge", post(dead::purge))
        .route("/audit", get(admin::audit))
        .route("/users", get(admin::users).post(admin::add_user))
        .route("/users/{name}/remove", post(admin::remove_user))
        .route("/tokens", post(admin::create_token))
        .route("/tokens/{name}/revoke", post(admin::revoke_token))
}

/// The assets and the language switch, served to anyone (the login page uses them).
pub fn public_routes() -> Router<SiteRef> {
    Router::new()
        .route("/static/site.css", get(css))
        .route("/assets/site.css", get(css))
        .route("/static/live.js", get(js))
        .route("/lang/{code}", get(set_language))
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", SITE_CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", LIVE_JS)
}

fn asset(content_type: &'static str, text: &'static str) -> Response {
    let headers = [
        (header::CONTENT_TYPE, content_type),
        (header::CACHE_CONTROL, "public, max-age=300"),
    ];
    (headers, text).into_response()
}

#[derive(Debug, Deserialize)]
struct Next {
    next: Option<String>,
}

/// `/lang/{en|zh}?next=PATH`: keeps the choice in a cookie and goes back.
async fn set_language(
    Path(code): Path<String>,
    Query(next): Query<Next>,
    headers: HeaderMap,
) -> Response {
    let jar = CookieJar::from_headers(&headers);
    let target = match next.next.as_deref() {
        Some(path) if path.starts_with('/') && !path.starts_with("//") => path.to_owned(),
        _ => "/".to_owned(),
    };
    let Some(lang) = i18n::Lang::parse(&code) else {
        return Redirect::to(&target).into_response();
    };
    let value = if lang == i18n::Lang::Zh { "zh" } else { "en" };
    let cookie = Cookie::build((i18n::LANG_COOKIE, value))
        .path("/")
        .same_site(SameSite::Lax)
        .permanent()
        .build();
    (jar.add(cookie), Redirect::to(&target)).into_response()
}
