//! Context probe (issue 6): being written.
