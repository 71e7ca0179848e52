//! The actions on an Application that the CLI and the HTTP server both offer, and the rights
//! each needs: the server allows a caller an action only when a SubjectAccessReview grants them
//! every one of these, which are the requests `prism <action>` makes with the caller's own
//! kubeconfig.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Promote,
    Abort,
    Rollback,
}

impl Action {
    pub const ALL: [Action; 3] = [Action::Promote, Action::Abort, Action::Rollback];

    /// The (verb, resource of `prism.dev`) pairs the action needs in the Application's
    /// namespace.
    pub fn needs(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Action::Promote => &[
                ("get", "applications"),
                ("list", "releases"),
                ("list", "rolloutblocks"),
                ("patch", "releases"),
            ],
            Action::Abort => &[
                ("get", "applications"),
                ("list", "releases"),
                ("patch", "releases"),
            ],
            Action::Rollback => &[
                ("get", "applications"),
                ("list", "releases"),
                ("list", "rolloutblocks"),
                ("patch", "applications"),
                ("patch", "releases"),
            ],
        }
    }
}
