//! One decision: roles, the contender's step, every cluster's next move, conditions and events.

use jiff::Timestamp;
use prism_api::strategy::{
    ClusterScope, Duration, GateKind, HeaderMatch, QueryParamMatch, Route, RouteMatch, RouteTo,
    Share, Step,
};

use crate::converge::{ClusterTarget, NOTHING, VersionTarget, converge};
use crate::effective::{ClusterPlace, StepState, in_scope, state_at};
use crate::follow::recorded;
use crate::model::{
    Abort, AbortCause, Change, ClusterDecision, ClusterInfo, ClusterObservation, ClusterPhase,
    Condition, ConditionKind, Decision, Event, EventKind, Input, Phase, Progress, ReleaseDecision,
    ReleaseInput, ResolvedRoute, RetireCause, Role, Verdict,
};
use crate::retire::{self, drained};
use crate::schedules::Schedules;
use crate::waves::{Scope, WaveRules};

/// Decides the next move of one application. Pure: the same input gives the same decision.
pub fn decide<'a>(input: &Input<'a>) -> Decision<'a> {
    let schedules = Schedules::of(input.releases);
    let mut events = Vec::new();
    let mut progress: Vec<Progress> = input
        .releases
        .iter()
        .map(|release| release.progress.clone())
        .collect();
    apply_commands(input, &mut progress, &mut events);
    let mut roles = Roles::assign(input, &progress);

    let mut requeue_after = roles.ttl_expiry;
    let (fleet, hold) = match roles.contender {
        Some(contender) => {
            let mut rollout = Rollout {
                input,
                schedules: &schedules,
                contender,
                events: &mut events,
                requeue_after: None,
            };
            let (fleet, hold) = rollout.advance(&mut roles, &mut progress);
            requeue_after = earliest(requeue_after, rollout.requeue_after);
            (fleet, hold)
        }
        None => (Fleet::plan(input, &schedules, &roles, &[]), None),
    };
    let Fleet {
        clusters,
        mut changes,
    } = fleet;
    remove_strays(input, &schedules, &roles, &mut changes);

    let releases = input
        .releases
        .iter()
        .enumerate()
        .map(|(index, release)| {
            let retired = retire::advance(
                input,
                &schedules,
                &roles,
                index,
                &mut progress[index],
                &mut changes,
                &mut events,
                &mut requeue_after,
            );
            let progress = &mut progress[index];
            if retired && progress.phase == Phase::RollingBack {
                progress.phase = Phase::Aborted;
                events.push(Event {
                    release: release.name,
                    kind: EventKind::Warning,
                    reason: "Aborted",
                    message: format!("rolled back in every cluster; {}", abort_message(progress)),
                });
            }
            let hold = hold.as_ref().filter(|_| roles.contender == Some(index));
            // The contender's progress is named (it followed its pipeline); steps it entered since
            // are named here.
            if progress.step_name.is_some() {
                progress.step_name = release
                    .pipeline
                    .steps
                    .get(progress.step as usize)
                    .map(|step| step.name.clone());
            }
            let mut decision = ReleaseDecision {
                release: release.name,
                role: roles.of[index],
                conditions: conditions(input, index, progress, hold),
                progress: progress.clone(),
                retired,
            };
            decision.conditions.push(retire::live_condition(&decision));
            decision
        })
        .collect();
    retire::keep_drained_objects(input, &progress, &mut changes);

    Decision {
        releases,
        clusters,
        changes,
        events,
        requeue_after,
    }
}

/// A person's abort and a newer release's arrival change phases before anything else.
fn apply_commands<'a>(input: &Input<'a>, progress: &mut [Progress], events: &mut Vec<Event<'a>>) {
    let newest = mainline_newest(input).unwrap_or(0);
    for (index, (release, progress)) in input.releases.iter().zip(progress).enumerate() {
        let unfinished = progress.phase.is_rolling_out();
        if release.side.is_some() {
            // A side version has no steps: it is complete as soon as it exists.
            if unfinished {
                progress.phase = Phase::Complete;
            }
            continue;
        }
        if release.aborted && (unfinished || progress.phase == Phase::Complete) {
            start_rollback(
                release.name,
                progress,
                AbortCause::Command,
                "aborted by a person".into(),
                events,
            );
        } else if unfinished && index < newest {
            progress.phase = Phase::Superseded;
            events.push(Event {
                release: release.name,
                kind: EventKind::Normal,
                reason: "Superseded",
                message: format!(
                    "release {} replaced it before it completed",
                    input.releases[newest].name
                ),
            });
        }
    }
}

fn start_rollback<'a>(
    release: &'a str,
    progress: &mut Progress,
    cause: AbortCause,
    message: String,
    events: &mut Vec<Event<'a>>,
) {
    progress.phase = Phase::RollingBack;
    events.push(Event {
        release,
        kind: EventKind::Warning,
        reason: "RollbackStarted",
        message: format!("rolling back: {message}"),
    });
    progress.abort = Some(Abort { cause, message });
}

fn abort_message(progress: &Progress) -> &str {
    progress
        .abort
        .as_ref()
        .map_or("aborted", |abort| abort.message.as_str())
}

/// Who is who among the live releases.
pub(crate) struct Roles {
    pub(crate) of: Vec<Role>,
    pub(crate) contender: Option<usize>,
    pub(crate) incumbent: Option<usize>,
    /// When the next retained version reaches its TTL.
    ttl_expiry: Option<Duration>,
    /// Per release, why a complete one that is no longer live retires, while it has not started.
    pub(crate) causes: Vec<Option<(RetireCause, String)>>,
}

