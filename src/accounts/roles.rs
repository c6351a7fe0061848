//! Roles, and which role each client verb needs. The same table serves every
//! transport, so HTTP and ZeroMQ refuse the same calls.

use std::fmt;
use std::str::FromStr;

use crate::protocol::client::ClientRequest;

/// What an identity may do; each role may do everything the roles before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads: sizes, stats, task status, lists, dead letters, the audit log.
    Viewer,
    /// Takes and finishes work: `get_task`, `ack`, `nack` (and a worker's READY).
    Worker,
    /// Changes the bus: puts, retries and purges, total tasks, pausing topics.
    Operator,
    /// Users and tokens.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Worker, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Worker => "worker",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// Whether this role may do what `needed` allows.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(text: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == text)
            .ok_or_else(|| {
                format!("unknown role \"{text}\": use viewer, worker, operator or admin")
            })
    }
}

/// The role a client request needs.
pub fn role_for(request: &ClientRequest) -> Role {
    use ClientRequest as R;
    match request {
        R::GetSize { .. }
        | R::ListTasks(_)
        | R::TaskStatus { .. }
        | R::Stats
        | R::DeadList { .. } => Role::Viewer,
        R::GetTask { .. } | R::Ack { .. } | R::Nack { .. } => Role::Worker,
        R::PutTask { .. }
        | R::DeadRetry { .. }
        | R::DeadPurge { .. }
        | R::AddTask { .. }
        | R::ModifyTask { .. }
        | R::PauseTask { .. }
        | R::ResumeTask { .. }
        | R::DeleteTask { .. } => Role::Operator,
    }
}

/// The verb of a request, as its `type` field names it.
pub fn verb(request: &ClientRequest) -> &'static str {
    use ClientRequest as R;
    match request {
        R::GetTask { .. } => "get_task",
        R::GetSize { .. } => "get_size",
        R::PutTask { .. } => "put_task",
        R::Ack { .. } => "ack",
        R::Nack { .. } => "nack",
        R::ListTasks(_) => "list_tasks",
        R::TaskStatus { .. } => "task_status",
        R::Stats => "stats",
        R::DeadList { .. } => "dead_list",
        R::DeadRetry { .. } => "dead_retry",
        R::DeadPurge { .. } => "dead_purge",
        R::AddTask { .. } => "add_task",
        R::ModifyTask { .. } => "modify_task",
        R::PauseTask { .. } => "pause_task",
        R::ResumeTask { .. } => "resume_task",
        R::DeleteTask { .. } => "delete_task",
    }
}

/// Whether a request changes the bus (and so goes to the audit log).
pub fn changes_state(request: &ClientRequest) -> bool {
    role_for(request) >= Role::Operator
}
