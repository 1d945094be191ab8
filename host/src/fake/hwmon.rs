//! Fake hwmon trees (issue 6): being written.
