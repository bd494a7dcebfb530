//! Labelled datasets (placeholder).
