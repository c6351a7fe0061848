//! What every page shares: the request's context ([`Ctx`]: site, visitor, language),
//! the frame (navigation, search box, language links), error pages and small
//! formatting helpers.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup, DOCTYPE};
use serde::de::DeserializeOwned;

use super::i18n::Lang;
use crate::accounts::Role;
use crate::http::api::call_raw;
use crate::http::auth::Visitor;
use crate::http::SiteRef;
use crate::protocol::client::ClientRequest;

/// One page request: the site, who asks, in which language, for which address.
pub struct Ctx {
    pub site: SiteRef,
    pub visitor: Visitor,
    pub lang: Lang,
    pub uri: Uri,
}

impl FromRequestParts<SiteRef> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, site: &SiteRef) -> Result<Ctx, Response> {
        let visitor = parts
            .extensions
            .get::<Visitor>()
            .cloned()
            .ok_or_else(|| StatusCode::UNAUTHORIZED.into_response())?;
        Ok(Ctx {
            site: site.clone(),
            visitor,
            lang: Lang::of(&parts.headers),
            uri: parts.uri.clone(),
        })
    }
}

/// A verb the broker (or the role check) refused: the status and the message.
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
}

impl Ctx {
    pub fn t(&self, key: &'static str) -> &'static str {
        self.lang.t(key)
    }

    pub fn may(&self, role: Role) -> bool {
        self.visitor.may(role)
    }

    /// Sends `request` to the broker as this visitor (role check and audit line
    /// included) and reads the reply as `T`.
    pub async fn call<T: DeserializeOwned>(&self, request: ClientRequest) -> Result<T, Refusal> {
        let (status, body) = match call_raw(&self.site, &self.visitor, request).await {
            Ok(reply) => reply,
            Err(response) => return Err(refusal_of(response).await),
        };
        if !status.is_success() {
            return Err(Refusal {
                status,
                message: message_of(&body),
            });
        }
        serde_json::from_slice(&body).map_err(|error| Refusal {
            status: StatusCode::BAD_GATEWAY,
            message: format!("unexpected reply from the broker: {error}"),
        })
    }

    /// A form's action: `path` with the session's CSRF token in the query.
    pub fn action(&self, path: &str) -> String {
        match &self.visitor.csrf {
            Some(token) => {
                let sep = if path.contains('?') { '&' } else { '?' };
                format!("{path}{sep}csrf={}", encode(token))
            }
            None => path.to_owned(),
        }
    }

    /// The page of a refusal, with its status.
    pub fn refused(&self, refusal: Refusal) -> Response {
        let body = html! {
            h1 { (self.t("refused")) " (" (refusal.status.as_u16()) ")" }
            p.error role="alert" { (refusal.message) }
            p { a href="/" { (self.t("back")) } }
        };
        (refusal.status, self.page(self.t("refused"), "", body)).into_response()
    }

    /// The whole page around `body`; `active` names the navigation entry to mark.
    pub fn page(&self, title: &str, active: &str, body: Markup) -> Markup {
        let here = self.uri.path_and_query().map_or("/", |p| p.as_str());
        html! {
            (DOCTYPE)
            html lang=(self.lang.code()) {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    meta name="color-scheme" content="light dark";
                    title { (title) " · taskbus" }
                    link rel="stylesheet" href="/static/site.css";
                }
                body {
                    a.skip href="#main" { (self.t("skip")) }
                    header.top {
                        a.brand href="/" { "taskbus" }
                        (self.nav(active))
                        (self.search_box())
                        (self.account())
                    }
                    main #main { (body) }
                    footer {
                        span { (self.t("language")) ": " }
                        a href={ "/lang/en?next=" (encode(here)) } lang="en" { "English" }
                        " · "
                        a href={ "/lang/zh?next=" (encode(here)) } lang="zh-CN" { "中文" }
                    }
                }
            }
        }
    }

    fn nav(&self, active: &str) -> Markup {
        let mut entries = vec![
            ("/", "overview"),
            ("/workers", "workers"),
            ("/schedules", "schedules"),
            ("/dead", "dead"),
            ("/audit", "audit"),
        ];
        if self.may(Role::Admin) {
            entries.push(("/users", "users"));
        }
        html! {
            nav aria-label=(self.t("main_nav")) {
                ul {
                    @for (href, key) in entries {
                        li {
                            @if key == active {
                                a href=(href) aria-current="page" { (self.t(key)) }
                            } @else {
                                a href=(href) { (self.t(key)) }
                            }
                        }
                    }
                }
            }
        }
    }

    fn search_box(&self) -> Markup {
        html! {
            form.search role="search" method="get" action="/search" {
                label.hidden for="q" { (self.t("search")) }
                input #q type="search" name="q" placeholder=(self.t("search_hint"));
                button type="submit" { (self.t("search")) }
            }
        }
    }

    fn account(&self) -> Markup {
        html! {
            div.account {
                span { (self.t("signed_in_as")) " " strong { (self.visitor.identity.name) }
                    " (" (self.visitor.identity.role) ")" }
                @if self.visitor.csrf.is_some() {
                    form method="post" action=(self.action("/logout")) {
                        button.link type="submit" { (self.t("logout")) }
                    }
                }
            }
        }
    }
}

/// A redirect after a form: 303, so the browser follows with a GET.
pub fn see_other(path: &str) -> Response {
    Redirect::to(path).into_response()
}

/// `text` escaped for a URL query or path segment.
pub fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Milliseconds since the epoch as a UTC time.
pub fn time_of(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// A duration in milliseconds, short: `850 ms`, `12.5 s`, `3 min`, `2 h`.
pub fn age_of(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms} ms"),
        1_000..=59_999 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{} min", ms / 60_000),
        _ => format!("{:.1} h", ms as f64 / 3_600_000.0),
    }
}

async fn refusal_of(response: Response) -> Refusal {
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    Refusal {
        status,
        message: message_of(&body),
    }
}

/// The `error` of an error reply body, else the body as text.
fn message_of(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_times_read_well() {
        assert_eq!(age_of(850), "850 ms");
        assert_eq!(age_of(12_500), "12.5 s");
        assert_eq!(age_of(180_000), "3 min");
        assert_eq!(time_of(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(message_of(br#"{"error":"no","code":"x"}"#), "no");
    }
}
