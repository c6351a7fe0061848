//! The audit log (every role) and users and tokens (admin only: the pages and
//! their forms refuse anyone else with 403).

use axum::extract::{Form, Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde::Deserialize;

use super::layout::{encode, see_other, time_of, Ctx, Refusal};
use crate::accounts::{AccountsError, Role};

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    before: Option<i64>,
}

const AUDIT_PAGE: usize = 100;

/// `/audit?before=ID`: the audit log, newest first, a hundred lines a page.
pub async fn audit(ctx: Ctx, Query(query): Query<AuditQuery>) -> Response {
    let lines = match ctx.site.accounts.audit_lines(AUDIT_PAGE, query.before) {
        Ok(lines) => lines,
        Err(error) => return ctx.refused(store_refusal(error)),
    };
    let body = html! {
        h1 { (ctx.t("audit")) }
        @if lines.is_empty() { p { (ctx.t("no_audit")) } } @else {
            div.scroll { table #audit {
                thead { tr {
                    th scope="col" { (ctx.t("when")) }
                    th scope="col" { (ctx.t("who")) }
                    th scope="col" { (ctx.t("action")) }
                    th scope="col" { (ctx.t("detail")) }
                } }
                tbody { @for line in &lines { tr {
                    td { (time_of(line.at_ms)) }
                    td { (line.who) }
                    td { code { (line.action) } }
                    td { (line.detail) }
                } } }
            } }
            @if lines.len() == AUDIT_PAGE {
                @if let Some(last) = lines.last() {
                    p { a href={ "/audit?before=" (last.id) } { (ctx.t("older")) } }
                }
            }
        }
    };
    ctx.page(ctx.t("audit"), "audit", body).into_response()
}

fn store_refusal(error: AccountsError) -> Refusal {
    let status = match error {
        AccountsError::UserExists(_) | AccountsError::TokenExists(_) => StatusCode::CONFLICT,
        AccountsError::NoSuchUser(_) | AccountsError::NoSuchToken(_) => StatusCode::NOT_FOUND,
        AccountsError::BadName(_) | AccountsError::ShortPassword => StatusCode::BAD_REQUEST,
        AccountsError::Sqlite(_) | AccountsError::Hash(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    Refusal {
        status,
        message: error.to_string(),
    }
}

/// The 403 page unless the visitor is an admin.
fn admin_only(ctx: &Ctx, what: &str) -> Option<Response> {
    if ctx.may(Role::Admin) {
        return None;
    }
    log::warn!(
        "web refused: user={} role={} may not {what} (needs admin)",
        ctx.visitor.identity.name,
        ctx.visitor.identity.role
    );
    Some(ctx.refused(Refusal {
        status: StatusCode::FORBIDDEN,
        message: format!("{what} needs the admin role"),
    }))
}

/// `/users`: users and tokens (admin).
pub async fn users(ctx: Ctx) -> Response {
    if let Some(refusal) = admin_only(&ctx, "the users page") {
        return refusal;
    }
    users_page(&ctx, None)
}

fn users_page(ctx: &Ctx, new_token: Option<(&str, &str)>) -> Response {
    let users = ctx.site.accounts.list_users();
    let tokens = ctx.site.accounts.list_tokens();
    let (users, tokens) = match (users, tokens) {
        (Ok(users), Ok(tokens)) => (users, tokens),
        (Err(error), _) | (_, Err(error)) => return ctx.refused(store_refusal(error)),
    };
    let body = html! {
        h1 { (ctx.t("users")) }
        @if let Some((name, secret)) = new_token {
            div.notice role="status" {
                p { (ctx.t("token_once")) " " strong { (name) } }
                pre #new-token { (secret) }
            }
        }
        div.scroll { table #users {
            thead { tr {
                th scope="col" { (ctx.t("user")) }
                th scope="col" { (ctx.t("role")) }
                th scope="col" { (ctx.t("actions")) }
            } }
            tbody { @for user in &users { tr {
                td { (user.name) }
                td { (user.role) }
                td.actions { form method="post" action=(ctx.action(&format!("/users/{}/remove", encode(&user.name)))) {
                    button.danger type="submit" aria-label={ (ctx.t("remove")) " " (user.name) } { (ctx.t("remove")) }
                } }
            } } }
        } }
        (user_form(ctx))
        h2 { (ctx.t("tokens")) }
        div.scroll { table #tokens {
            thead { tr {
                th scope="col" { (ctx.t("name")) }
                th scope="col" { (ctx.t("role")) }
                th scope="col" { (ctx.t("last_used")) }
                th scope="col" { (ctx.t("actions")) }
            } }
            tbody { @for token in &tokens { tr {
                td { (token.name) }
                td { (token.role) }
                td { (token.last_used_ms.map(time_of).unwrap_or_else(|| ctx.t("never").to_owned())) }
                td.actions { form method="post" action=(ctx.action(&format!("/tokens/{}/revoke", encode(&token.name)))) {
                    button.danger type="submit" aria-label={ (ctx.t("revoke")) " " (token.name) } { (ctx.t("revoke")) }
                } }
            } } }
        } }
        (token_form(ctx))
    };
    ctx.page(ctx.t("users"), "users", body).into_response()
}