impl Roles {
    fn assign(input: &Input, progress: &[Progress]) -> Roles {
        let count = input.releases.len();
        let side = |index: usize| input.releases[index].side.is_some();
        // Side versions are outside the mainline: they are never its contender, incumbent or
        // retained versions, and never count towards `max_versions`.
        let complete = |index: usize| progress[index].phase == Phase::Complete && !side(index);
        let newest = mainline_newest(input);
        let contender = newest.filter(|&newest| progress[newest].phase.is_rolling_out());
        let incumbent = (0..contender.unwrap_or(count))
            .rev()
            .find(|&index| complete(index));
        let mut of = vec![Role::Retiring; count];
        let mut causes = vec![None; count];
        for index in (0..count).filter(|&index| side(index)) {
            // A retirement that started goes on by its record (it never goes back).
            if progress[index].retirement.is_some() {
                continue;
            }
            if input.releases[index].retire_requested {
                causes[index] = Some((
                    RetireCause::SideVersion,
                    "its SideVersion was deleted or changed, or its ttl passed".into(),
                ));
            } else {
                of[index] = Role::Side;
            }
        }
        let mut live = 0;
        for (index, role) in [(contender, Role::Contender), (incumbent, Role::Incumbent)] {
            if let Some(index) = index {
                of[index] = role;
                live += 1;
            }
        }
        // Older complete releases, newest first, but those whose retirement started (it never
        // goes back) or that a person retires.
        let older: Vec<usize> = (0..incumbent.unwrap_or(0))
            .rev()
            .filter(|&index| complete(index) && progress[index].retirement.is_none())
            .collect();
        let max = input.app.max_versions;
        for &index in &older {
            let release = &input.releases[index];
            if release.retire_requested {
                causes[index] = Some((RetireCause::Command, "retired by a person".into()));
            } else if release.pinned {
                // Pinned versions take their places first: the oldest unpinned make room.
                of[index] = Role::Retained;
                live += 1;
            }
        }
        let mut ttl_expiry = None;
        for &index in &older {
            let release = &input.releases[index];
            if release.retire_requested || release.pinned {
                continue;
            }
            let age = release.created_at.duration_until(input.now);
            let left = input.app.version_ttl.map(|ttl| ttl.0.saturating_sub(age));
            let young = left.is_none_or(|left| left.is_positive());
            // Only a rainbow (more than 2 versions) keeps older complete versions alive.
            if young && max > 2 && live < max {
                of[index] = Role::Retained;
                live += 1;
                ttl_expiry = earliest(ttl_expiry, left.map(Duration));
            } else if young {
                causes[index] = Some((
                    RetireCause::MaxVersions,
                    format!("a newer version would exceed versions.max ({max})"),
                ));
            } else if let Some(ttl) = input.app.version_ttl {
                causes[index] =
                    Some((RetireCause::Ttl, format!("older than versions.ttl ({ttl})")));
            }
        }
        let mut roles = Roles {
            of,
            contender,
            incumbent,
            ttl_expiry,
            causes,
        };
        retire::draining_roles(input, progress, &mut roles);
        roles
    }

    pub(crate) fn is_live(&self, index: usize) -> bool {
        !matches!(self.of[index], Role::Retiring | Role::Draining)
    }
}

/// The newest release of the mainline: side versions never supersede or contend.
pub(crate) fn mainline_newest(input: &Input) -> Option<usize> {
    (0..input.releases.len())
        .rev()
        .find(|&index| input.releases[index].side.is_none())
}

