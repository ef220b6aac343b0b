//! Actor matching (being written).
