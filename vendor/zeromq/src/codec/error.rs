use thiserror::Error;

/// Represents an error when encoding/decoding raw byte buffers and frames
#[non_exhaustive]
#[derive(Error, Debug)]
pub enum CodecError {
    #[error("{0}")]
    Command(&'static str),
    #[error("{0}")]
    Greeting(&'static str),
    #[error("{0}")]
    Mechanism(&'static str),
    #[error("{0}")]
    Decode(&'static str),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Other(&'static str),
    /// A frame header claimed more than the socket's `max_message_size`.
    #[error("message of at least {size} bytes exceeds max_message_size {max}")]
    MessageTooLarge { size: u64, max: usize },
    /// A message went on past the socket's `max_frames_per_message`.
    #[error("message of more than {max} frames exceeds max_frames_per_message")]
    TooManyFrames { max: usize },
}

impl CodecError {
    /// Whether this error is a limit of the socket options being enforced.
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            CodecError::MessageTooLarge { .. } | CodecError::TooManyFrames { .. }
        )
    }
}

pub(crate) type CodecResult<T> = Result<T, CodecError>;