fn earliest(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Why the contender is not moving on, for its conditions.
enum Hold<'a> {
    /// A cluster in the step's scope has not reached the step yet.
    Converging {
        cluster: &'a str,
        phase: ClusterPhase,
    },
    /// A cluster in the step's scope waits for its wave: the clusters before it soak until then.
    Queued {
        cluster: &'a str,
        until: Timestamp,
    },
    /// Every cluster in the step's scope reached it; the last to do so soaks until then.
    Soaking {
        until: Timestamp,
    },
    /// A RolloutBlock, with its message, keeps the achieved step from advancing.
    Blocked(&'a str),
    Analysis,
    Inconclusive(String),
    Pause {
        until: Timestamp,
    },
    Webhook,
    /// The step's webhook refused, or did not answer: asked again later.
    WebhookHeld(String),
    Command,
    NoSteps,
}

struct Rollout<'a, 'e> {
    input: &'e Input<'a>,
    schedules: &'e Schedules<'a>,
    contender: usize,
    events: &'e mut Vec<Event<'a>>,
    requeue_after: Option<Duration>,
}

impl<'a> Rollout<'a, '_> {
    /// Moves the contender on as far as the observed fleet allows: to a person's target step, then
    /// through every step that is achieved and whose gate is open.
    /// Returns what holds the contender, if it is still the contender.
    fn advance(
        &mut self,
        roles: &mut Roles,
        all_progress: &mut [Progress],
    ) -> (Fleet<'a>, Option<Hold<'a>>) {
        let input = self.input;
        let release = &input.releases[self.contender];
        let steps = &release.pipeline.steps;
        let Some(last) = steps.len().checked_sub(1) else {
            let states = self.states(|place| state_at(release.pipeline, 0, place));
            let fleet = Fleet::plan(input, self.schedules, roles, &states);
            return (fleet, Some(Hold::NoSteps));
        };
        let progress = &mut all_progress[self.contender];
        // The adapters judged the step at the index they keep records by: when the pipeline was
        // edited and the current step moved or was replaced, that is another step, and the
        // current one waits for verdicts of its own.
        let judged_step = progress
            .follow(release.pipeline)
            .keeps_step_records()
            .then_some(progress.step as usize);

        if let Some(verdict) = judged_step.and_then(|judged| self.failure(judged, &steps[judged])) {
            let (cause, message) = verdict;
            start_rollback(release.name, progress, cause, message, self.events);
            *roles = Roles::assign(input, all_progress);
            return (Fleet::plan(input, self.schedules, roles, &[]), None);
        }

        let first_release = roles.incumbent.is_none();
        let command = release.target_step.map(|target| target as usize);
        // A block holds a person's promotion, but not a first release on its way to its last
        // step: that is where a first release starts.
        let jump = if first_release {
            Some(last)
        } else {
            command.filter(|&target| target > progress.step as usize && input.blocked.is_none())
        };
        if let Some(target) = jump
            .map(|target| target.min(last))
            .filter(|&target| target != progress.step as usize)
        {
            let (reason, why) = if first_release {
                (
                    "InitialDeploy",
                    "no incumbent to shift from, going straight to the last step",
                )
            } else {
                ("Promoted", "promoted by a person")
            };
            self.event(
                reason,
                format!("{why}: step {}", release.pipeline.step_label(target)),
            );
            progress.enter(target);
        }
        let gates_skipped_at_last = command.is_some_and(|target| target > last);

        // Each pass advances one step or returns, and the last step returns.
        loop {
            let step = progress.step as usize;
            let everywhere = first_release || step == last;
            let scope = steps[step].clusters.as_ref().filter(|_| !everywhere);
            let StepMove {
                fleet,
                hold,
                soaked_at,
                over_budget,
            } = self.move_clusters(roles, step, scope, first_release, progress);
            if let Some(message) = over_budget {
                let cause = AbortCause::ProgressDeadlineExceeded;
                start_rollback(release.name, progress, cause, message, self.events);
                *roles = Roles::assign(input, all_progress);
                return (Fleet::plan(input, self.schedules, roles, &[]), None);
            }
            if let Some(hold) = hold {
                progress.phase = Phase::Progressing;
                return (fleet, Some(hold));
            }
            let achieved_at = *progress.achieved_at.get_or_insert_with(|| {
                self.event(
                    "StepAchieved",
                    format!("step {} achieved", release.pipeline.step_label(step)),
                );
                recorded(input.now)
            });

            let fresh = judged_step == Some(step);
            let hold = if gates_skipped_at_last && step == last {
                None
            } else {
                self.gate(&steps[step], fresh, achieved_at)
                    .or_else(|| self.soak(soaked_at))
            };
            let hold = match input.blocked {
                // A person's promotion skips the gates, not a block.
                Some(block) if hold.is_none() || command.is_some_and(|target| target > step) => {
                    Some(Hold::Blocked(block))
                }
                _ => hold,
            };
            if let Some(hold) = hold {
                let phase = match hold {
                    Hold::Command => Phase::WaitingForCommand,
                    Hold::Inconclusive(_) | Hold::WebhookHeld(_) | Hold::Blocked(_) => {
                        Phase::Paused
                    }
                    _ => Phase::Progressing,
                };
                // Events go out on transitions, and the phase is what the previous decision
                // left: a block shows as Paused, so the decision that first finds one holding
                // the step is the one that turns the phase to Paused. (An inconclusive analysis
                // that passes while a block holds goes from one pause to the other unannounced;
                // its own warning said that the release had stopped.)
                if phase != progress.phase {
                    let label = release.pipeline.step_label(step);
                    match &hold {
                        Hold::Command => self.event(
                            "WaitingForCommand",
                            format!("step {label} is achieved; run `prism promote` to go on"),
                        ),
                        Hold::Inconclusive(reason) => {
                            self.warning("AnalysisInconclusive", reason.clone())
                        }
                        Hold::WebhookHeld(reason) => self.warning(
                            "WebhookHeld",
                            format!("step {label} is achieved; its webhook holds it: {reason}"),
                        ),
                        Hold::Blocked(block) => self.warning(
                            "RolloutBlocked",
                            format!("step {label} is achieved; a RolloutBlock holds it: {block}"),
                        ),
                        _ => {}
                    }
                }
                progress.phase = phase;
                return (fleet, Some(hold));
            }

            if step == last {
                progress.phase = Phase::Complete;
                self.event("Complete", "rolled out to every cluster".into());
                *roles = Roles::assign(input, all_progress);
                return (Fleet::plan(input, self.schedules, roles, &[]), None);
            }
            progress.enter(step + 1);
            progress.phase = Phase::Progressing;
            self.event(
                "StepAdvanced",
                format!(
                    "from step {} to step {}",
                    release.pipeline.step_label(step),
                    release.pipeline.step_label(step + 1)
                ),
            );
        }
    }

    /// The contender's state in each cluster of the fleet, from its place in the contender's
    /// schedule; None where the contender is not scheduled.
    fn states(
        &self,
        state: impl Fn(ClusterPlace<'a>) -> StepState<'a>,
    ) -> Vec<Option<StepState<'a>>> {
        (0..self.schedules.clusters.len())
            .map(|cluster| self.schedules.place(self.contender, cluster).map(&state))
            .collect()
    }

    /// Moves the clusters in the scope of `step` on, wave by wave, and keeps each one's record of
    /// its way through the step in `progress.clusters`: clusters already at the step stay there;
    /// the others start, in schedule order, at most `maxConcurrency` at once, once every cluster
    /// that started before them has soaked; the rest keep the previous step's state meanwhile.
    fn move_clusters(
        &mut self,
        roles: &Roles,
        step: usize,
        scope: Option<&ClusterScope>,
        first_release: bool,
        progress: &mut Progress,
    ) -> StepMove<'a> {
        let (input, schedules, now) = (self.input, self.schedules, self.input.now);
        let pipeline = input.releases[self.contender].pipeline;
        let mut states = self.states(|place| state_at(pipeline, step, place));
        let at_step = Fleet::plan(input, schedules, roles, &states);
        // The contender is the newest release, so its clusters lead, in its schedule order.
        let in_scope = (0..schedules.clusters.len())
            .filter(|&cluster| {
                schedules
                    .place(self.contender, cluster)
                    .is_some_and(|place| in_scope(scope, place))
            })
            .map(|cluster| {
                let info: &'a ClusterInfo = schedules.clusters[cluster];
                (cluster, info.name.as_str())
            })
            .collect();
        let mut scope = Scope::new(WaveRules::of(pipeline), in_scope, &mut progress.clusters);
        self.observe(&mut scope, &at_step, step);
        let soaked_at = scope.soaked_at();
        scope.start_next_wave(now);

        let queued: Vec<usize> = scope.queued().map(|(cluster, _)| cluster).collect();
        let mut fleet = if queued.is_empty() {
            at_step
        } else {
            for &cluster in &queued {
                if let Some(place) = schedules.place(self.contender, cluster) {
                    // A first release has no previous step: it runs nothing before its wave.
                    let previous = step.checked_sub(1).filter(|_| !first_release);
                    states[cluster] = Some(previous.map_or(StepState::INITIAL, |previous| {
                        state_at(pipeline, previous, place)
                    }));
                }
            }
            Fleet::plan(input, schedules, roles, &states)
        };
        for &cluster in &queued {
            let decided = &mut fleet.clusters[cluster];
            if decided.phase == ClusterPhase::Achieved {
                decided.phase = ClusterPhase::Queued;
            }
        }

        let hold = if let Some(cluster) = scope.moving() {
            if let Some(deadline) = scope.next_deadline() {
                self.requeue_at(deadline);
            }
            let decided = &fleet.clusters[cluster];
            Some(Hold::Converging {
                cluster: decided.cluster,
                phase: decided.phase,
            })
        } else if let Some(&cluster) = queued.first() {
            // Nothing moves, so the next wave did not start: the clusters before it soak.
            let until = soaked_at.unwrap_or(recorded(now));
            self.requeue_at(until);
            Some(Hold::Queued {
                cluster: fleet.clusters[cluster].cluster,
                until,
            })
        } else {
            None
        };
        StepMove {
            over_budget: over_budget(&scope, &pipeline.step_label(step)),
            fleet,
            hold,
            soaked_at,
        }
    }

    /// Records what each cluster in scope shows at `step`, and fails those past their deadline.
    fn observe(&mut self, scope: &mut Scope, at_step: &Fleet, step: usize) {
        let now = self.input.now;
        let label = self.input.releases[self.contender]
            .pipeline
            .step_label(step);
        for (cluster, name) in scope.clusters.clone() {
            let decided = &at_step.clusters[cluster];
            let achieved = decided.phase == ClusterPhase::Achieved;
            let rules = scope.rules;
            let Some(record) = scope.observe(name, achieved, now) else {
                continue;
            };
            let Some(deadline) = record.deadline(&rules).filter(|&deadline| deadline <= now) else {
                continue;
            };
            let waited = Duration(record.since.duration_until(deadline));
            let observed = self.input.observed.get(name);
            let reason = format!(
                "step {label}: not achieved within {waited}: {}",
                waiting_for(decided, observed)
            );
            record.failed = Some(reason.clone());
            self.warning("ClusterFailed", format!("cluster {name}: {reason}"));
        }
    }

    /// Holds an achieved step until every cluster in its scope has soaked.
    fn soak(&mut self, soaked_at: Option<Timestamp>) -> Option<Hold<'a>> {
        let until = soaked_at.filter(|&until| self.input.now < until)?;
        self.requeue_at(until);
        Some(Hold::Soaking { until })
    }

    fn requeue_at(&mut self, at: Timestamp) {
        let after = Duration(self.input.now.duration_until(at));
        self.requeue_after = earliest(self.requeue_after, Some(after));
    }

    /// A failed analysis or webhook of the step the adapters judged.
    fn failure(&self, judged_step: usize, step: &Step) -> Option<(AbortCause, String)> {
        let release = &self.input.releases[self.contender];
        let failed = |verdict: &Verdict| match verdict {
            Verdict::Failed { reason } => Some(reason.clone()),
            _ => None,
        };
        let name = &step.name;
        let step_number = judged_step + 1;
        if step.analysis.is_some()
            && let Some(reason) = failed(&release.analysis)
        {
            let message = format!("analysis of step {step_number} ({name}) failed: {reason}");
            return Some((AbortCause::AnalysisFailed, message));
        }
        let webhook = matches!(
            step.gate.as_ref().map(|gate| gate.kind()),
            Some(GateKind::Webhook(_))
        );
        if webhook && let Some(reason) = failed(&release.webhook) {
            let message = format!("webhook of step {step_number} ({name}) failed: {reason}");
            return Some((AbortCause::WebhookFailed, message));
        }
        None
    }

    /// What keeps an achieved step from advancing, if anything. Verdicts only count for the step
    /// the adapters judged (`fresh`); a step reached within this decision waits for its own.
    fn gate(&mut self, step: &Step, fresh: bool, achieved_at: Timestamp) -> Option<Hold<'a>> {
        let release = &self.input.releases[self.contender];
        let verdict = |verdict: &Verdict| {
            if fresh {
                verdict.clone()
            } else {
                Verdict::Pending
            }
        };
        if step.analysis.is_some() {
            match verdict(&release.analysis) {
                Verdict::Pending | Verdict::Failed { .. } => return Some(Hold::Analysis),
                Verdict::Inconclusive { reason } => return Some(Hold::Inconclusive(reason)),
                Verdict::Passed | Verdict::NotRequired => {}
            }
        }
        match step
            .gate
            .as_ref()
            .map_or(GateKind::Auto, |gate| gate.kind())
        {
            GateKind::Auto => None,
            GateKind::Manual => Some(Hold::Command),
            GateKind::Pause(pause) => {
                let until = achieved_at
                    .saturating_add(pause.0)
                    .unwrap_or(Timestamp::MAX);
                (self.input.now < until).then(|| {
                    self.requeue_at(until);
                    Hold::Pause { until }
                })
            }
            GateKind::Webhook(_) => match verdict(&release.webhook) {
                Verdict::Passed | Verdict::NotRequired => None,
                Verdict::Inconclusive { reason } => Some(Hold::WebhookHeld(reason)),
                Verdict::Pending | Verdict::Failed { .. } => Some(Hold::Webhook),
            },
        }
    }

    fn event(&mut self, reason: &'static str, message: String) {
        let release = self.input.releases[self.contender].name;
        self.events.push(Event {
            release,
            kind: EventKind::Normal,
            reason,
            message,
        });
    }

    fn warning(&mut self, reason: &'static str, message: String) {
        let release = self.input.releases[self.contender].name;
        self.events.push(Event {
            release,
            kind: EventKind::Warning,
            reason,
            message,
        });
    }
}

