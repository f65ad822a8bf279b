//! The admin API's request and reply bodies that the cutover uses, defined
//! once: the proxy parses the requests and writes the replies with them,
//! the migrator writes the requests and parses the replies, and the OpenAPI
//! document's test checks each against its schema (`docs/admin-api.yaml`).

use serde::{Deserialize, Serialize};

/// Which statements a pause holds back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Statements that write the table (anything but a pure read).
    Writes,
    /// Every statement on the table.
    All,
}

/// `POST /api/pauses`: pause (or renew the pause of) logical tables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PauseRequest {
    pub tables: Vec<String>,
    #[serde(default = "PauseRequest::default_scope")]
    pub scope: Scope,
    /// How long a statement may wait before it is refused.
    #[serde(default = "PauseRequest::default_max_queue_ms")]
    pub max_queue_ms: u64,
    /// How long the pause lasts unless renewed or resumed.
    #[serde(default = "PauseRequest::default_lease_ms")]
    pub lease_ms: u64,
}

impl PauseRequest {
    fn default_scope() -> Scope {
        Scope::Writes
    }

    fn default_max_queue_ms() -> u64 {
        1000
    }

    fn default_lease_ms() -> u64 {
        60_000
    }
}

/// `POST /api/pauses/resume`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResumeRequest {
    pub tables: Vec<String>,
}

/// `POST /api/rules/activate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivateRequest {
    pub version: u64,
}

/// One pause in effect, as `GET /api/pauses` (and the pause and resume
/// calls) list them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    /// The logical table, lower case.
    pub table: String,
    pub scope: Scope,
    /// When the table was paused (renewals keep it).
    pub since_unix_ms: u64,
    pub max_queue_ms: u64,
    pub lease_remaining_ms: u64,
    /// Statements waiting now.
    pub queued: u64,
    /// Sessions whose open transaction (or running statement) wrote the
    /// table; the migrator waits for none.
    pub in_flight_transactions: u64,
    /// Statements refused after waiting `max_queue_ms`.
    pub refused: u64,
}

/// `PUT /api/rules/staged`'s reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Staged {
    pub staged_version: u64,
    /// What the staged version changes from the active one.
    pub changes: Vec<String>,
}

/// `DELETE /api/rules/staged`'s reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discarded {
    /// The staged version dropped, if one was staged.
    pub discarded_version: Option<u64>,
}

/// `POST /api/rules/activate`'s reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activated {
    pub active_version: u64,
    /// Sessions still running on (or keeping, in a transaction) an older
    /// version.
    pub sessions_on_older_versions: u64,
    /// Where the previous configuration file was kept, when there is one.
    pub previous_config_file: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_request_takes_its_defaults_and_refuses_unknown_fields() {
        let request: PauseRequest = serde_json::from_str(r#"{"tables": ["users"]}"#).unwrap();
        assert_eq!(
            request,
            PauseRequest {
                tables: vec!["users".into()],
                scope: Scope::Writes,
                max_queue_ms: 1000,
                lease_ms: 60_000,
            }
        );
        let unknown = serde_json::from_str::<PauseRequest>(r#"{"tables": [], "wait": 1}"#);
        assert!(unknown
            .unwrap_err()
            .to_string()
            .contains("unknown field `wait`"));
        assert_eq!(serde_json::to_string(&Scope::All).unwrap(), r#""all""#);
    }
}
