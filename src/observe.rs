//! Reading the live machine into a `Snapshot` (being written).
