//! Credentials-exchange Actions as configured: the editable action, its immutable deployed
//! versions, and the ordered bindings to the trigger.

use crate::time::UnixTime;

/// The only trigger Ration runs.
pub const CREDENTIALS_EXCHANGE: &str = "credentials-exchange";

/// An Action as edited through the Management API. Editing changes this, never what runs: only a
/// deploy (which snapshots it into an [`ActionVersion`]) does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Action {
    pub id: String,
    /// Unique.
    pub name: String,
    pub code: String,
    pub runtime: String,
    /// `(id, version)` pairs; Ration accepts only `credentials-exchange`.
    pub supported_triggers: Vec<(String, String)>,
    pub secrets: Vec<ActionSecret>,
    /// Number of the deployed version, if any.
    pub deployed_version: Option<u32>,
    /// Whether the current code and secrets equal the deployed version's.
    pub all_changes_deployed: bool,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}

/// A secret of an Action. `value` is plaintext in memory; it is sealed before it reaches the store
/// and never returned by the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionSecret {
    pub name: String,
    pub value: String,
    pub updated_at: UnixTime,
}

/// An immutable snapshot of an Action taken by a deploy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionVersion {
    pub id: String,
    pub action_id: String,
    /// 1, 2, 3… per action.
    pub number: u32,
    pub code: String,
    pub runtime: String,
    pub secrets: Vec<ActionSecret>,
    pub created_at: UnixTime,
}

/// One entry of the trigger's ordered binding list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionBinding {
    pub id: String,
    pub action_id: String,
    pub display_name: String,
    pub created_at: UnixTime,
}