/// What moving the clusters of a step's scope on gives.
struct StepMove<'a> {
    fleet: Fleet<'a>,
    /// What keeps the step from being achieved: a cluster moving, or one waiting for its wave.
    hold: Option<Hold<'a>>,
    /// When every cluster in scope that has not failed has soaked; None while one is moving.
    soaked_at: Option<Timestamp>,
    /// Why the release rolls back, when more clusters failed than the budget allows.
    over_budget: Option<String>,
}

/// What a cluster that has not reached its step waits for, as people read it: first of all the
/// writes it refuses, which no wait will get through.
fn waiting_for(cluster: &ClusterDecision, observed: Option<&ClusterObservation>) -> String {
    if let Some(refused) = observed.and_then(|observed| observed.refused.as_deref()) {
        return format!("its writes are refused: {refused}");
    }
    if let Some(pending) = observed.and_then(|observed| observed.traffic_pending.as_deref())
        && cluster.phase == ClusterPhase::Traffic
    {
        return format!("its traffic is not in place: {pending}");
    }
    let ready = |release: &str| {
        observed
            .and_then(|observed| observed.versions.get(release))
            .map_or(0, |version| version.ready)
    };
    let short = cluster
        .versions
        .iter()
        .find(|version| ready(version.release) < version.target.floor());
    match (cluster.phase, short) {
        (ClusterPhase::CapacityUp, Some(version)) => format!(
            "{} has {}/{} ready",
            version.release,
            ready(version.release),
            version.target.floor()
        ),
        (phase, _) => format!("it {}", describe(phase)),
    }
}

