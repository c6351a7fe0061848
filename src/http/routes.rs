//! Resource routes over the same verbs, for people and tools: each route builds the
//! typed request and goes through [`api::call`], so it answers exactly as `POST
//! /api` would.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::Value;

use super::api::call;
use super::auth::Visitor;
use super::site::{error_reply, SiteRef};
use crate::protocol::client::{ClientRequest, ListFilter};
use crate::protocol::code;
use crate::protocol::decode::FromMap;
use crate::task::NewTask;

pub fn routes() -> Router<SiteRef> {
    Router::new()
        .route("/api/stats", get(stats))
        .route("/api/topics/{topic}/size", get(size))
        .route(
            "/api/topics/{topic}/tasks",
            post(put_tasks).get(topic_tasks),
        )
        .route("/api/tasks/{guid}", get(task))
        .route("/api/total-tasks", get(total_tasks).post(add_total_task))
        .route(
            "/api/total-tasks/{id}",
            axum::routing::patch(modify_total_task).delete(delete_total_task),
        )
        .route("/api/total-tasks/{id}/pause", post(pause_total_task))
        .route("/api/total-tasks/{id}/resume", post(resume_total_task))
        .route("/api/dead", get(dead))
        .route("/api/dead/retry", post(dead_retry))
        .route("/api/dead/purge", post(dead_purge))
}

type Caller = Extension<Visitor>;

/// The whole bus: topics, workers, scheduler and store.
#[utoipa::path(get, path = "/api/stats", tag = "resources",
    responses((status = 200, description = "the reply of `stats`", body = Value)),
    security(("bearer" = []), ("session" = [])))]
pub async fn stats(State(site): State<SiteRef>, Extension(v): Caller) -> Response {
    call(&site, &v, ClientRequest::Stats).await
}

/// The seed's `get_size`: a number, or `"invalid queue"`.
#[utoipa::path(get, path = "/api/topics/{topic}/size", tag = "resources",
    params(("topic" = String, Path, description = "the topic")),
    responses((status = 200, description = "the number of waiting tasks, or \"invalid queue\"", body = Value)),
    security(("bearer" = []), ("session" = [])))]
pub async fn size(
    State(site): State<SiteRef>,
    Extension(v): Caller,
    Path(topic): Path<String>,
) -> Response {
    call(&site, &v, ClientRequest::GetSize { topic }).await
}

/// Puts tasks on a topic: a JSON list of tasks or `{"tasks": [...]}`; each task is
/// `{"body": ..., "guid"?, "timeout"?, "max_retry"?, "priority"?}`.
#[utoipa::path(post, path = "/api/topics/{topic}/tasks", tag = "resources",
    params(("topic" = String, Path, description = "the topic")),
    request_body(content = Vec<crate::task::NewTask>, description = "a list of tasks (or {\"tasks\": [...]})", content_type = "application/json"),
    responses((status = 200, description = "the reply of `put_task`: the guids", body = Value),
              (status = 400, description = "bad tasks", body = super::site::ErrorReply)),
    security(("bearer" = []), ("session" = [])))]
pub async fn put_tasks(
    State(site): State<SiteRef>,
    Extension(v): Caller,
    Path(topic): Path<String>,
    body: Bytes,
) -> Response {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Tasks {
        List(Vec<FromMap<NewTask>>),
        Wrapped { tasks: Vec<FromMap<NewTask>> },
    }
    let tasks = match serde_json::from_slice::<Tasks>(&body) {
        Ok(Tasks::List(tasks)) | Ok(Tasks::Wrapped { tasks }) if !tasks.is_empty() => tasks,
        Ok(_) => return error_reply(code::BAD_REQUEST, "no tasks given"),
        Err(e) => {
            return error_reply(
                code::BAD_REQUEST,
                format!("expected a list of tasks or {{\"tasks\": [...]}}: {e}"),
            )
        }
    };
    let tasks = tasks
        .into_iter()
        .map(|FromMap(task)| NewTask {
            topic: Some(topic.clone()),
            ..task
        })
        .collect();
    call(&site, &v, ClientRequest::PutTask { tasks }).await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct StateFilter {
    /// ready, leased, delayed, dead ...
    pub state: Option<String>,
    /// At most this many (default 100).
    pub limit: Option<usize>,
}

/// A topic's tasks, filtered by state.
#[utoipa::path(get, path = "/api/topics/{topic}/tasks", tag = "resources",
    params(("topic" = String, Path, description = "the topic"), StateFilter),
    responses((status = 200, description = "the reply of `list_tasks`", body = Value)),
    security(("bearer" = []), ("session" = [])))]