fn role_select(ctx: &Ctx, id: &str) -> Markup {
    html! {
        label for=(id) { (ctx.t("role")) }
        select id=(id) name="role" {
            @for role in Role::ALL { option value=(role.as_str()) { (role.as_str()) } }
        }
    }
}

fn user_form(ctx: &Ctx) -> Markup {
    html! {
        h2 { (ctx.t("add_user")) }
        form.grid method="post" action=(ctx.action("/users")) {
            label for="u-name" { (ctx.t("user")) }
            input #u-name name="name" required autocomplete="off";
            (role_select(ctx, "u-role"))
            label for="u-password" { (ctx.t("password")) }
            input #u-password name="password" type="password" minlength="8" required autocomplete="new-password";
            button type="submit" { (ctx.t("add")) }
        }
    }
}

fn token_form(ctx: &Ctx) -> Markup {
    html! {
        h2 { (ctx.t("create_token")) }
        form.grid method="post" action=(ctx.action("/tokens")) {
            label for="t-name" { (ctx.t("token_name")) }
            input #t-name name="name" required autocomplete="off";
            (role_select(ctx, "t-role"))
            button type="submit" { (ctx.t("create_token")) }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct NewUser {
    name: String,
    role: String,
    password: String,
}

fn role_of(text: &str) -> Result<Role, Refusal> {
    text.parse().map_err(|message| Refusal {
        status: StatusCode::BAD_REQUEST,
        message,
    })
}

/// `POST /users` (admin).
pub async fn add_user(ctx: Ctx, Form(form): Form<NewUser>) -> Response {
    if let Some(refusal) = admin_only(&ctx, "adding users") {
        return refusal;
    }
    let role = match role_of(&form.role) {
        Ok(role) => role,
        Err(refusal) => return ctx.refused(refusal),
    };
    let accounts = ctx.site.accounts.clone();
    let name = form.name.clone();
    let added =
        tokio::task::spawn_blocking(move || accounts.add_user(&name, role, &form.password)).await;
    match added {
        Ok(Ok(())) => {
            let detail = format!("user={} role={role}", form.name);
            ctx.site
                .audit(&ctx.visitor.identity.name, "user_add", &detail);
            see_other("/users")
        }
        Ok(Err(error)) => ctx.refused(store_refusal(error)),
        Err(_) => ctx.refused(store_refusal(AccountsError::Hash(
            "hashing task failed".into(),
        ))),
    }
}

/// `POST /users/{name}/remove` (admin).
pub async fn remove_user(ctx: Ctx, Path(name): Path<String>) -> Response {
    if let Some(refusal) = admin_only(&ctx, "removing users") {
        return refusal;
    }
    match ctx.site.accounts.remove_user(&name) {
        Ok(()) => {
            let detail = format!("user={name}");
            ctx.site
                .audit(&ctx.visitor.identity.name, "user_remove", &detail);
            see_other("/users")
        }
        Err(error) => ctx.refused(store_refusal(error)),
    }
}

#[derive(Debug, Deserialize)]
pub struct NewToken {
    name: String,
    role: String,
}

/// `POST /tokens` (admin): the answer shows the secret this once.
pub async fn create_token(ctx: Ctx, Form(form): Form<NewToken>) -> Response {
    if let Some(refusal) = admin_only(&ctx, "creating tokens") {
        return refusal;
    }
    let role = match role_of(&form.role) {
        Ok(role) => role,
        Err(refusal) => return ctx.refused(refusal),
    };
    match ctx.site.accounts.create_token(&form.name, role) {
        Ok(secret) => {
            let detail = format!("token={} role={role}", form.name);
            ctx.site
                .audit(&ctx.visitor.identity.name, "token_create", &detail);
            users_page(&ctx, Some((&form.name, &secret)))
        }
        Err(error) => ctx.refused(store_refusal(error)),
    }
}

/// `POST /tokens/{name}/revoke` (admin).
pub async fn revoke_token(ctx: Ctx, Path(name): Path<String>) -> Response {
    if let Some(refusal) = admin_only(&ctx, "revoking tokens") {
        return refusal;
    }
    match ctx.site.accounts.revoke_token(&name) {
        Ok(()) => {
            let detail = format!("token={name}");
            ctx.site
                .audit(&ctx.visitor.identity.name, "token_revoke", &detail);
            see_other("/users")
        }
        Err(error) => ctx.refused(store_refusal(error)),
    }
}
