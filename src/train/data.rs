//! Labelled examples for training and evaluation (being written).
