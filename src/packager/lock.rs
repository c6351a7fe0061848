//! The instance lock: a Redis process holds `<processing list>:lock` (see
//! `PackagerConfig::instance_lock_key`) while it runs, so two processes never share
//! processing lists. Two processes that did (no `instance` set on either) took each
//! other's in-flight items at start and sent their notices twice.
//!
//! The key lives `instance_lock_secs` and is renewed every third of that. A second
//! process waits at most that long (the key of a killed holder expires) and then
//! refuses to start, naming the key and its holder.

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;

use super::config::PackagerConfig;

/// Renews the key when this process holds it, takes it when it is free; 0 when
/// another process holds it.
const RENEW: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0";

/// Deletes the key only when this process holds it.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

/// A held instance lock, renewed in the background until `release`.
pub(crate) struct InstanceLock {
    key: String,
    token: String,
    conn: ConnectionManager,
    stop: CancellationToken,
    renewer: tokio::task::JoinHandle<()>,
}

/// Takes the lock of `cfg.instance`, waiting at most `instance_lock_secs` for a
/// killed holder's key to expire. `lost` is cancelled if another process takes the key
/// later (after an outage longer than the lock's life): the intake must then stop.
pub(crate) async fn acquire(
    mut conn: ConnectionManager,
    cfg: &PackagerConfig,
    lost: CancellationToken,
) -> anyhow::Result<InstanceLock> {
    let key = cfg.instance_lock_key();
    let token = holder_token();
    let ttl = Duration::from_secs_f64(cfg.instance_lock_secs);
    let ttl_ms = ttl.as_millis().max(1) as u64;
    let deadline = tokio::time::Instant::now() + ttl + Duration::from_millis(250);
    loop {
        let taken: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut conn)
            .await
            .map_err(|e| anyhow::anyhow!("redis key {key}: {e}"))?;
        if taken.is_some() {
            break;
        }
        let holder: Option<String> = conn.get(&key).await.unwrap_or(None);
        let left_ms: i64 = conn.pttl(&key).await.unwrap_or(0);
        let now = tokio::time::Instant::now();
        if now >= deadline {
            anyhow::bail!(
                "packager instance {:?} is already running: redis key {key} is held by {} \
                 (every packager process sharing these keys needs its own [packager] instance)",
                cfg.instance,
                holder.as_deref().unwrap_or("?")
            );
        }
        // A live holder renews the key; a killed one's expires within its life.
        let wait = Duration::from_millis(left_ms.clamp(10, ttl_ms as i64) as u64 + 10);
        tokio::time::sleep(wait.min(deadline - now)).await;
    }
    log::info!("packager instance lock {key} held by {token}");
    let stop = CancellationToken::new();
    let renewer = tokio::spawn(renew(
        conn.clone(),
        (key.clone(), token.clone()),
        ttl,
        stop.clone(),
        lost,
    ));
    Ok(InstanceLock {
        key,
        token,
        conn,
        stop,
        renewer,
    })
}

impl InstanceLock {
    /// Stops renewing and deletes the key (if this process still holds it; if Redis is
    /// away, the key expires by itself).
    pub(crate) async fn release(mut self) {
        self.stop.cancel();
        let _ = self.renewer.await;
        let released: redis::RedisResult<i64> = redis::Script::new(RELEASE)
            .key(&self.key)
            .arg(&self.token)
            .invoke_async(&mut self.conn)
            .await;
        match released {
            Ok(_) => log::info!("packager instance lock {} released", self.key),
            Err(e) => log::warn!(
                "packager instance lock {} not released ({e}); it expires by itself",
                self.key
            ),
        }
    }
}

async fn renew(
    mut conn: ConnectionManager,
    (key, token): (String, String),
    ttl: Duration,
    stop: CancellationToken,
    lost: CancellationToken,
) {
    let script = redis::Script::new(RENEW);
    let ttl_ms = ttl.as_millis().max(1) as u64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(ttl / 3) => {}
        }
        let renewed: redis::RedisResult<i64> = script
            .key(&key)
            .arg(&token)
            .arg(ttl_ms)
            .invoke_async(&mut conn)
            .await;
        match renewed {
            Ok(1) => {}
            Ok(_) => {
                log::error!(
                    "packager instance lock {key} is held by another process now; \
                     stopping this process's redis intake"
                );
                lost.cancel();
                return;
            }
            Err(e) => log::warn!("packager instance lock {key} not renewed: {e}"),
        }
    }
}

/// `host:pid:random`: who holds a lock, for the message of a refused second process.
fn holder_token() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}:{}:{}", std::process::id(), &random[..8])
}
