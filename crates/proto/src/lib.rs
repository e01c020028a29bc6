//! Ration's wire formats: the Auth0-compatible token endpoint (`/oauth/token`) and Management API
//! (`/api/v2`) shapes, and the conversions between them and `ration-domain` types.
//!
//! Architecture invariant: all serde lives here. Domain types are plain data without
//! `Serialize`/`Deserialize`, so a wire-format change can never silently change what is stored or
//! decided. Every conversion from the wire validates, and every validation error names the
//! offending parameter or field path, because operators fix their requests from that text alone.

#![warn(missing_docs)]

mod form;
pub mod json;
pub mod mgmt;
pub mod oauth;
