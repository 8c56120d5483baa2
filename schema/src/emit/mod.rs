//! The outputs generated from a validated model.

pub mod c_client;
pub mod cpp;
pub mod explain;
