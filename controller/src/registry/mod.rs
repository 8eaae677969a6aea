//! Resolving image references to digests against registries.