/// Why the release rolls back, when more clusters of `scope` failed than its budget allows.
fn over_budget(scope: &Scope, step_label: &str) -> Option<String> {
    let failed = scope.failed();
    let budget = scope.rules.failure_budget;
    (failed.len() > budget).then(|| {
        format!(
            "{} of the clusters missed their progress deadline at step {step_label}, more than the failure budget of {budget}: {}",
            failed.len(),
            failed.join(", ")
        )
    })
}

/// The next move of every cluster of the releases' schedules.
struct Fleet<'a> {
    clusters: Vec<ClusterDecision<'a>>,
    changes: Vec<Change<'a>>,
}

impl<'a> Fleet<'a> {
    /// `contender` is the contender's state per cluster, None where it is not scheduled; empty
    /// without a contender.
    fn plan(
        input: &Input<'a>,
        schedules: &Schedules<'a>,
        roles: &Roles,
        contender: &[Option<StepState<'a>>],
    ) -> Fleet<'a> {
        let mut changes = Vec::new();
        let clusters = schedules
            .clusters
            .iter()
            .enumerate()
            .map(|(index, cluster)| {
                let observed = input.observed.get(&cluster.name);
                let state = contender.get(index).copied().flatten();
                let target = cluster_target(input, schedules, roles, index, state, observed);
                match observed.filter(|observed| observed.reachable) {
                    Some(observed) => converge(
                        &cluster.name,
                        target,
                        observed,
                        input.app.traffic,
                        &mut changes,
                    ),
                    None => unreachable_cluster(&cluster.name, target),
                }
            })
            .collect();
        Fleet { clusters, changes }
    }
}

