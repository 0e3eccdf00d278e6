//! The network layer under everything that talks HTTP: agents, TLS roots,
//! requests, retries with jitter inside a budget.

pub(crate) mod h1;
pub mod http;
