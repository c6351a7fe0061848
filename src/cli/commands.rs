//! The client commands of `taskbus`: get-size, get-task, put, ack, stats, status, dead.

use std::io::Read;
use std::path::PathBuf;

use clap::Subcommand;
use serde_json::Value;

use crate::client::Client;
use crate::protocol::client::{ClientRequest, ListFilter};
use crate::task::NewTask;

/// A client command.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Number of ready tasks in a topic (the seed's get_size).
    GetSize { topic: String },
    /// Take up to COUNT tasks from a topic (the seed's get_task); ack them when done.
    GetTask {
        topic: String,
        #[arg(long, default_value_t = 1)]
        count: usize,
    },
    /// Put tasks from a JSON file (or stdin): one task, a list, or {"tasks": [...]}.
    Put {
        /// The file; `-` or nothing reads stdin.
        file: Option<PathBuf>,
        /// Topic for tasks that name none.
        #[arg(long)]
        topic: Option<String>,
    },
    /// End the leases of tasks taken with get-task.
    Ack {
        #[arg(required = true)]
        guids: Vec<String>,
    },
    /// Return a task taken with get-task (retryable unless --permanent).
    Nack {
        guid: String,
        #[arg(long)]
        permanent: bool,
        #[arg(long)]
        error: Option<String>,
    },
    /// Per-topic and per-worker counters.
    Stats,
    /// The state of one task.
    Status { guid: String },
    /// Queued tasks (and scheduled total tasks).
    List {
        #[arg(long)]
        topic: Option<String>,
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Add a scheduled total task from JSON (file or stdin): {"id", "topic", "body",
    /// "trigger": {"interval": s} | {"cron": "m h dom mon dow"} | {"date": "..."}, ...}.
    AddTask { file: Option<PathBuf> },
    /// Change fields of a total task (JSON patch from a file or stdin).
    ModifyTask { id: String, file: Option<PathBuf> },
    /// Stop a total task from firing.
    PauseTask { id: String },
    /// Let a paused total task fire again.
    ResumeTask { id: String },
    /// Delete a total task and its queued instances (announced as task_deleted).
    DeleteTask {
        id: String,
        #[arg(long)]
        by: Option<String>,
    },
    /// Dead-lettered tasks.
    Dead {
        #[command(subcommand)]
        action: DeadAction,
    },
}

/// What to do with dead-lettered tasks.
#[derive(Debug, Subcommand)]
pub enum DeadAction {
    /// List them.
    List {
        #[arg(long)]
        topic: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Put them back in their queues (all of the topic, or the given guids).
    Retry {
        #[arg(long)]
        topic: Option<String>,
        guids: Vec<String>,
    },
    /// Drop them for good.
    Purge {
        #[arg(long)]
        topic: Option<String>,
        guids: Vec<String>,
    },
}

/// Runs one request and prints its reply as JSON.
pub async fn run(client: &mut Client, request: &ClientRequest) -> anyhow::Result<()> {
    let reply = client.request(request).await?;
    println!("{}", serde_json::to_string_pretty(&reply)?);
    Ok(())
}

/// The request a command sends (reading its input first, so that bad input is
/// reported before any connection is tried).
pub fn request(command: ClientCommand) -> anyhow::Result<ClientRequest> {
    let request = match command {
        ClientCommand::GetSize { topic } => ClientRequest::GetSize { topic },
        ClientCommand::GetTask { topic, count } => ClientRequest::GetTask { topic, count },
        ClientCommand::Put { file, topic } => ClientRequest::PutTask {
            tasks: read_tasks(file, topic)?,
        },
        ClientCommand::Ack { guids } => ClientRequest::Ack { guids },
        ClientCommand::Nack {
            guid,
            permanent,
            error,
        } => ClientRequest::Nack {
            guid,
            retryable: !permanent,
            error,
        },
        ClientCommand::Stats => ClientRequest::Stats,
        ClientCommand::Status { guid } => ClientRequest::TaskStatus { guid },
        ClientCommand::List {
            topic,
            state,
            limit,
        } => ClientRequest::ListTasks(ListFilter {
            topic,
            state,
            limit,
        }),
        ClientCommand::AddTask { file } => ClientRequest::AddTask {
            spec: Value::Object(read_object(file)?),
        },
        ClientCommand::ModifyTask { id, file } => {
            let mut patch = read_object(file)?;
            patch.remove("id");
            ClientRequest::ModifyTask {
                id,
                patch: Value::Object(patch),
            }
        }
        ClientCommand::PauseTask { id } => ClientRequest::PauseTask { id },
        ClientCommand::ResumeTask { id } => ClientRequest::ResumeTask { id },
        ClientCommand::DeleteTask { id, by } => ClientRequest::DeleteTask { id, by },
        ClientCommand::Dead { action } => match action {
            DeadAction::List { topic, limit } => ClientRequest::DeadList { topic, limit },
            DeadAction::Retry { topic, guids } => ClientRequest::DeadRetry { topic, guids },
            DeadAction::Purge { topic, guids } => ClientRequest::DeadPurge { topic, guids },
        },
    };
    Ok(request)
}

/// Reads a JSON object from a file or stdin.
fn read_object(file: Option<PathBuf>) -> anyhow::Result<serde_json::Map<String, Value>> {
    let (text, origin) = read_input(file)?;
    match serde_json::from_str(&text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => anyhow::bail!("{origin}: expected a json object"),
        Err(e) => anyhow::bail!("{origin} is not valid json: {e}"),
    }
}

/// The text of a file, or of stdin for none or `-`, with its name for messages.
fn read_input(file: Option<PathBuf>) -> anyhow::Result<(String, String)> {
    Ok(match file.as_deref() {
        None => (read_stdin()?, "stdin".to_owned()),
        Some(path) if path.as_os_str() == "-" => (read_stdin()?, "stdin".to_owned()),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            (text, path.display().to_string())
        }
    })
}

/// Reads tasks from a JSON file or stdin.
fn read_tasks(file: Option<PathBuf>, topic: Option<String>) -> anyhow::Result<Vec<NewTask>> {
    let (text, origin) = read_input(file)?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{origin} is not valid json: {e}"))?;
    let list = match value {
        Value::Array(items) => items,
        Value::Object(mut map) if map.contains_key("tasks") => match map.remove("tasks") {
            Some(Value::Array(items)) => items,
            _ => anyhow::bail!("{origin}: \"tasks\" must be a list"),
        },
        other => vec![other],
    };
    list.into_iter()
        .enumerate()
        .map(|(i, item)| {
            let mut task: NewTask = serde_json::from_value(item)
                .map_err(|e| anyhow::anyhow!("{origin}: task {i}: {e}"))?;
            if task.topic.is_none() {
                task.topic = topic.clone();
            }
            anyhow::ensure!(
                task.topic.is_some(),
                "{origin}: task {i} names no topic (give --topic)"
            );
            Ok(task)
        })
        .collect()
}

fn read_stdin() -> anyhow::Result<String> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text)?;
    Ok(text)
}
