//! Interop with real Python peers (pyzmq + msgpack): the seed's interface script
//! and a worker written from docs/PROTOCOL.md alone.

pub fn python() -> Option<&'static str> {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import zmq, msgpack"])
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some("python3");
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("python3 with pyzmq and msgpack is required under CI");
    }
    eprintln!("skipped: python3 with pyzmq and msgpack not found");
    None
}
