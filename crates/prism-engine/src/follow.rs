//! A release's progress on a pipeline edited under it. A strategy change applies to the release
//! in flight (it never makes a new release, so it restarts nothing): the release goes on from the
//! step it is at, found again by its name.

use jiff::Timestamp;
use prism_api::strategy::Pipeline;

use crate::model::Progress;

/// How a release's current step maps onto its pipeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Followed {
    /// The current step is where it was, under the same name (the pipeline is the one the
    /// progress was recorded on, or the step itself was edited): its achievement, its clusters'
    /// records, and its analysis and webhook records hold.
    Same,
    /// The current step is found under its name at another index (steps were added or removed
    /// before it), or, recorded without a name, is past the end and taken for the last: its
    /// achievement and its clusters' records hold; the adapters' records, kept by index, are of
    /// another step.
    Moved { from: u32 },
    /// The current step is gone (removed or renamed): the release enters the step at the same
    /// index, or the last one, anew.
    Replaced { from: u32 },
}

impl Followed {
    /// Whether the records that the analysis and the webhook gate keep of the current step, by
    /// its index, are still of the current step.
    pub fn keeps_step_records(&self) -> bool {
        *self == Followed::Same
    }
}

impl Progress {
    /// Follows the current step onto `pipeline`, which may have been edited since this progress
    /// was recorded: by its name where the step still exists, else at the same index (the last
    /// one past the end), entered anew. A pipeline without steps leaves the progress as it is.
    pub fn follow(&mut self, pipeline: &Pipeline) -> Followed {
        let steps = &pipeline.steps;
        let Some(last) = steps.len().checked_sub(1) else {
            return Followed::Same;
        };
        let step = self.step as usize;
        let from = self.step;
        let followed = match &self.step_name {
            Some(name) if steps.get(step).is_none_or(|s| &s.name != name) => {
                match steps.iter().position(|s| &s.name == name) {
                    Some(index) => {
                        self.step = index as u32;
                        Followed::Moved { from }
                    }
                    None => {
                        self.enter(step.min(last));
                        Followed::Replaced { from }
                    }
                }
            }
            // Recorded without a name, past the end: the last step, its achievement kept.
            None if step > last => {
                self.step = last as u32;
                Followed::Moved { from }
            }
            _ => Followed::Same,
        };
        self.step_name = Some(steps[self.step as usize].name.clone());
        followed
    }

    /// Moves to `step`: the clusters' records are of the step left.
    pub(crate) fn enter(&mut self, step: usize) {
        self.step = step as u32;
        self.achieved_at = None;
        self.clusters.clear();
    }
}

/// The moment to record for `now`: rounded up to the whole second, since the status keeps whole
/// seconds. A wait counted from a moment rounded down (a pause, a soak, a progress deadline)
/// would end up to a second before its duration from the real moment.
pub(crate) fn recorded(now: Timestamp) -> Timestamp {
    if now.subsec_nanosecond() == 0 {
        return now;
    }
    Timestamp::from_second(now.as_second().saturating_add(1)).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use prism_api::strategy::Step;

    use super::*;
    use crate::model::ClusterStepProgress;

    fn pipeline(names: &[&str]) -> Pipeline {
        Pipeline {
            steps: names
                .iter()
                .map(|name| Step {
                    name: (*name).into(),
                    ..Step::default()
                })
                .collect(),
            ..Pipeline::default()
        }
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + second).unwrap()
    }

    fn achieved(step: u32, name: &str) -> Progress {
        Progress {
            step,
            step_name: Some(name.into()),
            achieved_at: Some(at(10)),
            clusters: BTreeMap::from([(
                "c1".to_owned(),
                ClusterStepProgress {
                    since: at(5),
                    achieved_at: Some(at(10)),
                    failed: None,
                },
            )]),
            ..Progress::default()
        }
    }

    #[test]
    fn an_edited_step_at_its_place_keeps_its_progress() {
        let mut progress = achieved(1, "b");
        let before = progress.clone();
        assert_eq!(progress.follow(&pipeline(&["a", "b", "c"])), Followed::Same);
        assert_eq!(progress, before);
    }

    #[test]
    fn a_step_found_elsewhere_by_its_name_keeps_its_achievement() {
        let mut progress = achieved(1, "b");
        let followed = progress.follow(&pipeline(&["x", "y", "a", "b"]));
        assert_eq!(followed, Followed::Moved { from: 1 });
        assert!(!followed.keeps_step_records());
        assert_eq!(progress.step, 3);
        assert_eq!(progress.achieved_at, Some(at(10)));
        assert_eq!(progress.clusters.len(), 1);
    }

    #[test]
    fn a_step_gone_is_entered_anew_at_its_index_or_the_last() {
        let mut progress = achieved(1, "b");
        assert_eq!(
            progress.follow(&pipeline(&["a", "renamed", "c"])),
            Followed::Replaced { from: 1 }
        );
        assert_eq!(
            (progress.step, progress.step_name.as_deref()),
            (1, Some("renamed"))
        );
        assert_eq!(progress.achieved_at, None);
        assert!(progress.clusters.is_empty());

        let mut progress = achieved(3, "d");
        assert_eq!(
            progress.follow(&pipeline(&["a", "b"])),
            Followed::Replaced { from: 3 }
        );
        assert_eq!(
            (progress.step, progress.step_name.as_deref()),
            (1, Some("b"))
        );
        assert_eq!(progress.achieved_at, None);
    }

    #[test]
    fn a_progress_recorded_without_a_name_is_named_and_kept() {
        let mut progress = Progress {
            step: 1,
            ..achieved(0, "")
        };
        progress.step_name = None;
        assert_eq!(progress.follow(&pipeline(&["a", "b"])), Followed::Same);
        assert_eq!(
            (progress.step, progress.step_name.as_deref()),
            (1, Some("b"))
        );
        assert_eq!(progress.achieved_at, Some(at(10)));
        // Following again changes nothing.
        let before = progress.clone();
        assert_eq!(progress.follow(&pipeline(&["a", "b"])), Followed::Same);
        assert_eq!(progress, before);
    }

    #[test]
    fn a_recorded_moment_is_never_before_the_real_one() {
        let whole = at(0);
        assert_eq!(recorded(whole), whole);
        for nanos in [1, 250_000_000, 999_999_999] {
            let real = whole
                .checked_add(jiff::SignedDuration::from_nanos(nanos))
                .unwrap();
            assert_eq!(recorded(real), at(1));
            assert!(recorded(real) >= real);
        }
    }
}
