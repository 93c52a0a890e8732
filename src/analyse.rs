//! Roles, jobs and findings over a `Snapshot` (being written).
