//! `GET /metrics`: the bus in the Prometheus text format, read from one `stats` call
//! per scrape.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::api::call_raw;
use super::auth::Visitor;
use super::site::{error_reply, SiteRef};
use crate::protocol::client::{ClientRequest, StatsReply};
use crate::protocol::code;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicState {
    topic: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: String,
}

pub async fn metrics(State(site): State<SiteRef>, Extension(v): Extension<Visitor>) -> Response {
    let body = match call_raw(&site, &v, ClientRequest::Stats).await {
        Ok((_, body)) => body,
        Err(refusal) => return refusal,
    };
    let stats: StatsReply = match serde_json::from_slice(&body) {
        Ok(stats) => stats,
        Err(error) => {
            return error_reply(
                code::STORE_UNAVAILABLE,
                format!("stats reply not readable: {error}"),
            )
        }
    };
    match render(&stats) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(error) => error_reply(code::MALFORMED, format!("metrics: {error}")),
    }
}

fn render(stats: &StatsReply) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("taskbus");
    let tasks = Family::<TopicState, Gauge>::default();
    let finished = Family::<TopicState, Counter>::default();
    let workers = Family::<StageLabel, Gauge>::default();
    let capacity = Family::<StageLabel, Gauge>::default();
    let in_flight = Family::<StageLabel, Gauge>::default();
    for (topic, t) in &stats.topics {
        let label = |state: &str| TopicState {
            topic: topic.clone(),
            state: state.into(),
        };
        for (state, n) in [
            ("pending", t.pending),
            ("ready", t.ready),
            ("delayed", t.delayed),
            ("leased", t.leased),
            ("dead", t.dead),
        ] {
            tasks.get_or_create(&label(state)).set(n as i64);
        }
        finished.get_or_create(&label("done")).inc_by(t.done);
        finished.get_or_create(&label("failed")).inc_by(t.failed);
    }
    for worker in &stats.workers {
        let stage = StageLabel {
            stage: worker.stage.clone(),
        };
        workers.get_or_create(&stage).inc();
        capacity
            .get_or_create(&stage)
            .inc_by(worker.capacity as i64);
        in_flight
            .get_or_create(&stage)
            .inc_by(worker.in_flight as i64);
    }
    registry.register("tasks", "Tasks by topic and state", tasks);
    registry.register(
        "tasks_finished",
        "Attempts finished by topic: done, failed",
        finished,
    );
    registry.register("workers", "Connected workers by stage", workers);
    registry.register(
        "worker_capacity",
        "Credit of the workers by stage",
        capacity,
    );
    registry.register(
        "worker_in_flight",
        "Tasks held by the workers by stage",
        in_flight,
    );
    let store_ok = Gauge::<i64>::default();
    store_ok.set(i64::from(stats.store.error.is_none()));
    registry.register(
        "store_up",
        "1 when the store takes commits, 0 while it refuses them",
        store_ok,
    );
    let refused = Family::<CodeLabel, Counter>::default();
    for (error_code, n) in crate::auth::refusals() {
        refused
            .get_or_create(&CodeLabel {
                code: error_code.into(),
            })
            .inc_by(n);
    }
    registry.register(
        "zmq_refused",
        "ZeroMQ requests and READYs refused by [auth], by error code",
        refused,
    );
    let mut text = String::new();
    encode(&mut text, &registry)?;
    Ok(text)
}
