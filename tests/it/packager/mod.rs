//! The APK channel packager and the apk module (seed 001), on real signed APKs.
//!
//! - `apk`: `taskbus::apk` (signing-block channels, the byte-level invariants).
//! - `bus`: status codes, `package_one`, the bus handler, uploads, notices, UDP lines,
//!   the temp-file sweep (no Redis).
//! - `bus_stage`: the `package` stage on an in-process broker.
//! - `redis`: the seed's Redis lists on the real Redis: intake in JSON and Python
//!   notation, the rejected list, retries, uploads, notices, the instance lock.
//! - `redis_restart`: outcomes recorded across a restart of a Redis of the test's own.
//! - `redis_stage`: the Redis intake inside the stage and in the binaries' processes.
//! - `support`: fixtures, a notice server, a UDP receiver, Redis access, event waits.

mod apk;
mod bus;
mod bus_stage;
mod redis;
mod redis_restart;
mod redis_stage;
pub mod support;
