//! The frames around a client request on the ROUTER: `[peer, "", body]` from REQ
//! peers, `[peer, body]` from DEALERs.

use bytes::Bytes;

use crate::protocol::{code, ProtocolError};

/// The frames of one client request as the ROUTER delivers them.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientFrames {
    pub peer: Bytes,
    /// REQ peers (and DEALERs that imitate them) send an empty delimiter frame;
    /// the reply must carry it back.
    pub delimited: bool,
    pub body: Bytes,
}

/// A message that is not a client request: the peer (if any), whether it was
/// delimited, and why.
pub type FramesError = (Option<Bytes>, bool, ProtocolError);

impl ClientFrames {
    /// Splits `[peer, "", body]` or `[peer, body]`.
    pub fn parse(frames: Vec<Bytes>) -> Result<ClientFrames, FramesError> {
        let mut frames = frames.into_iter();
        let Some(peer) = frames.next() else {
            return Err((
                None,
                false,
                ProtocolError::new(code::BAD_FRAMES, "empty message"),
            ));
        };
        let rest: Vec<Bytes> = frames.collect();
        let delimited = rest.first().is_some_and(Bytes::is_empty);
        let body_frames = if delimited { &rest[1..] } else { &rest[..] };
        match body_frames {
            [body] => Ok(ClientFrames {
                peer,
                delimited,
                body: body.clone(),
            }),
            other => Err((
                Some(peer),
                delimited,
                ProtocolError::new(
                    code::BAD_FRAMES,
                    format!("expected one body frame, got {}", other.len()),
                ),
            )),
        }
    }

    /// The frames of a reply to this request.
    pub fn reply(peer: Bytes, delimited: bool, body: Bytes) -> Vec<Bytes> {
        if delimited {
            vec![peer, Bytes::new(), body]
        } else {
            vec![peer, body]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_keep_the_req_delimiter() {
        let f =
            ClientFrames::parse(vec![Bytes::from("id"), Bytes::new(), Bytes::from("b")]).unwrap();
        assert!(f.delimited);
        assert_eq!(ClientFrames::reply(f.peer, true, Bytes::from("r")).len(), 3);
        let f = ClientFrames::parse(vec![Bytes::from("id"), Bytes::from("b")]).unwrap();
        assert!(!f.delimited);
        let err = ClientFrames::parse(vec![Bytes::from("id"), Bytes::from("a"), Bytes::from("b")]);
        assert!(err.is_err());
    }
}
