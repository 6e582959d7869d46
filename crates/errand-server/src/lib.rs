//! errand's HTTP API.
