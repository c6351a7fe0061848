//! The reading pages: overview, workers, a topic, a task, search.

use axum::extract::Query;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::Value;

use super::layout::{age_of, encode, see_other, time_of, Ctx};
use crate::protocol::client::{
    ClientRequest, ListFilter, StatsReply, TaskInfo, TaskLookup, TopicStats,
};

/// The counters of the overview, in their column order (the live script fills the
/// cells by these names).
pub const COUNTERS: [&str; 7] = [
    "ready", "pending", "delayed", "leased", "done", "failed", "dead",
];

/// A worker silent for longer than this is flagged as stale.
const STALE_MS: u64 = 5_000;

fn counter(stats: &TopicStats, name: &str) -> u64 {
    match name {
        "ready" => stats.ready as u64,
        "pending" => stats.pending as u64,
        "delayed" => stats.delayed as u64,
        "leased" => stats.leased as u64,
        "done" => stats.done,
        "failed" => stats.failed,
        _ => stats.dead as u64,
    }
}

/// `/`: every topic's counters, refreshed live by `live.js`.
pub async fn overview(ctx: Ctx) -> Response {
    let stats: StatsReply = match ctx.call(ClientRequest::Stats).await {
        Ok(stats) => stats,
        Err(refusal) => return ctx.refused(refusal),
    };
    let body = html! {
        h1 { (ctx.t("overview")) }
        div.live {
            label for="interval" { (ctx.t("refresh")) }
            select #interval data-off=(ctx.t("off")) {
                option value="1000" { "1 s" }
                option value="2000" { "2 s" }
                option value="5000" { "5 s" }
                option value="15000" { "15 s" }
                option value="0" { (ctx.t("off")) }
            }
            span #live-state role="status" {}
        }
        div.scroll {
            table #topics {
                caption { (ctx.t("topics")) " · " (ctx.t("store")) ": " (stats.store.kind) " (" (stats.store.state) ")" }
                thead { tr {
                    th scope="col" { (ctx.t("topic")) }
                    @for name in COUNTERS { th.num scope="col" { (ctx.t(name)) } }
                } }
                tbody {
                    @for (topic, counts) in &stats.topics {
                        tr data-topic=(topic) {
                            th scope="row" { a href={ "/topic?name=" (encode(topic)) } { (topic) } }
                            @for name in COUNTERS {
                                td.num data-counter=(name) { (counter(counts, name)) }
                            }
                        }
                    }
                }
            }
        }
        @if stats.topics.is_empty() { p #no-topics { (ctx.t("no_topics")) } }
        script src="/static/live.js" defer {}
    };
    ctx.page(ctx.t("overview"), "overview", body)
        .into_response()
}

/// `/workers`: every connected worker by stage; stale ones flagged.
pub async fn workers(ctx: Ctx) -> Response {
    let mut stats: StatsReply = match ctx.call(ClientRequest::Stats).await {
        Ok(stats) => stats,
        Err(refusal) => return ctx.refused(refusal),
    };
    stats
        .workers
        .sort_by(|a, b| (&a.stage, &a.id).cmp(&(&b.stage, &b.id)));
    let orphans = orphan_topics(&stats);
    let body = html! {
        h1 { (ctx.t("workers")) " (" (stats.workers.len()) ")" }
        @if !orphans.is_empty() {
            div.error #orphans role="status" {
                (ctx.t("orphans")) ": "
                @for (i, t) in orphans.iter().enumerate() {
                    @if i > 0 { ", " }
                    a href={ "/topic?name=" (encode(t)) } { (t) }
                }
            }
        }
        @if stats.workers.is_empty() { p { (ctx.t("no_workers")) } } @else {
            div.scroll { table {
                thead { tr {
                    th scope="col" { (ctx.t("stage")) }
                    th scope="col" { (ctx.t("id")) }
                    th scope="col" { (ctx.t("topics")) }
                    th.num scope="col" { (ctx.t("capacity")) }
                    th.num scope="col" { (ctx.t("in_flight")) }
                    th.num scope="col" { (ctx.t("heartbeat")) }
                } }
                tbody { @for w in &stats.workers {
                    tr.stale[w.last_heartbeat_ms > STALE_MS] {
                        td { (w.stage) }
                        td { code { (w.id) } }
                        td { @for (i, t) in w.topics.iter().enumerate() {
                            @if i > 0 { ", " }
                            a href={ "/topic?name=" (encode(t)) } { (t) }
                        } }
                        td.num { (w.capacity) }
                        td.num { (w.in_flight) }
                        td.num {
                            (age_of(w.last_heartbeat_ms))
                            @if w.last_heartbeat_ms > STALE_MS { " " span.badge.bad { (ctx.t("stale")) } }
                        }
                    }
                } }
            } }
        }
    };
    ctx.page(ctx.t("workers"), "workers", body).into_response()
}

/// Topics with ready tasks that no connected worker takes.
fn orphan_topics(stats: &StatsReply) -> Vec<&str> {
    stats
        .topics
        .iter()
        .filter(|(topic, counts)| {
            counts.ready > 0 && !stats.workers.iter().any(|w| w.topics.contains(topic))
        })
        .map(|(topic, _)| topic.as_str())
        .collect()
}

#[derive(Debug, Deserialize)]
pub struct TopicQuery {
    name: String,
    state: Option<String>,
}

const STATES: [&str; 5] = ["ready", "pending", "delayed", "leased", "dead"];

