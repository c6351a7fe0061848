//! The binaries as a user runs them.
