//! Shared test support. Each test file includes it with `mod support;` and uses what it needs.
#![allow(dead_code)]

pub mod demo;
pub mod host;
pub mod rewrite;

#[allow(unused_imports)]
pub use demo::*;