/// `/topic?name=T&state=S`: a topic's queued tasks, filtered by state.
pub async fn topic(ctx: Ctx, Query(query): Query<TopicQuery>) -> Response {
    let state = query.state.filter(|s| !s.is_empty());
    let filter = ListFilter {
        topic: Some(query.name.clone()),
        state: state.clone(),
        limit: 100,
    };
    let listed: Value = match ctx.call(ClientRequest::ListTasks(filter)).await {
        Ok(listed) => listed,
        Err(refusal) => return ctx.refused(refusal),
    };
    let tasks: Vec<TaskInfo> = listed
        .get("queued")
        .and_then(|q| serde_json::from_value(q.clone()).ok())
        .unwrap_or_default();
    let body = html! {
        h1 { (ctx.t("topic")) " " code { (query.name) } }
        form.filters method="get" action="/topic" {
            input type="hidden" name="name" value=(query.name);
            label for="state" { (ctx.t("state")) }
            select #state name="state" {
                option value="" { (ctx.t("all")) }
                @for s in STATES {
                    option value=(s) selected[state.as_deref() == Some(s)] { (ctx.t(s)) }
                }
            }
            button type="submit" { (ctx.t("filter")) }
        }
        (task_table(&ctx, &tasks))
    };
    ctx.page(&query.name, "", body).into_response()
}

/// A table of live tasks (the topic page and search).
pub fn task_table(ctx: &Ctx, tasks: &[TaskInfo]) -> Markup {
    html! {
        @if tasks.is_empty() { p { (ctx.t("no_tasks")) } } @else {
            div.scroll { table {
                thead { tr {
                    th scope="col" { (ctx.t("guid")) }
                    th scope="col" { (ctx.t("state")) }
                    th.num scope="col" { (ctx.t("attempt")) }
                    th scope="col" { (ctx.t("holder")) }
                    th scope="col" { (ctx.t("error")) }
                    th scope="col" { (ctx.t("created")) }
                } }
                tbody { @for t in tasks { tr {
                    td { a href={ "/task?guid=" (encode(&t.guid)) } { code { (t.guid) } } }
                    td { span.badge { (t.state) } }
                    td.num { (t.attempt) "/" (t.max_retry) }
                    td { (t.holder.as_deref().unwrap_or("")) }
                    td.err { (t.last_error.as_deref().unwrap_or("")) }
                    td { (time_of(t.created_at_ms)) }
                } } }
            } }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct GuidQuery {
    guid: String,
}

/// `/task?guid=G`: one task, live or finished.
pub async fn task(ctx: Ctx, Query(query): Query<GuidQuery>) -> Response {
    let found: TaskLookup = match ctx
        .call(ClientRequest::TaskStatus {
            guid: query.guid.clone(),
        })
        .await
    {
        Ok(found) => found,
        Err(refusal) => return ctx.refused(refusal),
    };
    let rows: Vec<(&'static str, String)> = match &found {
        TaskLookup::Live(t) => vec![
            ("topic", t.topic.clone()),
            ("state", t.state.clone()),
            ("attempt", format!("{}/{}", t.attempt, t.max_retry)),
            ("holder", t.holder.clone().unwrap_or_default()),
            ("expires", t.expires_in_ms.map(age_of).unwrap_or_default()),
            ("error", t.last_error.clone().unwrap_or_default()),
            ("created", time_of(t.created_at_ms)),
        ],
        TaskLookup::Finished(h) => vec![
            ("topic", h.topic.clone()),
            ("outcome", h.outcome.clone()),
            ("attempt", h.attempt.to_string()),
            ("error", h.error.clone().unwrap_or_default()),
            ("finished", time_of(h.finished_at_ms)),
        ],
    };
    let body = html! {
        h1 { (ctx.t("task")) " " code { (query.guid) } }
        dl.fields {
            @for (key, value) in &rows {
                dt { (ctx.t(key)) }
                dd {
                    @if *key == "topic" { a href={ "/topic?name=" (encode(value)) } { (value) } }
                    @else if value.is_empty() { "—" }
                    @else { (value) }
                }
            }
        }
        @match &found {
            TaskLookup::Live(t) => {
                h2 { (ctx.t("body")) @if let Some(n) = t.body_bytes { " (" (n) " B)" } }
                @match &t.body {
                    Some(body) => pre.body { (serde_json::to_string_pretty(body).unwrap_or_default()) },
                    None => p.note { (ctx.t("body_large")) },
                }
            }
            TaskLookup::Finished(_) => p.note { (ctx.t("body_note")) },
        }
    };
    ctx.page(&query.guid, "", body).into_response()
}

#[derive(Debug, Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    q: String,
}

/// `/search?q=`: a guid goes to its task, a topic to its page; else the topics
/// whose names contain the text.
pub async fn search(ctx: Ctx, Query(query): Query<SearchQuery>) -> Response {
    let q = query.q.trim().to_owned();
    let mut near = Vec::new();
    if !q.is_empty() {
        let lookup = ClientRequest::TaskStatus { guid: q.clone() };
        if ctx.call::<TaskLookup>(lookup).await.is_ok() {
            return see_other(&format!("/task?guid={}", encode(&q)));
        }
        if let Ok(stats) = ctx.call::<StatsReply>(ClientRequest::Stats).await {
            if stats.topics.contains_key(&q) {
                return see_other(&format!("/topic?name={}", encode(&q)));
            }
            near = stats
                .topics
                .into_keys()
                .filter(|t| t.contains(&q))
                .collect();
        }
    }
    let status = if near.is_empty() {
        axum::http::StatusCode::NOT_FOUND
    } else {
        axum::http::StatusCode::OK
    };
    let body = html! {
        @if near.is_empty() { h1 { (ctx.t("not_found")) } } @else { h1 { (ctx.t("topics")) } }
        p { (ctx.t("search_hint")) ": " code { (q) } }
        @if !near.is_empty() {
            ul #near { @for topic in &near {
                li { a href={ "/topic?name=" (encode(topic)) } { (topic) } }
            } }
        }
    };
    (status, ctx.page(ctx.t("search"), "", body)).into_response()
}
