//! Users, tokens and the audit log over HTTP (admin; the audit log for viewers).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Extension, Json, Router};
use serde::Deserialize;

use super::auth::Visitor;
use super::site::{error_reply, SiteRef, CONFLICT, FORBIDDEN};
use crate::accounts::{AccountsError, Role};
use crate::protocol::code;

pub fn routes() -> Router<SiteRef> {
    Router::new()
        .route("/api/users", get(list_users).post(add_user))
        .route("/api/users/{name}", delete(remove_user))
        .route("/api/tokens", get(list_tokens).post(create_token))
        .route("/api/tokens/{name}", delete(revoke_token))
        .route("/api/audit", get(audit))
}

/// The refusal to send when the visitor is not an admin.
fn refuse_unless_admin(visitor: &Visitor, what: &str) -> Option<Response> {
    if visitor.may(Role::Admin) {
        return None;
    }
    log::warn!(
        "http refused: user={} role={} may not {what} (needs admin)",
        visitor.identity.name,
        visitor.identity.role
    );
    Some(error_reply(
        FORBIDDEN,
        format!("{what} needs the admin role"),
    ))
}

fn accounts_error(error: AccountsError) -> Response {
    match error {
        AccountsError::UserExists(_) | AccountsError::TokenExists(_) => {
            error_reply(CONFLICT, error.to_string())
        }
        AccountsError::NoSuchUser(_) | AccountsError::NoSuchToken(_) => {
            error_reply(code::NOT_FOUND, error.to_string())
        }
        AccountsError::BadName(_) | AccountsError::ShortPassword => {
            error_reply(code::BAD_REQUEST, error.to_string())
        }
        AccountsError::Sqlite(_) | AccountsError::Hash(_) => {
            log::error!("accounts: {error}");
            error_reply(code::STORE_UNAVAILABLE, error.to_string())
        }
    }
}

/// The users (admin).
#[utoipa::path(get, path = "/api/users", tag = "accounts",
    responses((status = 200, description = "users with their roles", body = serde_json::Value),
              (status = 403, description = "not an admin", body = super::site::ErrorReply)),
    security(("bearer" = []), ("session" = [])))]
pub async fn list_users(State(site): State<SiteRef>, Extension(v): Extension<Visitor>) -> Response {
    if let Some(refusal) = refuse_unless_admin(&v, "listing users") {
        return refusal;
    }
    match site.accounts.list_users() {
        Ok(users) => Json(users).into_response(),
        Err(error) => accounts_error(error),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewUser {
    pub name: String,
    /// viewer, worker, operator or admin
    pub role: String,
    pub password: String,
}

/// Adds a user (admin).
#[utoipa::path(post, path = "/api/users", tag = "accounts", request_body = NewUser,
    responses((status = 201, description = "added"),
              (status = 400, description = "bad name, role or password", body = super::site::ErrorReply),
              (status = 409, description = "the name exists", body = super::site::ErrorReply)),
    security(("bearer" = []), ("session" = [])))]
pub async fn add_user(
    State(site): State<SiteRef>,
    Extension(v): Extension<Visitor>,
    Json(user): Json<NewUser>,
) -> Response {
    if let Some(refusal) = refuse_unless_admin(&v, "adding users") {
        return refusal;
    }
    let role: Role = match user.role.parse() {
        Ok(role) => role,
        Err(message) => return error_reply(code::BAD_REQUEST, message),
    };
    let accounts = site.accounts.clone();
    let name = user.name.clone();
    let added =
        tokio::task::spawn_blocking(move || accounts.add_user(&name, role, &user.password)).await;
    match added {
        Ok(Ok(())) => {
            site.audit(
                &v.identity.name,
                "user_add",
                &format!("user={} role={role}", user.name),
            );
            StatusCode::CREATED.into_response()
        }
        Ok(Err(error)) => accounts_error(error),
        Err(_) => error_reply(code::STORE_UNAVAILABLE, "password hashing failed"),
    }
}

/// Removes a user and their sessions (admin).
#[utoipa::path(delete, path = "/api/users/{name}", tag = "accounts",
    params(("name" = String, Path, description = "the user")),
    responses((status = 204, description = "removed"),
              (status = 404, description = "no such user", body = super::site::ErrorReply)),
    security(("bearer" = []), ("session" = [])))]
