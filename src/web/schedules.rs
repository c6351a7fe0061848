//! The total tasks page: list with trigger and next fire time, add, pause, resume,
//! and delete after a confirmation step (audited; the broker publishes
//! `task_deleted`).

use axum::extract::{Form, Path};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::layout::{encode, see_other, Ctx, Refusal};
use crate::accounts::Role;
use crate::protocol::client::{ClientRequest, ListFilter};

/// `/schedules`: every total task.
pub async fn list(ctx: Ctx) -> Response {
    let filter = ListFilter {
        topic: None,
        state: None,
        limit: 0,
    };
    let listed: Value = match ctx.call(ClientRequest::ListTasks(filter)).await {
        Ok(listed) => listed,
        Err(refusal) => return ctx.refused(refusal),
    };
    let tasks = listed
        .get("scheduled")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let body = html! {
        h1 { (ctx.t("schedules")) " (" (tasks.len()) ")" }
        @if tasks.is_empty() { p { (ctx.t("no_schedules")) } } @else { (table(&ctx, &tasks)) }
        @if ctx.may(Role::Operator) { (add_form(&ctx)) }
    };
    ctx.page(ctx.t("schedules"), "schedules", body)
        .into_response()
}

fn text<'a>(task: &'a Value, key: &str) -> &'a str {
    task.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A trigger in words: `every 60 s`, `cron 0 3 * * *`, `once 2026-01-01 00:00:00`.
pub fn trigger_words(trigger: Option<&Value>) -> String {
    let Some(object) = trigger.and_then(Value::as_object) else {
        return String::new();
    };
    if let Some(seconds) = object.get("interval") {
        return format!("every {seconds} s");
    }
    if let Some(cron) = object.get("cron").and_then(Value::as_str) {
        return format!("cron {cron}");
    }
    if let Some(date) = object.get("date").and_then(Value::as_str) {
        return format!("once {date}");
    }
    Value::Object(object.clone()).to_string()
}

fn table(ctx: &Ctx, tasks: &[Value]) -> Markup {
    let operator = ctx.may(Role::Operator);
    html! {
        div.scroll { table #schedules {
            thead { tr {
                th scope="col" { (ctx.t("id")) }
                th scope="col" { (ctx.t("topic")) }
                th scope="col" { (ctx.t("trigger")) }
                th scope="col" { (ctx.t("timezone")) }
                th scope="col" { (ctx.t("next_fire")) }
                th scope="col" { (ctx.t("last_result")) }
                th scope="col" { (ctx.t("status")) }
                @if operator { th scope="col" { (ctx.t("actions")) } }
            } }
            tbody { @for task in tasks {
                @let id = text(task, "id");
                tr data-id=(id) {
                    td { code { (id) } }
                    td { a href={ "/topic?name=" (encode(text(task, "topic"))) } { (text(task, "topic")) } }
                    td { (trigger_words(task.get("trigger"))) }
                    td { (text(task, "timezone")) }
                    td { (text(task, "next_fire_time")) }
                    td { (text(task, "last_result")) }
                    td { span.badge { (text(task, "status")) } }
                    @if operator { td.actions {
                        @let paused = task.get("paused").and_then(Value::as_bool).unwrap_or(false);
                        @let (verb, key) = if paused { ("resume", "resume") } else { ("pause", "pause") };
                        form method="post" action=(ctx.action(&format!("/schedules/{}/{verb}", encode(id)))) {
                            button type="submit" { (ctx.t(key)) }
                        }
                        a.button.danger href={ "/schedules/" (encode(id)) "/delete" } { (ctx.t("delete")) }
                    } }
                }
            } }
        } }
    }
}

fn add_form(ctx: &Ctx) -> Markup {
    html! {
        section {
            h2 { (ctx.t("add_schedule")) }
            form.grid method="post" action=(ctx.action("/schedules")) {
                label for="s-id" { (ctx.t("id")) }
                input #s-id name="id";
                label for="s-topic" { (ctx.t("topic")) }
                input #s-topic name="topic" required;
                label for="s-interval" { (ctx.t("interval_secs")) }
                input #s-interval name="interval" type="number" min="1";
                label for="s-cron" { (ctx.t("cron")) }
                input #s-cron name="cron" placeholder="0 3 * * *";
                label for="s-tz" { (ctx.t("timezone")) }
                input #s-tz name="timezone" placeholder="Asia/Shanghai";
                label for="s-body" { (ctx.t("body_json")) }
                textarea #s-body name="body" rows="3" { "{}" }
                p.hint { (ctx.t("trigger_hint")) }
                button type="submit" { (ctx.t("add")) }
            }
        }
    }
}

