//! Redis list operations that never lose an item: every item is, at every moment, in
//! exactly one list (a ready list or this process's processing list).
//!
//! **Invariant:** an item leaves a processing list only by `ack` (done) or `hand_off`
//! (atomically replaced by its next form in another list); on start, whatever is left
//! in the processing lists goes back to the head of its ready list.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Client, ConnectionAddr, Direction, IntoConnectionInfo};
use tokio_util::sync::CancellationToken;

use super::config::PackagerConfig;
use super::now_ms;

/// Removes one `ARGV[1]` from `KEYS[1]`; only if it was there, pushes each
/// `ARGV[2i]` to `KEYS[i+1]`: to its head when `ARGV[2i+1]` is `head`, else its tail.
/// Returns 1 when moved, 0 when the item was gone.
const HAND_OFF: &str = r"
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then
  for i = 2, #KEYS do
    if ARGV[2 * i - 1] == 'head' then
      redis.call('LPUSH', KEYS[i], ARGV[2 * i - 2])
    else
      redis.call('RPUSH', KEYS[i], ARGV[2 * i - 2])
    end
  end
  return 1
end
return 0";

/// Moves the last item of `KEYS[1]`, if it is still `ARGV[1]`, to the head
/// (`ARGV[2] == "head"`) or the tail of `KEYS[2]`. Returns 1 when moved.
const MOVE_LAST: &str = r"
if redis.call('LINDEX', KEYS[1], -1) == ARGV[1] then
  redis.call('RPOP', KEYS[1])
  if ARGV[2] == 'head' then
    redis.call('LPUSH', KEYS[2], ARGV[1])
  else
    redis.call('RPUSH', KEYS[2], ARGV[1])
  end
  return 1
end
return 0";

/// Where an item left in a processing list goes back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Back<'a> {
    /// The head of this list (it was taken from there: it runs first again).
    Head(&'a str),
    /// The tail of this list (a due-time list, scanned in rotation).
    Tail(&'a str),
}

/// Puts every item of `processing` back where `route` says, in order (the last item
/// first, so items going to one head keep their order). Returns the count per list.
pub async fn requeue_routed<'a>(
    conn: &mut ConnectionManager,
    processing: &str,
    route: impl Fn(&str) -> Back<'a>,
) -> redis::RedisResult<Vec<(String, usize)>> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    loop {
        let last: Option<String> = conn.lindex(processing, -1).await?;
        let Some(item) = last else {
            return Ok(counts);
        };
        let (list, side) = match route(&item) {
            Back::Head(list) => (list, "head"),
            Back::Tail(list) => (list, "tail"),
        };
        let moved: i64 = redis::Script::new(MOVE_LAST)
            .key(processing)
            .key(list)
            .arg(&item)
            .arg(side)
            .invoke_async(conn)
            .await?;
        if moved == 1 {
            match counts.iter_mut().find(|(name, _)| name == list) {
                Some((_, count)) => *count += 1,
                None => counts.push((list.to_string(), 1)),
            }
        }
    }
}

/// The Redis client of the seed's settings.
pub fn redis_client(cfg: &PackagerConfig) -> redis::RedisResult<Client> {
    let addr = ConnectionAddr::Tcp(cfg.redis_host.clone(), cfg.redis_port);
    let info = addr.into_connection_info()?;
    let mut settings = info.redis_settings().clone().set_db(cfg.redis_db);
    if let Some(auth) = cfg
        .redis_auth
        .as_ref()
        .map(|a| a.0.as_str())
        .filter(|a| !a.is_empty())
    {
        settings = settings.set_password(auth);
    }
    Client::open(info.set_redis_settings(settings))
}

/// A connection of its own for one worker: a blocking pop holds its connection, so
/// workers never share one. Reconnects by itself.
pub async fn connect(
    client: &Client,
    cfg: &PackagerConfig,
) -> redis::RedisResult<ConnectionManager> {
    let block = Duration::from_secs_f64(cfg.redis_sleep_time);
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(block + Duration::from_secs(10)))
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_max_delay(Duration::from_secs(32));
    client.get_connection_manager_with_config(config).await
}

/// Waits up to `timeout_s` for an item and moves it from the head of `ready` to the tail
/// of `processing` in one step (BLMOVE).
pub async fn take(
    conn: &mut ConnectionManager,
    ready: &str,
    processing: &str,
    timeout_s: f64,
) -> redis::RedisResult<Option<String>> {
    conn.blmove(
        ready,
        processing,
        Direction::Left,
        Direction::Right,
        timeout_s,
    )
    .await
}

