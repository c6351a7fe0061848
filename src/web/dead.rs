//! The dead letters page: each with its reason; retry or purge one, or all of the
//! filter (purging all asks for a tick first).

use axum::extract::{Form, Query};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

use super::layout::{encode, see_other, time_of, Ctx, Refusal};
use crate::accounts::Role;
use crate::protocol::client::{ClientRequest, DeadListReply, TaskLookup};

#[derive(Debug, Deserialize)]
pub struct DeadQuery {
    topic: Option<String>,
}

/// `/dead?topic=T`: the dead letters, newest reasons shown.
pub async fn list(ctx: Ctx, Query(query): Query<DeadQuery>) -> Response {
    let topic = query.topic.filter(|t| !t.is_empty());
    let request = ClientRequest::DeadList {
        topic: topic.clone(),
        limit: 100,
    };
    let reply: DeadListReply = match ctx.call(request).await {
        Ok(reply) => reply,
        Err(refusal) => return ctx.refused(refusal),
    };
    let operator = ctx.may(Role::Operator);
    let scope = topic.clone().unwrap_or_default();
    let body = html! {
        h1 { (ctx.t("dead")) " (" (ctx.t("total")) ": " (reply.total) ")" }
        form.filters method="get" action="/dead" {
            label for="dead-topic" { (ctx.t("topic")) }
            input #dead-topic name="topic" value=(scope);
            button type="submit" { (ctx.t("filter")) }
        }
        @if reply.tasks.is_empty() { p #no-dead { (ctx.t("no_dead")) } } @else {
            div.scroll { table #dead {
                thead { tr {
                    th scope="col" { (ctx.t("guid")) }
                    th scope="col" { (ctx.t("topic")) }
                    th.num scope="col" { (ctx.t("attempt")) }
                    th scope="col" { (ctx.t("reason")) }
                    th scope="col" { (ctx.t("created")) }
                    @if operator { th scope="col" { (ctx.t("actions")) } }
                } }
                tbody { @for task in &reply.tasks {
                    @if let TaskLookup::Live(t) = task {
                        tr data-guid=(t.guid) {
                            td { a href={ "/task?guid=" (encode(&t.guid)) } { code { (t.guid) } } }
                            td { (t.topic) }
                            td.num { (t.attempt) }
                            td.err { (t.last_error.as_deref().unwrap_or("")) }
                            td { (time_of(t.created_at_ms)) }
                            @if operator { td.actions {
                                form method="post" action=(ctx.action("/dead/retry")) {
                                    input type="hidden" name="guid" value=(t.guid);
                                    button type="submit" aria-label={ (ctx.t("retry")) " " (t.guid) } { (ctx.t("retry")) }
                                }
                                form method="post" action=(ctx.action("/dead/purge")) {
                                    input type="hidden" name="guid" value=(t.guid);
                                    button.danger type="submit" aria-label={ (ctx.t("purge")) " " (t.guid) } { (ctx.t("purge")) }
                                }
                            } }
                        }
                    }
                } }
            } }
            @if operator {
                div.bulk {
                    form method="post" action=(ctx.action("/dead/retry")) {
                        input type="hidden" name="topic" value=(scope);
                        input type="hidden" name="all" value="1";
                        button type="submit" { (ctx.t("retry_all")) }
                    }
                    form method="post" action=(ctx.action("/dead/purge")) {
                        input type="hidden" name="topic" value=(scope);
                        input type="hidden" name="all" value="1";
                        label.check { input type="checkbox" name="confirm" value="1" required; " " (ctx.t("confirm_purge")) }
                        button.danger type="submit" { (ctx.t("purge_all")) }
                    }
                }
            }
        }
    };
    ctx.page(ctx.t("dead"), "dead", body).into_response()
}

/// One dead letter (`guid`), or all of a topic (`all` with `topic`, empty for every
/// topic).
#[derive(Debug, Deserialize)]
pub struct Selection {
    guid: Option<String>,
    topic: Option<String>,
    all: Option<String>,
    confirm: Option<String>,
}

impl Selection {
    /// The topic and guids of the verb; `None` when the form names nothing.
    fn target(self) -> Option<(Option<String>, Vec<String>)> {
        let topic = self.topic.filter(|t| !t.is_empty());
        match (self.guid.filter(|g| !g.is_empty()), self.all.is_some()) {
            (Some(guid), _) => Some((topic, vec![guid])),
            (None, true) => Some((topic, Vec::new())),
            (None, false) => None,
        }
    }
}

fn nothing_chosen(ctx: &Ctx, why: &str) -> Response {
    ctx.refused(Refusal {
        status: axum::http::StatusCode::BAD_REQUEST,
        message: why.to_owned(),
    })
}

fn back_to_list(topic: &Option<String>) -> Response {
    match topic {
        Some(topic) => see_other(&format!("/dead?topic={}", encode(topic))),
        None => see_other("/dead"),
    }
}

/// `POST /dead/retry`: back to their queues.
pub async fn retry(ctx: Ctx, Form(selection): Form<Selection>) -> Response {
    let Some((topic, guids)) = selection.target() else {
        return nothing_chosen(&ctx, "name a guid, or all");
    };
    let request = ClientRequest::DeadRetry {
        topic: topic.clone(),
        guids,
    };
    match ctx.call::<serde_json::Value>(request).await {
        Ok(_) => back_to_list(&topic),
        Err(refusal) => ctx.refused(refusal),
    }
}

/// `POST /dead/purge`: gone for good; all of them only with the tick.
pub async fn purge(ctx: Ctx, Form(selection): Form<Selection>) -> Response {
    if selection.guid.is_none() && selection.confirm.is_none() {
        return nothing_chosen(
            &ctx,
            "purging every dead letter needs the confirmation tick",
        );
    }
    let Some((topic, guids)) = selection.target() else {
        return nothing_chosen(&ctx, "name a guid, or all");
    };
    let request = ClientRequest::DeadPurge {
        topic: topic.clone(),
        guids,
    };
    match ctx.call::<serde_json::Value>(request).await {
        Ok(_) => back_to_list(&topic),
        Err(refusal) => ctx.refused(refusal),
    }
}
