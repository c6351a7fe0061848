//! Recording an outcome in Redis, whatever the server does meanwhile: an item's move
//! to its next list is tried again, with backoff and on a new connection, until it is
//! recorded. An outcome given up after one broken pipe left delivered notices in
//! `notice:processing` for the rest of the run, and the next start sent them again
//!. Only `give_up` (cancelled some time after a shutdown was asked for)
//! ends the attempts: the item then stays in its processing list for the next start.

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{Client, RedisResult};
use tokio_util::sync::CancellationToken;

use super::config::PackagerConfig;
use super::queue::{self, Back};
use super::{Packager, PackagerEvent};

/// Longest pause between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A worker's connection, and what it takes to replace it.
#[derive(Clone)]
pub(crate) struct Link {
    pub(crate) conn: ConnectionManager,
    client: Client,
    cfg: PackagerConfig,
    give_up: CancellationToken,
}

/// One change of the lists that records an outcome.
pub(crate) enum Record<'a> {
    /// The item is done: it leaves `list`.
    Ack { list: &'a str, item: &'a str },
    /// The item leaves `from` and its next forms enter their lists, in one step.
    Move {
        from: &'a str,
        item: &'a str,
        to: Vec<(Back<'a>, &'a str)>,
    },
}

impl Record<'_> {
    fn describe(&self) -> String {
        match self {
            Record::Ack { list, .. } => format!("ack in {list}"),
            Record::Move { from, to, .. } => {
                let lists: Vec<&str> = to
                    .iter()
                    .map(|(back, _)| match back {
                        Back::Head(list) | Back::Tail(list) => *list,
                    })
                    .collect();
                format!("move from {from} to {}", lists.join(" + "))
            }
        }
    }
}

impl Link {
    /// A new connection of its own; `give_up` ends the attempts to record.
    pub(crate) async fn connect(
        client: &Client,
        cfg: &PackagerConfig,
        give_up: &CancellationToken,
    ) -> RedisResult<Self> {
        Ok(Self {
            conn: queue::connect(client, cfg).await?,
            client: client.clone(),
            cfg: cfg.clone(),
            give_up: give_up.clone(),
        })
    }

    /// Replaces the connection; on failure keeps the old one (it reconnects by itself).
    pub(crate) async fn reconnect(&mut self) {
        match queue::connect(&self.client, &self.cfg).await {
            Ok(conn) => self.conn = conn,
            Err(e) => log::debug!("redis reconnect failed: {e}"),
        }
    }

    /// Applies `op`, trying again while the failure may pass. False when the item was
    /// no longer where it should be (nothing to record).
    pub(crate) async fn record(&mut self, p: &Packager, op: Record<'_>) -> RedisResult<bool> {
        let mut attempt = 0;
        loop {
            let result = match &op {
                Record::Ack { list, item } => {
                    queue::ack(&mut self.conn, list, item).await.map(|()| true)
                }
                Record::Move { from, item, to } => {
                    queue::hand_off_many(&mut self.conn, from, item, to).await
                }
            };
            match result {
                Ok(done) => {
                    if attempt > 0 {
                        log::info!(
                            "redis back: {} recorded after {attempt} failed attempts",
                            op.describe()
                        );
                    }
                    return Ok(done);
                }
                Err(e) if queue::is_transient(&e) && !self.give_up.is_cancelled() => {
                    attempt += 1;
                    self.pause_after(p, &op.describe(), attempt, &e).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether attempts to record have been given up (the process is stopping).
    pub(crate) fn gives_up(&self) -> bool {
        self.give_up.is_cancelled()
    }

    /// Reports a failed attempt, waits (50 ms doubling up to 2 s) and reconnects.
    pub(crate) async fn pause_after(
        &mut self,
        p: &Packager,
        what: &str,
        attempt: u32,
        e: &redis::RedisError,
    ) {
        log::warn!("redis: {what} failed (attempt {attempt}): {e}; trying again");
        p.emit(PackagerEvent::RedisRetry {
            what: what.to_string(),
            attempt,
            error: e.to_string(),
        });
        tokio::select! {
            _ = self.give_up.cancelled() => return,
            _ = tokio::time::sleep(backoff(attempt)) => {}
        }
        self.reconnect().await;
    }
}

/// 50 ms after the first failure, doubling, at most [`MAX_BACKOFF`].
fn backoff(attempt: u32) -> Duration {
    let ms = 50u64.saturating_mul(1 << attempt.saturating_sub(1).min(16));
    Duration::from_millis(ms).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_two_seconds() {
        let delays: Vec<u128> = (1..=8).map(|n| backoff(n).as_millis()).collect();
        assert_eq!(delays, [50, 100, 200, 400, 800, 1600, 2000, 2000]);
    }
}
