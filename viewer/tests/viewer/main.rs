//! The viewer's tests, in one binary: ingestion (statuses, per-item errors,
//! formats, hostile bodies), queries, retention, and the real exporter end
//! to end.

mod binary;
mod browser;
mod exporter;
mod ingestion;
mod queries;
mod support;