pub async fn remove_user(
    State(site): State<SiteRef>,
    Extension(v): Extension<Visitor>,
    Path(name): Path<String>,
) -> Response {
    if let Some(refusal) = refuse_unless_admin(&v, "removing users") {
        return refusal;
    }
    match site.accounts.remove_user(&name) {
        Ok(()) => {
            site.audit(&v.identity.name, "user_remove", &format!("user={name}"));
            StatusCode::NO_CONTENT.into_response()
        }
        Err(error) => accounts_error(error),
    }
}

/// The API tokens, without their secrets (admin).
#[utoipa::path(get, path = "/api/tokens", tag = "accounts",
    responses((status = 200, description = "tokens with their roles", body = serde_json::Value)),
    security(("bearer" = []), ("session" = [])))]
pub async fn list_tokens(
    State(site): State<SiteRef>,
    Extension(v): Extension<Visitor>,
) -> Response {
    if let Some(refusal) = refuse_unless_admin(&v, "listing tokens") {
        return refusal;
    }
    match site.accounts.list_tokens() {
        Ok(tokens) => Json(tokens).into_response(),
        Err(error) => accounts_error(error),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewToken {
    pub name: String,
    /// viewer, worker, operator or admin
    pub role: String,
}

/// Creates a token; the reply holds its secret, shown this once (admin).
#[utoipa::path(post, path = "/api/tokens", tag = "accounts", request_body = NewToken,
    responses((status = 201, description = "{\"name\", \"token\"}", body = serde_json::Value),
              (status = 409, description = "the name exists", body = super::site::ErrorReply)),
    security(("bearer" = []), ("session" = [])))]
pub async fn create_token(
    State(site): State<SiteRef>,
    Extension(v): Extension<Visitor>,
    Json(token): Json<NewToken>,
) -> Response {
    if let Some(refusal) = refuse_unless_admin(&v, "creating tokens") {
        return refusal;
    }
    let role: Role = match token.role.parse() {
        Ok(role) => role,
        Err(message) => return error_reply(code::BAD_REQUEST, message),
    };
    match site.accounts.create_token(&token.name, role) {
        Ok(secret) => {
            let detail = format!("token={} role={role}", token.name);
            site.audit(&v.identity.name, "token_create", &detail);
            let body = serde_json::json!({ "name": token.name, "token": secret });
            (StatusCode::CREATED, Json(body)).into_response()
        }
        Err(error) => accounts_error(error),
    }
}

/// Revokes a token at once (admin).
#[utoipa::path(delete, path = "/api/tokens/{name}", tag = "accounts",
    params(("name" = String, Path, description = "the token's name")),
    responses((status = 204, description = "revoked"),
              (status = 404, description = "no such token", body = super::site::ErrorReply)),
    security(("bearer" = []), ("session" = [])))]
pub async fn revoke_token(
    State(site): State<SiteRef>,
    Extension(v): Extension<Visitor>,
    Path(name): Path<String>,
) -> Response {
    if let Some(refusal) = refuse_unless_admin(&v, "revoking tokens") {
        return refusal;
    }
    match site.accounts.revoke_token(&name) {
        Ok(()) => {
            site.audit(&v.identity.name, "token_revoke", &format!("token={name}"));
            StatusCode::NO_CONTENT.into_response()
        }
        Err(error) => accounts_error(error),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct AuditQuery {
    /// At most this many lines (default 100, at most 1000).
    pub limit: Option<usize>,
    /// Lines older than this id.
    pub before: Option<i64>,
}

/// The audit log, newest first.
#[utoipa::path(get, path = "/api/audit", tag = "accounts", params(AuditQuery),
    responses((status = 200, description = "audit lines", body = serde_json::Value)),
    security(("bearer" = []), ("session" = [])))]
pub async fn audit(
    State(site): State<SiteRef>,
    Extension(_v): Extension<Visitor>,
    Query(query): Query<AuditQuery>,
) -> Response {
    let limit = query.limit.unwrap_or(100).min(1000);
    match site.accounts.audit_lines(limit, query.before) {
        Ok(lines) => Json(lines).into_response(),
        Err(error) => accounts_error(error),
    }
}
