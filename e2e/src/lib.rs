//! Shared helpers for the end-to-end scenarios.

pub mod api;
pub mod bench;
pub mod cluster;
pub mod controller;
pub mod http;
pub mod k8s;
pub mod plugin;
pub mod registry;
pub mod web;
