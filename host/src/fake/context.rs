//! Fake power_supply / meminfo / cgroup / thermal trees (issue 6): being written.
