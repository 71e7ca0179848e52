//! `prism abort APP`: rolls the contender back by setting its `spec.aborted`, which the API
//! server never lets go back to false.
//!
//! [`abortion`] is pure; [`abort`] reads and writes through a [`Connection`].

use kube::ResourceExt;
use prism_api::{Application, Release};
use serde_json::json;

use crate::Error;
use crate::connection::Connection;
use crate::releases;

/// The write `prism abort` makes: the Release to abort.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Abortion {
    pub release: String,
    /// What was done, for people.
    pub message: String,
}

/// The abort of `app`'s contender. Refused when nothing is rolling out, or when the contender is
/// aborted already.
pub fn abortion(app: &Application, releases: &[Release]) -> Result<Abortion, Error> {
    let name = app.name_any();
    let release = releases::rolling_out(&name, releases).map_err(|why| {
        Error::Refused(format!(
            "nothing to abort: {why}. `prism rollback {name}` rolls back to an earlier complete version"
        ))
    })?;
    let release_name = release.name_any();
    let incumbent = app.status.as_ref().and_then(|s| s.incumbent.as_deref());
    let message = match incumbent {
        Some(incumbent) => {
            format!("aborted {release_name}: the controller rolls back to {incumbent}")
        }
        None => format!("aborted {release_name}: the controller rolls it back"),
    };
    Ok(Abortion {
        release: release_name,
        message,
    })
}

/// Aborts the contender of the Application `app`, and says what was done.
pub async fn abort(connection: &Connection, app: &str) -> Result<String, Error> {
    let (application, releases) = connection.read(app).await?;
    let abortion = abortion(&application, &releases)?;
    connection
        .merge_patch(
            &connection.releases(),
            &abortion.release,
            json!({"spec": {"aborted": true}}),
        )
        .await?;
    Ok(abortion.message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::releases::fixtures::{application, release};
    use serde_json::json;

    fn app() -> Application {
        application("web:3", json!({"contender": "web-3", "incumbent": "web-2"}))
    }

    #[test]
    fn abort_aborts_the_release_being_rolled_out() {
        let releases = [
            release(2, "web:2", json!({"phase": "Complete"})),
            release(3, "web:3", json!({"phase": "Paused"})),
        ];
        assert_eq!(
            abortion(&app(), &releases).unwrap(),
            Abortion {
                release: "web-3".into(),
                message: "aborted web-3: the controller rolls back to web-2".into(),
            }
        );
    }

    #[test]
    fn abort_is_refused_when_the_contender_is_aborted_already() {
        let mut aborted = release(3, "web:3", json!({"phase": "RollingBack"}));
        aborted.spec.aborted = true;
        let error = abortion(&app(), &[aborted]).unwrap_err();
        assert!(matches!(error, crate::Error::Refused(_)));
        assert_eq!(
            error.to_string(),
            "nothing to abort: web-3, the newest Release of web, is aborted (RollingBack). `prism rollback web` rolls back to an earlier complete version"
        );
    }

    #[test]
    fn abort_is_refused_when_the_newest_release_is_complete() {
        let releases = [release(3, "web:3", json!({"phase": "Complete"}))];
        assert!(matches!(
            abortion(&app(), &releases).unwrap_err(),
            crate::Error::Refused(_)
        ));
    }
}
