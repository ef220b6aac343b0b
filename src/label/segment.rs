//! Sentence segmentation (being written).