pub async fn topic_tasks(
    State(site): State<SiteRef>,
    Extension(v): Caller,
    Path(topic): Path<String>,
    Query(filter): Query<StateFilter>,
) -> Response {
    let filter = ListFilter {
        topic: Some(topic),
        state: filter.state,
        limit: filter.limit.unwrap_or(100),
    };
    call(&site, &v, ClientRequest::ListTasks(filter)).await
}

/// One task by guid: live, or finished in the history.
#[utoipa::path(get, path = "/api/tasks/{guid}", tag = "resources",
    params(("guid" = String, Path, description = "the task's guid")),
    responses((status = 200, description = "the reply of `task_status`", body = Value),
              (status = 404, description = "no such task", body = super::site::ErrorReply)),
    security(("bearer" = []), ("session" = [])))]
pub async fn task(
    State(site): State<SiteRef>,
    Extension(v): Caller,
    Path(guid): Path<String>,
) -> Response {
    call(&site, &v, ClientRequest::TaskStatus { guid }).await
}

/// The total tasks (recurring schedules) with their next fire times.
#[utoipa::path(get, path = "/api/total-tasks", tag = "resources",
    responses((status = 200, description = "the reply of `list_tasks` without a topic", body = Value)),
    security(("bearer" = []), ("session" = [])))]
pub async fn total_tasks(State(site): State<SiteRef>, Extension(v): Caller) -> Response {
    let filter = ListFilter {
        topic: None,
        state: None,
        limit: 10_000,
    };
    call(&site, &v, ClientRequest::ListTasks(filter)).await
}

/// Adds a total task: the fields of `add_task`.
#[utoipa::path(post, path = "/api/total-tasks", tag = "resources",
    request_body(content = Value, description = "the fields of add_task", content_type = "application/json"),
    responses((status = 200, description = "the reply of `add_task`", body = Value),
              (status = 400, description = "bad fields", body = super::site::ErrorReply)),
    security(("bearer" = []), ("session" = [])))]
pub async fn add_total_task(
    State(site): State<SiteRef>,
    Extension(v): Caller,
    Json(spec): Json<Value>,
) -> Response {
    if !spec.is_object() {
        return error_reply(code::BAD_REQUEST, "add_task: expected a JSON object");
    }
    call(&site, &v, ClientRequest::AddTask { spec }).await
}

/// Changes fields of a total task.
#[utoipa::path(patch, path = "/api/total-tasks/{id}", tag = "resources",
    params(("id" = String, Path, description = "the total task's id")),
    request_body(content = Value, description = "the fields to change", content_type = "application/json"),
    responses((status = 200, description = "the reply of `modify_task`", body = Value),
              (status = 404, description = "no such total task", body = super::site::ErrorReply)),
    security(("bearer" = []), ("session" = [])))]
pub async fn modify_total_task(
    State(site): State<SiteRef>,
    Extension(v): Caller,
    Path(id): Path<String>,
    Json(patch): Json<Value>,
) -> Response {
    if !patch.is_object() {
        return error_reply(code::BAD_REQUEST, "modify_task: expected a JSON object");
    }
    call(&site, &v, ClientRequest::ModifyTask { id, patch }).await
}