fn unreachable_cluster<'a>(cluster: &'a str, target: ClusterTarget<'a>) -> ClusterDecision<'a> {
    ClusterDecision {
        cluster,
        phase: ClusterPhase::Unreachable,
        versions: target
            .versions
            .iter()
            .map(VersionTarget::as_wanted)
            .collect(),
        traffic: None,
    }
}

/// What the current step asks of one cluster, for every release that runs or ran there, given
/// the contender's state there (None where it is not scheduled, or without a contender).
fn cluster_target<'a>(
    input: &Input<'a>,
    schedules: &Schedules<'a>,
    roles: &Roles,
    cluster: usize,
    contender_state: Option<StepState<'a>>,
    observed: Option<&ClusterObservation>,
) -> ClusterTarget<'a> {
    let releases = input.releases;
    let here = |index: usize| schedules.is_scheduled(index, cluster);
    // Without its incumbent here, the contender takes all of the cluster's traffic.
    let incumbent = roles.incumbent.filter(|&incumbent| here(incumbent));
    let mut versions = Vec::with_capacity(releases.len());
    let mut sides = Vec::new();
    for (index, release) in releases.iter().enumerate() {
        let seen = observed.and_then(|observed| observed.versions.get(release.name));
        // Outside its schedule, a release goes as a retiring one does.
        let role = if here(index) {
            roles.of[index]
        } else {
            Role::Retiring
        };
        let (share, weight) = match (role, contender_state) {
            // A side version runs at full capacity until it is Drained, and never has weight.
            (Role::Side, _) => (Share::Percent(100), 0),
            (Role::Draining, _) if release.side.is_some() => (Share::Percent(100), 0),
            (Role::Contender, Some(state)) => {
                let weight = if incumbent.is_some() {
                    state.contender_weight
                } else {
                    100
                };
                (state.contender, weight)
            }
            (Role::Incumbent, Some(state)) => (state.incumbent, 100 - state.contender_weight),
            (Role::Contender | Role::Incumbent, None) => (Share::Percent(100), 100),
            // A draining version keeps the capacity it had retained, without traffic or routes.
            (Role::Retained | Role::Draining, _) => {
                (retained_share(input, schedules, roles, index, cluster), 0)
            }
            (Role::Retiring, _) if seen.is_none() => continue,
            (Role::Retiring, _) => (Share::Percent(0), 0),
        };
        let capacity = release.capacity.share(share);
        let target = VersionTarget {
            release: release.name,
            capacity,
            weight,
            seen: *seen.unwrap_or(&NOTHING),
        };
        if release.side.is_some() {
            sides.push(target);
        } else {
            versions.push(target);
        }
    }

    let live = || {
        (0..releases.len())
            .filter(|&index| roles.is_live(index) && here(index) && releases[index].side.is_none())
            .map(|index| &releases[index])
    };
    let steady_routes = |incumbent: usize| {
        let pipeline = releases[incumbent].pipeline;
        let last = pipeline.steps.len().saturating_sub(1);
        schedules
            .place(incumbent, cluster)
            .and_then(|place| state_at(pipeline, last, place).routes)
            .map(|routes| resolve_routes(routes, Some(&releases[incumbent]), None, live()))
            .unwrap_or_default()
    };
    let routes = match (roles.contender, contender_state) {
        (
            Some(contender),
            Some(StepState {
                routes: Some(routes),
                ..
            }),
        ) => resolve_routes(
            routes,
            Some(&releases[contender]),
            incumbent.map(|incumbent| &releases[incumbent]),
            live(),
        ),
        _ => incumbent.map(steady_routes).unwrap_or_default(),
    };
    let side_routes = (0..releases.len())
        .filter(|&index| roles.of[index] == Role::Side && here(index))
        .flat_map(|index| side_routes(&releases[index]))
        .collect();
    ClusterTarget {
        versions,
        routes,
        sides,
        side_routes,
        max_surge: contender_state.and_then(|state| state.max_surge),
        vacate: vacated(schedules, roles, cluster),
    }
}

/// Whether the application leaves `cluster`: no live release is scheduled there, while one is
/// elsewhere. The cluster's traffic then goes to the application's other clusters (whatever
/// spreads it across clusters stops sending it where nothing serves), so its versions go without
/// waiting for traffic to move. With no live release anywhere, there is nowhere else for the
/// traffic to go, and a version that has some keeps serving it.
pub(crate) fn vacated(schedules: &Schedules, roles: &Roles, cluster: usize) -> bool {
    let mut live = (0..roles.of.len())
        .filter(|&index| roles.is_live(index))
        .peekable();
    live.peek().is_some() && live.all(|index| !schedules.is_scheduled(index, cluster))
}

/// A retained version keeps the share the incumbent had at the last step of the rollout that
/// superseded it: the rollout of the next complete release.
fn retained_share(
    input: &Input,
    schedules: &Schedules,
    roles: &Roles,
    retained: usize,
    cluster: usize,
) -> Share {
    let successor = (retained + 1..input.releases.len()).find(|&index| {
        matches!(roles.of[index], Role::Incumbent | Role::Retained)
            || (input.releases[index].progress.phase == Phase::Complete
                && input.releases[index].side.is_none())
    });
    successor
        .and_then(|successor| {
            let pipeline = input.releases[successor].pipeline;
            let last = pipeline.steps.len().saturating_sub(1);
            let place = schedules.place(successor, cluster)?;
            Some(state_at(pipeline, last, place).incumbent)
        })
        .unwrap_or(Share::Percent(100))
}

