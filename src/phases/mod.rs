//! The init and join plans: which phases run, in which order, for each
//! role. The phases themselves are thin: they call the pure renderers and
//! the host layer.

pub mod runner;