/// Deletes a total task (audited; subscribers get `task_deleted`).
#[utoipa::path(delete, path = "/api/total-tasks/{id}", tag = "resources",
    params(("id" = String, Path, description = "the total task's id")),
    responses((status = 200, description = "the reply of `delete_task`", body = Value),
              (status = 404, description = "no such total task", body = super::site::ErrorReply)),
    security(("bearer" = []), ("session" = [])))]
pub async fn delete_total_task(
    State(site): State<SiteRef>,
    Extension(v): Caller,
    Path(id): Path<String>,
) -> Response {
    call(&site, &v, ClientRequest::DeleteTask { id, by: None }).await
}

/// Pauses a total task.
#[utoipa::path(post, path = "/api/total-tasks/{id}/pause", tag = "resources",
    params(("id" = String, Path, description = "the total task's id")),
    responses((status = 200, description = "the reply of `pause_task`", body = Value)),
    security(("bearer" = []), ("session" = [])))]
pub async fn pause_total_task(
    State(site): State<SiteRef>,
    Extension(v): Caller,
    Path(id): Path<String>,
) -> Response {
    call(&site, &v, ClientRequest::PauseTask { id }).await
}

/// Resumes a total task.
#[utoipa::path(post, path = "/api/total-tasks/{id}/resume", tag = "resources",
    params(("id" = String, Path, description = "the total task's id")),
    responses((status = 200, description = "the reply of `resume_task`", body = Value)),
    security(("bearer" = []), ("session" = [])))]
pub async fn resume_total_task(
    State(site): State<SiteRef>,
    Extension(v): Caller,
    Path(id): Path<String>,
) -> Response {
    call(&site, &v, ClientRequest::ResumeTask { id }).await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DeadQuery {
    /// Only this topic's dead letters.
    pub topic: Option<String>,
    /// At most this many (default 100).
    pub limit: Option<usize>,
}

/// Dead letters with the reason of each.
#[utoipa::path(get, path = "/api/dead", tag = "resources", params(DeadQuery),
    responses((status = 200, description = "the reply of `dead_list`", body = Value)),
    security(("bearer" = []), ("session" = [])))]
pub async fn dead(
    State(site): State<SiteRef>,
    Extension(v): Caller,
    Query(query): Query<DeadQuery>,
) -> Response {
    let request = ClientRequest::DeadList {
        topic: query.topic,
        limit: query.limit.unwrap_or(100),
    };
    call(&site, &v, request).await
}

/// Which dead letters: a topic (all of it) and/or a list of guids.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct DeadSelection {
    pub topic: Option<String>,
    #[serde(default)]
    pub guids: Vec<String>,
}

/// Puts dead letters back on their topics.
#[utoipa::path(post, path = "/api/dead/retry", tag = "resources",
    request_body(content = DeadSelection, content_type = "application/json"),
    responses((status = 200, description = "the reply of `dead_retry`", body = Value)),
    security(("bearer" = []), ("session" = [])))]
pub async fn dead_retry(
    State(site): State<SiteRef>,
    Extension(v): Caller,
    Json(selection): Json<DeadSelection>,
) -> Response {
    let DeadSelection { topic, guids } = selection;
    call(&site, &v, ClientRequest::DeadRetry { topic, guids }).await
}

/// Deletes dead letters for good.
#[utoipa::path(post, path = "/api/dead/purge", tag = "resources",
    request_body(content = DeadSelection, content_type = "application/json"),
    responses((status = 200, description = "the reply of `dead_purge`", body = Value)),
    security(("bearer" = []), ("session" = [])))]
pub async fn dead_purge(
    State(site): State<SiteRef>,
    Extension(v): Caller,
    Json(selection): Json<DeadSelection>,
) -> Response {
    let DeadSelection { topic, guids } = selection;
    call(&site, &v, ClientRequest::DeadPurge { topic, guids }).await
}
