//! A pyzmq client that carries its token in a MessagePack request.

use std::time::Duration;

use serde_json::Value;
use taskbus::accounts::Role;
use tokio::process::Command;

use super::{guarded, put, Caller};
use crate::common::TestBroker;
use crate::python::python;

/// Sends `get_size` with and without a token through pyzmq and prints both replies
/// as JSON lines.
const SCRIPT: &str = r#"
import json, sys, zmq, msgpack
endpoint, token = sys.argv[1], sys.argv[2]
socket = zmq.Context().socket(zmq.REQ)
socket.setsockopt(zmq.RCVTIMEO, 10000)
socket.connect(endpoint)
for request in ({"type": "get_size", "topic": "t", "token": token},
                {"type": "get_size", "topic": "t"}):
    socket.send(msgpack.packb(request))
    print(json.dumps(msgpack.unpackb(socket.recv(), raw=False)), flush=True)
"#;

#[tokio::test]
async fn a_pyzmq_client_sends_its_token_in_msgpack() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (config, accounts) = guarded(dir.path());
    let viewer = accounts.create_token("py", Role::Viewer).unwrap();
    let operator = accounts.create_token("ops", Role::Operator).unwrap();
    let broker = TestBroker::start(config).await;
    let mut caller = Caller::connect(&broker).await;
    let reply = caller.call(put("t"), Some(&operator)).await;
    assert!(reply["guids"].is_array(), "{reply}");
    let run = Command::new(py)
        .args(["-c", SCRIPT, &broker.endpoints.client, &viewer])
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("python finishes")
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let replies: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(replies.len(), 2, "{stdout}");
    assert_eq!(replies[0], 1, "{stdout}");
    assert_eq!(replies[1]["code"], "unauthorized", "{stdout}");
    broker.stop().await;
}
