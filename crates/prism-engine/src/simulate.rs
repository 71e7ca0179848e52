//! `prism plan`: a rollout followed decision by decision on an idealised fleet, where every write
//! lands at once and every pod is ready, so the timeline shows what each step does.

use std::collections::BTreeMap;

use jiff::Timestamp;
use prism_api::strategy::{Duration, GateKind, Pipeline, Step};
use prism_api::validate::ValidationErrors;
use serde::Serialize;
use thiserror::Error;

use crate::capacity::Capacity;
use crate::decide::decide;
use crate::model::{
    AppPolicy, Change, ClusterInfo, ClusterObservation, Decision, Input, Phase, Progress,
    ReleaseInput, ResolvedRoute, Verdict,
};
use crate::validate::{Clusters, check_pipeline};

/// What to simulate: an incumbent at its steady state, then a contender under `pipeline`.
#[derive(Clone, Copy, Debug)]
pub struct Scenario<'a> {
    pub app: &'a AppPolicy,
    /// What each release runs at 100%.
    pub capacity: Capacity,
    pub pipeline: &'a Pipeline,
    /// Both releases' schedule.
    pub clusters: &'a [ClusterInfo],
    /// The step whose analysis (or webhook) fails, to show the rollback.
    pub fail_at: Option<&'a str>,
    /// The names the incumbent and the contender go by in their routes (`{version}`), in that
    /// order; the releases themselves are `old` and `new`.
    pub version_names: [&'a str; 2],
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Timeline {
    /// The starting state, then one row per achieved step, then (after a failure) the rollback.
    pub rows: Vec<TimelineRow>,
    pub outcome: Outcome,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Outcome {
    Complete,
    RolledBack,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TimelineRow {
    /// The step's index; None for the starting state and the end of a rollback.
    pub step: Option<u32>,
    /// The step's name, `start` or `rolled back`.
    pub name: String,
    /// Simulated time since the contender appeared: pauses and analyses take time, the rest none.
    pub elapsed: Duration,
    /// In schedule order, as the step left them.
    pub clusters: Vec<ClusterRow>,
    /// What lets the rollout leave the step: `auto`, `manual: prism promote`, `pause 5m`,
    /// `analysis: 3 × 1m`, `webhook`, joined by `, then `.
    pub gate: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRow {
    pub cluster: String,
    pub contender: VersionRow,
    pub incumbent: VersionRow,
    pub routes: Vec<ResolvedRoute>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionRow {
    pub capacity: Capacity,
    /// Percent of the default route; None without a traffic provider.
    pub weight: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum SimulateError {
    #[error(transparent)]
    Pipeline(#[from] ValidationErrors),
    #[error("--fail-at: no step is named {name:?}; the steps are {steps}")]
    UnknownStep { name: String, steps: String },
    #[error(
        "--fail-at: step {name:?} has no analysis and no webhook gate, so nothing in it can fail; pick a step with one of them"
    )]
    NothingToFail { name: String },
    #[error(
        "the rollout stopped making progress at step {step} ({phase:?}) after {decisions} decisions; this is a bug in the engine, please report it with the strategy"
    )]
    Stuck {
        step: u32,
        phase: Phase,
        decisions: usize,
    },
}

// The versions are named as `prism plan` shows them, so that `{version}` in a route reads well.
const INCUMBENT: &str = "old";
const CONTENDER: &str = "new";

/// Rolls a contender out over an idealised fleet and returns the timeline.
pub fn simulate(scenario: &Scenario) -> Result<Timeline, SimulateError> {
    let steps = &scenario.pipeline.steps;
    let fail_at = scenario
        .fail_at
        .map(|name| find_failing_step(steps, name))
        .transpose()?;
    check_pipeline(
        scenario.pipeline,
        scenario.app.traffic,
        Clusters::Scheduled(scenario.clusters),
    )?;

    let fleet = scenario
        .clusters
        .iter()
        .map(|cluster| {
            (
                cluster.name.clone(),
                ClusterObservation {
                    reachable: true,
                    ..Default::default()
                },
            )
        })
        .collect();
    let mut world = World {
        scenario,
        fleet,
        now: Timestamp::UNIX_EPOCH,
        judged_step: None,
    };

    let incumbent = world.release(INCUMBENT, world.now);
    let incumbent = world.settle_first_release(incumbent)?;
    // The contender appears once the incumbent is in place (its waves may have taken time).
    let start = world.now;
    let mut rows = vec![world.row(None, "start".into(), start, String::new())];

    let mut releases = [incumbent, world.release(CONTENDER, start)];
    // A rollout takes a few decisions per step and wave (capacity up, traffic, capacity down,
    // gate), and a rollback a few more: far fewer than this.
    let waves = scenario.clusters.len().max(1);
    let limit = 8 * (steps.len() + 2) * waves + 16;
    for decisions in 0..limit {
        let contender = &releases[1];
        let before = (contender.progress.step, contender.progress.achieved_at);
        let (observed, snapshot) = (world.fleet.clone(), releases.clone());
        let decision = decide(&world.input(&snapshot, &observed));
        let after = &decision.releases[1].progress;
        for step in achieved_steps(before, after, steps.len()) {
            let gate = gate_note(&steps[step], fail_at == Some(step));
            rows.push(world.row(Some(step as u32), steps[step].name.clone(), start, gate));
        }
        let settled = decision.changes.is_empty();
        let outcome = match after.phase {
            Phase::Complete if settled => Some(Outcome::Complete),
            Phase::Aborted if settled => Some(Outcome::RolledBack),
            _ => None,
        };
        if let Some(outcome) = outcome {
            if outcome == Outcome::RolledBack {
                rows.push(world.row(None, "rolled back".into(), start, String::new()));
            }
            return Ok(Timeline { rows, outcome });
        }
        let acted = land(&mut world.fleet, &decision);
        let judged = world.judge(&mut releases, &decision, fail_at);
        if !acted && !judged {
            let progress = &decision.releases[1].progress;
            return Err(SimulateError::Stuck {
                step: progress.step,
                phase: progress.phase,
                decisions,
            });
        }
    }
    let progress = &releases[1].progress;
    Err(SimulateError::Stuck {
        step: progress.step,
        phase: progress.phase,
        decisions: limit,
    })
}

fn find_failing_step(steps: &[Step], name: &str) -> Result<usize, SimulateError> {
    let index = steps
        .iter()
        .position(|step| step.name == name)
        .ok_or_else(|| SimulateError::UnknownStep {
            name: name.to_owned(),
            steps: steps
                .iter()
                .map(|step| step.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let step = &steps[index];
    let webhook = matches!(
        step.gate.as_ref().map(|gate| gate.kind()),
        Some(GateKind::Webhook(_))
    );
    if step.analysis.is_none() && !webhook {
        return Err(SimulateError::NothingToFail {
            name: name.to_owned(),
        });
    }
    Ok(index)
}

/// The steps first achieved between two progresses of the contender, in order.
fn achieved_steps(
    (step, achieved_at): (u32, Option<Timestamp>),
    after: &Progress,
    count: usize,
) -> impl Iterator<Item = usize> {
    let first = if achieved_at.is_some() {
        step + 1
    } else {
        step
    };
    let last_achieved = match after.phase {
        Phase::Complete => count as u32,
        _ if after.achieved_at.is_some() && after.step >= step => after.step + 1,
        _ => after.step,
    };
    (first as usize)..(last_achieved as usize).min(count)
}

fn gate_note(step: &Step, fails: bool) -> String {
    let mut notes = Vec::new();
    if let Some(analysis) = &step.analysis {
        let count = analysis.count.unwrap_or(1);
        let interval = analysis.interval.unwrap_or(Duration::from_secs(60));
        notes.push(format!("analysis: {count} × {interval}"));
    }
    match step.gate.as_ref().map(|gate| gate.kind()) {
        Some(GateKind::Manual) => notes.push("manual: prism promote".into()),
        Some(GateKind::Pause(pause)) => notes.push(format!("pause {pause}")),
        Some(GateKind::Webhook(_)) => notes.push("webhook".into()),
        Some(GateKind::Auto) | None => {}
    }
    if notes.is_empty() {
        notes.push("auto".into());
    }
    let note = notes.join(", then ");
    if fails {
        format!("{note}: fails, rolling back")
    } else {
        note
    }
}

struct World<'s> {
    scenario: &'s Scenario<'s>,
    fleet: BTreeMap<String, ClusterObservation>,
    now: Timestamp,
    /// The contender's step that its verdicts are for.
    judged_step: Option<usize>,
}

impl<'s> World<'s> {
    fn release(&self, name: &'static str, created_at: Timestamp) -> ReleaseInput<'s> {
        let [incumbent, contender] = self.scenario.version_names;
        ReleaseInput {
            name,
            version_name: if name == INCUMBENT {
                incumbent
            } else {
                contender
            },
            created_at,
            clusters: self.scenario.clusters,
            pipeline: self.scenario.pipeline,
            capacity: self.scenario.capacity,
            progress: Progress::default(),
            target_step: None,
            aborted: false,
            analysis: Verdict::Pending,
            webhook: Verdict::Pending,
            pinned: false,
            retire_requested: false,
            side: None,
            drain_reading: None,
        }
    }

    /// An input over copies of the fleet and the releases, so that the decision does not hold
    /// the world while it changes.
    fn input<'i>(
        &self,
        releases: &'i [ReleaseInput<'s>],
        observed: &'i BTreeMap<String, ClusterObservation>,
    ) -> Input<'i>
    where
        's: 'i,
    {
        Input {
            now: self.now,
            app: self.scenario.app,
            releases,
            observed,
            blocked: None,
        }
    }

    /// Deploys the incumbent as a first release and returns it complete, at its steady state.
    fn settle_first_release(
        &mut self,
        mut incumbent: ReleaseInput<'s>,
    ) -> Result<ReleaseInput<'s>, SimulateError> {
        let waves = self.scenario.clusters.len().max(1);
        let limit = 4 * (self.scenario.pipeline.steps.len() + 2) * waves;
        for _ in 0..limit {
            let (observed, snapshot) = (self.fleet.clone(), [incumbent.clone()]);
            let decision = decide(&self.input(&snapshot, &observed));
            let progress = &decision.releases[0].progress;
            if progress.phase == Phase::Complete && decision.changes.is_empty() {
                incumbent.progress = progress.clone();
                return Ok(incumbent);
            }
            incumbent.progress = progress.clone();
            self.judge_first_release(&mut incumbent, &decision);
            land(&mut self.fleet, &decision);
        }
        let progress = &incumbent.progress;
        Err(SimulateError::Stuck {
            step: progress.step,
            phase: progress.phase,
            decisions: limit,
        })
    }

    fn judge_first_release(&mut self, incumbent: &mut ReleaseInput<'s>, decision: &Decision) {
        incumbent.analysis = Verdict::Passed;
        incumbent.webhook = Verdict::Passed;
        if incumbent.progress.phase == Phase::WaitingForCommand {
            incumbent.target_step = Some(incumbent.progress.step + 1);
        }
        if let Some(wait) = decision
            .requeue_after
            .filter(|_| decision.changes.is_empty())
        {
            self.now = self.now.saturating_add(wait.0).unwrap_or(self.now);
        }
    }

    /// Plays the adapters and the person: analyses pass (or fail at `fail_at`) after their
    /// measurements, webhooks answer, manual gates are promoted, pauses run out. Returns whether
    /// anything happened.
    fn judge(
        &mut self,
        releases: &mut [ReleaseInput<'s>; 2],
        decision: &Decision,
        fail_at: Option<usize>,
    ) -> bool {
        for (release, decided) in releases.iter_mut().zip(&decision.releases) {
            release.progress = decided.progress.clone();
        }
        let contender = &mut releases[1];
        let progress = &contender.progress;
        let index = progress.step as usize;
        if !progress.phase.is_rolling_out() {
            return false;
        }
        if self.judged_step != Some(index) {
            self.judged_step = Some(index);
            contender.analysis = Verdict::Pending;
            contender.webhook = Verdict::Pending;
        }
        if progress.phase == Phase::WaitingForCommand {
            contender.target_step = Some(progress.step + 1);
            return true;
        }
        let pipeline: &'s Pipeline = self.scenario.pipeline;
        let step = &pipeline.steps[index];
        let fails = fail_at == Some(index);
        if progress.achieved_at.is_some() && self.judge_step(contender, step, fails) {
            return true;
        }
        // Time passes only while nothing lands: a pause, a soak, a wave waiting for one.
        match decision
            .requeue_after
            .filter(|_| decision.changes.is_empty())
        {
            Some(wait) => {
                self.now = self.now.saturating_add(wait.0).unwrap_or(self.now);
                true
            }
            None => false,
        }
    }

    /// The analysis and the webhook of an achieved step answer. Returns whether one did.
    fn judge_step(&mut self, contender: &mut ReleaseInput<'s>, step: &Step, fails: bool) -> bool {
        let failure = |what: &str| Verdict::Failed {
            reason: format!("{what} failed at step {:?} (simulated)", step.name),
        };
        if let Some(analysis) = step
            .analysis
            .as_ref()
            .filter(|_| contender.analysis == Verdict::Pending)
        {
            let interval = analysis.interval.unwrap_or(Duration::from_secs(60)).0;
            let runs = i32::try_from(analysis.count.unwrap_or(1)).unwrap_or(i32::MAX);
            self.now = self
                .now
                .saturating_add(interval.saturating_mul(runs))
                .unwrap_or(self.now);
            contender.analysis = if fails {
                failure("analysis")
            } else {
                Verdict::Passed
            };
            return true;
        }
        let webhook = matches!(
            step.gate.as_ref().map(|gate| gate.kind()),
            Some(GateKind::Webhook(_))
        );
        if webhook && contender.webhook == Verdict::Pending {
            contender.webhook = if fails && step.analysis.is_none() {
                failure("webhook")
            } else {
                Verdict::Passed
            };
            return true;
        }
        false
    }

    fn row(&self, step: Option<u32>, name: String, start: Timestamp, gate: String) -> TimelineRow {
        let traffic = self.scenario.app.traffic;
        let version = |observed: &ClusterObservation, release: &str| {
            let seen = observed.versions.get(release);
            VersionRow {
                capacity: seen.map_or(Capacity::ZERO, |seen| seen.capacity),
                weight: traffic.then(|| seen.map_or(0, |seen| seen.weight)),
            }
        };
        let clusters = self
            .scenario
            .clusters
            .iter()
            .map(|cluster| {
                let observed = &self.fleet[&cluster.name];
                ClusterRow {
                    cluster: cluster.name.clone(),
                    contender: version(observed, CONTENDER),
                    incumbent: version(observed, INCUMBENT),
                    routes: observed.routes.clone(),
                }
            })
            .collect();
        TimelineRow {
            step,
            name,
            elapsed: Duration(start.duration_until(self.now)),
            clusters,
            gate,
        }
    }
}

/// Lands every write of `decision` on `fleet` as an idealised fleet would: at once, with every
/// pod ready. Returns whether there was anything to write.
///
/// # Panics
///
/// If the decision writes to a cluster `fleet` lacks: the fleet is the decision's input.
pub fn land(fleet: &mut BTreeMap<String, ClusterObservation>, decision: &Decision) -> bool {
    for change in &decision.changes {
        let observed = fleet
            .get_mut(change.cluster())
            .expect("a scheduled cluster");
        match change {
            Change::Capacity {
                release, capacity, ..
            } => {
                observed.set_capacity(release, *capacity).ready = capacity.floor();
            }
            Change::Traffic { traffic, .. } => {
                for weight in &traffic.weights {
                    if let Some(version) = observed.versions.get_mut(weight.release) {
                        version.weight = weight.percent;
                    }
                }
                observed.routes = traffic.routes.clone();
            }
            Change::Remove { release, .. } => {
                observed.versions.remove(*release);
            }
            Change::Idle { release, .. } => {
                observed.set_capacity(release, Capacity::ZERO).ready = 0;
            }
        }
    }
    !decision.changes.is_empty()
}
