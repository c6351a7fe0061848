//! Hostile peers' bytes: ZMTP 3.0 written by hand on raw TCP streams.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use super::process::LIMIT;

/// A 64-byte ZMTP 3.0 greeting announcing `mechanism`.
pub fn greeting(mechanism: &str) -> [u8; 64] {
    let mut bytes = [0u8; 64];
    bytes[0] = 0xff;
    bytes[9] = 0x7f;
    bytes[10] = 3;
    bytes[11] = 0;
    bytes[12..12 + mechanism.len()].copy_from_slice(mechanism.as_bytes());
    bytes
}

/// A READY command for a DEALER socket.
fn ready_dealer() -> Vec<u8> {
    let mut body = vec![5];
    body.extend_from_slice(b"READY");
    body.push(11);
    body.extend_from_slice(b"Socket-Type");
    body.extend_from_slice(&6u32.to_be_bytes());
    body.extend_from_slice(b"DEALER");
    let mut command = vec![0x04, body.len() as u8];
    command.extend_from_slice(&body);
    command
}

/// A request as a DEALER sends it: an empty delimiter frame, then `body` (short).
pub fn request(body: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0x01, 0x00, 0x00, body.len() as u8];
    bytes.extend_from_slice(body);
    bytes
}

/// The header of a long frame claiming `len` bytes.
pub fn long_header(len: u64, more: bool) -> [u8; 9] {
    let mut header = [0u8; 9];
    header[0] = 0x02 | u8::from(more);
    header[1..].copy_from_slice(&len.to_be_bytes());
    header
}

/// The address hostile peers connect from. Not 127.0.0.1: their thousands of
/// ephemeral ports must not collide with fixed ports other tests bind there.
pub const PEER_IP: &str = "127.0.0.2";

pub async fn connect(addr: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    // A small receive buffer: a peer that does not read fills it soon.
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    socket
        .bind(format!("{PEER_IP}:0").parse().unwrap())
        .unwrap();
    socket
        .connect(addr.parse().unwrap())
        .await
        .expect("tcp connect")
}

/// A DEALER peer past the greeting and READY exchange.
pub async fn handshaken(addr: &str) -> TcpStream {
    let mut stream = connect(addr).await;
    stream.write_all(&greeting("NULL")).await.unwrap();
    stream.write_all(&ready_dealer()).await.unwrap();
    let mut theirs = [0u8; 64];
    stream.read_exact(&mut theirs).await.unwrap();
    assert_eq!((theirs[0], theirs[9]), (0xff, 0x7f), "a ZMTP greeting");
    let flags = stream.read_u8().await.unwrap();
    assert_eq!(flags & 0x04, 0x04, "a command follows the greeting");
    let len = if flags & 0x02 != 0 {
        stream.read_u64().await.unwrap() as usize
    } else {
        usize::from(stream.read_u8().await.unwrap())
    };
    let mut ready = vec![0u8; len];
    stream.read_exact(&mut ready).await.unwrap();
    assert!(ready.starts_with(b"\x05READY"), "the broker's READY");
    stream
}

/// Reads until the broker closes the stream; returns the bytes it sent first and
/// how long it took. Panics if the stream is still open after `LIMIT`.
pub async fn until_closed(stream: &mut TcpStream) -> (usize, Duration) {
    let start = Instant::now();
    let mut total = 0;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(LIMIT, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (total, start.elapsed()),
            Ok(Ok(n)) => total += n,
            Err(_) => {
                panic!("the broker still holds the connection after {LIMIT:?} ({total} bytes came)")
            }
        }
    }
}

/// Writes `chunk` over and over until the broker closes the stream (or `max`
/// bytes went); returns how many bytes were written. Calls `sample` after each
/// chunk.
pub async fn stream_until_dropped(
    stream: &mut TcpStream,
    chunk: &[u8],
    max: u64,
    mut sample: impl FnMut(),
) -> u64 {
    let mut written = 0u64;
    while written < max {
        match tokio::time::timeout(LIMIT, stream.write_all(chunk)).await {
            Ok(Ok(())) => written += chunk.len() as u64,
            Ok(Err(_)) => break,
            Err(_) => panic!("writes stalled for {LIMIT:?} without the peer being dropped"),
        }
        sample();
    }
    written
}