/// The routes of a step, each to one release; an `each` route once per live release. `{version}`
/// in a match is the name the release goes by in its routes.
fn resolve_routes<'r, 'a: 'r>(
    routes: &[Route],
    contender: Option<&'r ReleaseInput<'a>>,
    incumbent: Option<&'r ReleaseInput<'a>>,
    live: impl Iterator<Item = &'r ReleaseInput<'a>> + Clone,
) -> Vec<ResolvedRoute> {
    let mut resolved = Vec::new();
    for route in routes {
        let mut push = |release: &ReleaseInput| {
            resolved.push(ResolvedRoute {
                name: route.name.clone(),
                version: release.name.to_owned(),
                matches: with_version(&route.matches, release.version_name),
            })
        };
        match route.to {
            RouteTo::Contender => contender.into_iter().for_each(&mut push),
            RouteTo::Incumbent => incumbent.into_iter().for_each(&mut push),
            RouteTo::Each => live.clone().for_each(&mut push),
        }
    }
    resolved
}

/// A side version's own routes, each to it alone.
fn side_routes(release: &ReleaseInput) -> Vec<ResolvedRoute> {
    let routes = release.side.map(|side| side.routes).unwrap_or_default();
    routes
        .iter()
        .map(|route| ResolvedRoute {
            name: route.name.clone(),
            version: release.name.to_owned(),
            matches: with_version(&route.matches, release.version_name),
        })
        .collect()
}

fn with_version(matches: &RouteMatch, version: &str) -> RouteMatch {
    let fill = |text: &String| text.replace("{version}", version);
    RouteMatch {
        header: matches.header.as_ref().map(|header| HeaderMatch {
            name: fill(&header.name),
            value: fill(&header.value),
            match_type: header.match_type,
        }),
        path_prefix: matches.path_prefix.as_ref().map(fill),
        query_param: matches.query_param.as_ref().map(|param| QueryParamMatch {
            name: fill(&param.name),
            value: fill(&param.value),
            match_type: param.match_type,
        }),
        subdomain: matches.subdomain.as_ref().map(fill),
    }
}

/// The removal of what a live release still has in a cluster outside its schedule, once it has
/// neither capacity nor traffic there.
fn remove_strays<'a>(
    input: &Input<'a>,
    schedules: &Schedules<'a>,
    roles: &Roles,
    changes: &mut Vec<Change<'a>>,
) {
    for (index, release) in input.releases.iter().enumerate() {
        if !roles.is_live(index) {
            continue;
        }
        for (cluster, &info) in schedules.clusters.iter().enumerate() {
            let stray = !schedules.is_scheduled(index, cluster)
                && input
                    .observed
                    .get(&info.name)
                    .is_some_and(|observed| observed.versions.contains_key(release.name));
            if stray
                && drained(
                    input,
                    release.name,
                    info,
                    vacated(schedules, roles, cluster),
                )
            {
                changes.push(Change::Remove {
                    cluster: &info.name,
                    release: release.name,
                });
            }
        }
    }
}