/// The item is done: removes it from `processing`.
pub async fn ack(
    conn: &mut ConnectionManager,
    processing: &str,
    item: &str,
) -> redis::RedisResult<()> {
    let removed: usize = conn.lrem(processing, 1, item).await?;
    if removed == 0 {
        log::warn!("item no longer in {processing} when acked");
    }
    Ok(())
}

/// Atomically replaces `from_item` in `from` by `to_item` at the tail of `to`.
pub async fn hand_off(
    conn: &mut ConnectionManager,
    from: &str,
    from_item: &str,
    to: &str,
    to_item: &str,
) -> redis::RedisResult<bool> {
    hand_off_many(conn, from, from_item, &[(Back::Tail(to), to_item)]).await
}

/// Atomically replaces `from_item` in `from` by each `(list, item)` of `to` (one step:
/// the item is never in none or in both). False when `from_item` was gone.
pub async fn hand_off_many(
    conn: &mut ConnectionManager,
    from: &str,
    from_item: &str,
    to: &[(Back<'_>, &str)],
) -> redis::RedisResult<bool> {
    let script = hand_off_script();
    let mut invocation = script.key(from);
    invocation.arg(from_item);
    for (back, item) in to {
        let (list, side) = match back {
            Back::Head(list) => (list, "head"),
            Back::Tail(list) => (list, "tail"),
        };
        invocation.key(*list).arg(*item).arg(side);
    }
    let moved: i64 = invocation.invoke_async(conn).await?;
    if moved == 0 {
        log::warn!("item no longer in {from}; not handed on");
    }
    Ok(moved == 1)
}

fn hand_off_script() -> &'static redis::Script {
    static SCRIPT: std::sync::OnceLock<redis::Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| redis::Script::new(HAND_OFF))
}

/// Whether trying again (on a new connection) may work: the server was away, the
/// connection broke, the server is still loading its data.
pub fn is_transient(e: &redis::RedisError) -> bool {
    e.is_io_error() || !matches!(e.retry_method(), redis::RetryMethod::NoRetry)
}

/// Puts every item of `processing` back at the head of `ready`, in order. Run once at
/// start, before any worker takes from `ready`.
pub async fn requeue_all(
    conn: &mut ConnectionManager,
    processing: &str,
    ready: &str,
) -> redis::RedisResult<usize> {
    let mut count = 0;
    loop {
        let moved: Option<String> = conn
            .lmove(processing, ready, Direction::Right, Direction::Left)
            .await?;
        if moved.is_none() {
            return Ok(count);
        }
        count += 1;
    }
}

/// What `take_due` reports while it waits.
pub trait DueWatcher {
    /// Every item of `ready` was looked at and none is due before `due_ms`.
    fn deferred(&self, ready: &str, due_ms: i64);
}

/// Takes the first item of `ready` whose due time (Unix ms, from `due_of`) has come.
/// Items not yet due go back to the tail; after a full round without a due item, waits
/// until the earliest is due (at most `sleep_s`). `None` on cancellation.
pub async fn take_due(
    conn: &mut ConnectionManager,
    lists: (&str, &str),
    due_of: impl Fn(&str) -> i64,
    sleep_s: f64,
    cancel: &CancellationToken,
    watcher: &impl DueWatcher,
) -> redis::RedisResult<Option<String>> {
    let (ready, processing) = lists;
    let mut round = Round::default();
    loop {
        let taken = tokio::select! {
            _ = cancel.cancelled() => return Ok(None),
            taken = take(conn, ready, processing, sleep_s) => taken?,
        };
        let Some(item) = taken else {
            round = Round::default();
            continue;
        };
        let due = due_of(&item);
        if due <= now_ms() {
            return Ok(Some(item));
        }
        hand_off(conn, processing, &item, ready, &item).await?;
        if round.len.is_none() {
            round.len = Some(conn.llen(ready).await?);
        }
        round.seen += 1;
        round.earliest = round.earliest.min(due);
        if round.seen >= round.len.unwrap_or(1) {
            watcher.deferred(ready, round.earliest);
            let wait_ms = (round.earliest - now_ms()).clamp(0, (sleep_s * 1000.0) as i64);
            tokio::select! {
                _ = cancel.cancelled() => return Ok(None),
                _ = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => {}
            }
            round = Round::default();
        }
    }
}

/// One pass over a list of items that are not due yet.
struct Round {
    len: Option<usize>,
    seen: usize,
    earliest: i64,
}

impl Default for Round {
    fn default() -> Self {
        Self {
            len: None,
            seen: 0,
            earliest: i64::MAX,
        }
    }
}
