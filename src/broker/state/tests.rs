//! Unit tests of the state with time passed in: leases, backoff, credit, commits.