/// The add form's fields.
#[derive(Debug, Deserialize)]
pub struct AddForm {
    #[serde(default)]
    id: String,
    topic: String,
    #[serde(default)]
    interval: String,
    #[serde(default)]
    cron: String,
    #[serde(default)]
    timezone: String,
    #[serde(default)]
    body: String,
}

/// The `add_task` fields of the form, or why they are wrong.
fn spec_of(form: &AddForm) -> Result<Value, String> {
    let trigger = match (form.interval.trim(), form.cron.trim()) {
        ("", "") => return Err("give an interval or a cron line".into()),
        (interval, "") => {
            let seconds: u64 = interval
                .parse()
                .map_err(|_| format!("interval \"{interval}\" is not a number of seconds"))?;
            json!({ "interval": seconds })
        }
        ("", cron) => json!({ "cron": cron }),
        _ => return Err("give an interval or a cron line, not both".into()),
    };
    let mut spec = Map::new();
    spec.insert("topic".into(), json!(form.topic.trim()));
    spec.insert("trigger".into(), trigger);
    if !form.id.trim().is_empty() {
        spec.insert("id".into(), json!(form.id.trim()));
    }
    if !form.timezone.trim().is_empty() {
        spec.insert("timezone".into(), json!(form.timezone.trim()));
    }
    let body = form.body.trim();
    if !body.is_empty() {
        let value: Value =
            serde_json::from_str(body).map_err(|e| format!("body is not JSON: {e}"))?;
        spec.insert("body".into(), value);
    }
    Ok(Value::Object(spec))
}

/// `POST /schedules`: adds a total task.
pub async fn add(ctx: Ctx, Form(form): Form<AddForm>) -> Response {
    let spec = match spec_of(&form) {
        Ok(spec) => spec,
        Err(message) => {
            return ctx.refused(Refusal {
                status: axum::http::StatusCode::BAD_REQUEST,
                message,
            })
        }
    };
    done(
        &ctx,
        ctx.call::<Value>(ClientRequest::AddTask { spec }).await,
    )
}

fn done(ctx: &Ctx, result: Result<Value, Refusal>) -> Response {
    match result {
        Ok(_) => see_other("/schedules"),
        Err(refusal) => ctx.refused(refusal),
    }
}

/// `POST /schedules/{id}/pause`.
pub async fn pause(ctx: Ctx, Path(id): Path<String>) -> Response {
    done(&ctx, ctx.call(ClientRequest::PauseTask { id }).await)
}

/// `POST /schedules/{id}/resume`.
pub async fn resume(ctx: Ctx, Path(id): Path<String>) -> Response {
    done(&ctx, ctx.call(ClientRequest::ResumeTask { id }).await)
}

/// `GET /schedules/{id}/delete`: the confirmation step.
pub async fn confirm_delete(ctx: Ctx, Path(id): Path<String>) -> Response {
    let body = html! {
        h1 { (ctx.t("confirm_delete")) }
        p { code { (id) } }
        p { (ctx.t("confirm_delete_text")) }
        @if ctx.may(Role::Operator) {
            form.inline method="post" action=(ctx.action(&format!("/schedules/{}/delete", encode(&id)))) {
                button.danger #confirm-delete type="submit" { (ctx.t("delete")) }
                " "
                a.button href="/schedules" { (ctx.t("cancel")) }
            }
        }
    };
    ctx.page(ctx.t("confirm_delete"), "schedules", body)
        .into_response()
}

/// `POST /schedules/{id}/delete`: deletes (the API layer writes the audit line).
pub async fn delete(ctx: Ctx, Path(id): Path<String>) -> Response {
    done(
        &ctx,
        ctx.call(ClientRequest::DeleteTask { id, by: None }).await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(interval: &str, cron: &str) -> AddForm {
        AddForm {
            id: "daily".into(),
            topic: "jd".into(),
            interval: interval.into(),
            cron: cron.into(),
            timezone: String::new(),
            body: "{\"a\": 1}".into(),
        }
    }

    #[test]
    fn the_form_becomes_add_task_fields() {
        let spec = spec_of(&form("60", "")).unwrap();
        assert_eq!(spec["trigger"], json!({"interval": 60}));
        assert_eq!(spec["body"], json!({"a": 1}));
        assert_eq!(spec["id"], "daily");
        assert!(spec_of(&form("", "")).is_err());
        assert!(spec_of(&form("60", "0 3 * * *")).is_err());
        assert!(spec_of(&form("soon", "")).is_err());
        assert_eq!(
            trigger_words(Some(&json!({"cron": "0 3 * * *"}))),
            "cron 0 3 * * *"
        );
    }
}
