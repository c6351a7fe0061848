//! The login page, login and logout. The login form is the one page served to
//! nobody in particular; failed logins are slowed per account and address.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use maud::{html, Markup, DOCTYPE};
use serde::Deserialize;

use super::auth::SESSION_COOKIE;
use super::site::SiteRef;

pub fn routes() -> Router<SiteRef> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
}

#[derive(Debug, Deserialize)]
struct Next {
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    user: String,
    password: String,
    next: Option<String>,
}

async fn login_page(State(site): State<SiteRef>, Query(next): Query<Next>) -> Markup {
    let first_admin = site.accounts.n_users().unwrap_or(0) == 0;
    page(next.next.as_deref(), None, first_admin)
}

async fn login(
    State(site): State<SiteRef>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    jar: CookieJar,
    Form(form): Form<LoginForm>,
) -> Response {
    let address = Some(peer.ip());
    let config = &site.config;
    let lockout = Duration::from_secs(config.login_lockout_secs);
    if let Some(wait) =
        site.throttle
            .locked_for(&form.user, address, config.login_attempts, lockout)
    {
        log::warn!(
            "login refused: user={} from {} locked out for {}s more",
            form.user,
            peer.ip(),
            wait.as_secs() + 1
        );
        let message = format!(
            "Too many failed logins. Try again in {} seconds.",
            wait.as_secs() + 1
        );
        return (
            StatusCode::TOO_MANY_REQUESTS,
            page(form.next.as_deref(), Some(&message), false),
        )
            .into_response();
    }
    let accounts = site.accounts.clone();
    let (user, password) = (form.user.clone(), form.password);
    let checked = tokio::task::spawn_blocking(move || accounts.check_password(&user, &password))
        .await
        .ok()
        .flatten();
    let Some(identity) = checked else {
        site.throttle.failed(&form.user, address);
        log::warn!("login failed: user={} from {}", form.user, peer.ip());
        return (
            StatusCode::UNAUTHORIZED,
            page(
                form.next.as_deref(),
                Some("Wrong user name or password."),
                false,
            ),
        )
            .into_response();
    };
    site.throttle.succeeded(&form.user, address);
    let session = match site
        .accounts
        .open_session(&identity.name, config.session_hours)
    {
        Ok(session) => session,
        Err(error) => {
            log::error!(
                "login: session not opened for user={}: {error}",
                identity.name
            );
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "accounts database unavailable",
            )
                .into_response();
        }
    };
    log::info!("login: user={} from {}", identity.name, peer.ip());
    let cookie = Cookie::build((SESSION_COOKIE, session.id))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/")
        .build();
    (
        jar.add(cookie),
        Redirect::to(safe_next(form.next.as_deref())),
    )
        .into_response()
}

async fn logout(State(site): State<SiteRef>, jar: CookieJar) -> Response {
    if let Some(cookie) = jar.get(SESSION_COOKIE) {
        let _ = site.accounts.close_session(cookie.value());
    }
    let removal = Cookie::build((SESSION_COOKIE, "")).path("/").build();
    (jar.remove(removal), Redirect::to("/login")).into_response()
}

/// Only a path on this site: never an address elsewhere.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(path) if path.starts_with('/') && !path.starts_with("//") => path,
        _ => "/",
    }
}

fn page(next: Option<&str>, error: Option<&str>, first_admin: bool) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Log in · taskbus" }
                link rel="stylesheet" href="/assets/site.css";
            }
            body.login {
                main {
                    h1 { "taskbus" }
                    @if let Some(error) = error {
                        p.error role="alert" { (error) }
                    }
                    @if first_admin {
                        p.hint { "No user exists yet. Create the first admin on the broker's machine: "
                            code { "taskbus user add NAME --role admin --password-stdin" } }
                    }
                    form method="post" action="/login" {
                        input type="hidden" name="next" value=(safe_next(next));
                        label for="user" { "User" }
                        input #user name="user" autocomplete="username" required autofocus;
                        label for="password" { "Password" }
                        input #password name="password" type="password" autocomplete="current-password" required;
                        button type="submit" { "Log in" }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_never_leaves_the_site() {
        assert_eq!(safe_next(Some("/topics/a?x=1")), "/topics/a?x=1");
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(None), "/");
    }
}
