//! The outputs generated from a validated model.

pub mod c_client;
pub mod cpp;
pub mod explain;
pub mod rust;

/// The C client header (`dextlink gen --c-client`); see [`c_client::emit`].
pub use c_client::emit as c_client_header;
/// `dextlink explain` as aligned text and as Markdown; see [`explain`].
pub use explain::{markdown as explain_markdown, text as explain_text};