fn conditions(
    input: &Input,
    index: usize,
    progress: &Progress,
    hold: Option<&Hold>,
) -> Vec<Condition> {
    let release = &input.releases[index];
    let steps = &release.pipeline.steps;
    let step = progress.step as usize;
    let condition = |kind, status, reason, message: String| Condition {
        kind,
        status,
        reason,
        message,
    };
    // A condition that does not hold says which phase the release is in instead.
    let no = |kind| condition(kind, false, progress.phase.as_str(), String::new());
    let current = || {
        if step < steps.len() {
            release.pipeline.step_label(step)
        } else {
            "-".into()
        }
    };

    let progressing = match (progress.phase, hold) {
        (Phase::RollingBack, _) => condition(
            ConditionKind::Progressing,
            true,
            "RollingBack",
            format!("rolling back: {}", abort_message(progress)),
        ),
        (Phase::Aborted, _) => condition(
            ConditionKind::Progressing,
            false,
            "Aborted",
            abort_message(progress).to_owned(),
        ),
        (Phase::Complete, _) => condition(
            ConditionKind::Progressing,
            false,
            "Complete",
            "rolled out to every cluster".into(),
        ),
        (Phase::Superseded, _) => condition(
            ConditionKind::Progressing,
            false,
            "Superseded",
            "a newer release replaced it before it completed".into(),
        ),
        (_, Some(Hold::NoSteps)) => condition(
            ConditionKind::Progressing,
            false,
            "InvalidStrategy",
            "the strategy has no steps: add at least one step".into(),
        ),
        (_, Some(Hold::Inconclusive(reason))) => condition(
            ConditionKind::Progressing,
            false,
            "AnalysisInconclusive",
            format!(
                "step {}: {reason}; waiting for a conclusive analysis or `prism promote`",
                current()
            ),
        ),
        (_, Some(Hold::Blocked(block))) => condition(
            ConditionKind::Progressing,
            false,
            "RolloutBlocked",
            format!(
                "step {} is achieved; a RolloutBlock holds it: {block}",
                current()
            ),
        ),
        (_, Some(Hold::Converging { cluster, phase })) => condition(
            ConditionKind::Progressing,
            true,
            "Converging",
            format!(
                "step {}: cluster {cluster} {}",
                current(),
                converging(input, cluster, *phase)
            ),
        ),
        (_, Some(Hold::Queued { cluster, until })) => condition(
            ConditionKind::Progressing,
            true,
            "WaitingForWave",
            format!(
                "step {}: cluster {cluster} waits for its wave; the clusters before it soak until {until}",
                current()
            ),
        ),
        (_, Some(Hold::Soaking { until })) => condition(
            ConditionKind::Progressing,
            true,
            "Soaking",
            format!(
                "step {} is achieved; its clusters soak until {until}",
                current()
            ),
        ),
        (_, Some(Hold::Analysis)) => condition(
            ConditionKind::Progressing,
            true,
            "WaitingForAnalysis",
            format!("step {} is achieved; waiting for its analysis", current()),
        ),
        (_, Some(Hold::Pause { until })) => condition(
            ConditionKind::Progressing,
            true,
            "Pausing",
            format!("step {} is achieved; pausing until {until}", current()),
        ),
        (_, Some(Hold::WebhookHeld(reason))) => condition(
            ConditionKind::Progressing,
            false,
            "WebhookHeld",
            format!(
                "step {} is achieved; its webhook holds it: {reason}; it is asked again, or run `prism promote`",
                current()
            ),
        ),
        (_, Some(Hold::Webhook)) => condition(
            ConditionKind::Progressing,
            true,
            "WaitingForWebhook",
            format!(
                "step {} is achieved; waiting for its webhook to pass",
                current()
            ),
        ),
        (_, Some(Hold::Command)) => condition(
            ConditionKind::Progressing,
            true,
            "WaitingForCommand",
            format!("step {} is achieved", current()),
        ),
        (_, _) => condition(
            ConditionKind::Progressing,
            true,
            "Progressing",
            format!("step {}", current()),
        ),
    };

    let step_achieved = match (progress.phase, hold) {
        (Phase::Complete, _) => condition(
            ConditionKind::StepAchieved,
            true,
            "Complete",
            "the last step is achieved".into(),
        ),
        (
            _,
            Some(Hold::Converging {
                cluster,
                phase: ClusterPhase::Unreachable,
            }),
        ) => condition(
            ConditionKind::StepAchieved,
            false,
            "ClusterUnreachable",
            format!(
                "cluster {cluster} is unreachable; step {} holds until it is back",
                current()
            ),
        ),
        (_, Some(Hold::Converging { cluster, phase })) => condition(
            ConditionKind::StepAchieved,
            false,
            "Converging",
            format!("cluster {cluster} {}", converging(input, cluster, *phase)),
        ),
        (_, Some(Hold::Queued { cluster, .. })) => condition(
            ConditionKind::StepAchieved,
            false,
            "WaitingForWave",
            format!("cluster {cluster} waits for its wave"),
        ),
        (phase, Some(_)) if phase.is_rolling_out() && progress.achieved_at.is_some() => condition(
            ConditionKind::StepAchieved,
            true,
            "Achieved",
            format!("step {} achieved", current()),
        ),
        _ => no(ConditionKind::StepAchieved),
    };

    let waiting = if progress.phase == Phase::WaitingForCommand {
        condition(
            ConditionKind::WaitingForCommand,
            true,
            "ManualGate",
            format!(
                "step {} is achieved; run `prism promote` to go on",
                current()
            ),
        )
    } else {
        no(ConditionKind::WaitingForCommand)
    };
    let blocked = match hold {
        Some(Hold::Blocked(block)) => condition(
            ConditionKind::Blocked,
            true,
            "RolloutBlocked",
            (*block).to_owned(),
        ),
        _ => condition(
            ConditionKind::Blocked,
            false,
            "NotBlocked",
            "no RolloutBlock stops this Release".into(),
        ),
    };
    let complete = if progress.phase == Phase::Complete {
        condition(
            ConditionKind::Complete,
            true,
            "RolloutComplete",
            "rolled out to every cluster".into(),
        )
    } else {
        no(ConditionKind::Complete)
    };
    let aborted = match (&progress.abort, progress.phase) {
        (Some(abort), Phase::RollingBack | Phase::Aborted) => condition(
            ConditionKind::Aborted,
            true,
            abort.cause.reason(),
            abort.message.clone(),
        ),
        _ => no(ConditionKind::Aborted),
    };
    vec![
        progressing,
        step_achieved,
        waiting,
        blocked,
        complete,
        aborted,
    ]
}

/// What a converging cluster does, as people read it: above all, that it refuses the writes;
/// and why its traffic is not in place, when its provider says.
fn converging(input: &Input, cluster: &str, phase: ClusterPhase) -> String {
    let observed = input.observed.get(cluster);
    if let Some(refused) = observed.and_then(|observed| observed.refused.as_deref()) {
        return format!("refuses the writes: {refused}");
    }
    match observed.and_then(|observed| observed.traffic_pending.as_deref()) {
        Some(pending) if phase == ClusterPhase::Traffic => {
            format!("{}: {pending}", describe(phase))
        }
        _ => describe(phase).to_owned(),
    }
}

fn describe(phase: ClusterPhase) -> &'static str {
    match phase {
        ClusterPhase::CapacityUp => "is scaling up (waiting for ready pods)",
        ClusterPhase::Traffic => "is shifting traffic",
        ClusterPhase::CapacityDown => "is scaling down",
        ClusterPhase::Achieved => "has achieved the step",
        ClusterPhase::Queued => "waits for its wave",
        ClusterPhase::Unreachable => "is unreachable",
    }
}
