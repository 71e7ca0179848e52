//! Pauses on the sandbox, timed from outside: a watch on the Release notes when each step is seen
//! achieved and when the next one starts, and a pause never ends before its duration from the
//! moment its step was achieved, even though statuses keep whole seconds, and even for a Release
//! deleted mid-rollout and made again under the same name.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{application, apply, setup, wait_for_phase, wait_for_step};
use futures::StreamExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use prism_api::release::ReleasePhase;
use prism_api::{Application, Release};
use prism_testkit::fixtures::web_template;
use prism_testkit::{AbortOnDrop, DEFAULT_TIMEOUT, TestEnv};
use serde_json::{Value, json};

const PAUSE: Duration = Duration::from_secs(3);

/// One look at the Release, as the watch delivered it.
#[derive(Clone, Debug)]
struct Sample {
    seen: Instant,
    uid: String,
    step: Option<u32>,
    achieved: bool,
    phase: Option<ReleasePhase>,
}

/// Every version of Release `name` the watch delivers, with the moment it arrived.
fn watch(releases: &Api<Release>, name: &str) -> (Arc<Mutex<Vec<Sample>>>, AbortOnDrop<()>) {
    let samples = Arc::new(Mutex::new(Vec::new()));
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let stream = watcher(releases.clone(), config).applied_objects();
    let sink = samples.clone();
    let task = prism_testkit::spawn_for_test(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(next) = stream.next().await {
            let Ok(release) = next else { continue };
            let status = release.status.clone().unwrap_or_default();
            sink.lock().unwrap().push(Sample {
                seen: Instant::now(),
                uid: release.uid().unwrap_or_default(),
                step: status.step,
                achieved: status.achieved_at.is_some(),
                phase: status.phase,
            });
        }
    });
    (samples, task)
}

/// How long each paused step of the Release with `uid` lasted, from the first sample showing it
/// achieved to the first showing a later step (or the Release complete).
fn pauses(samples: &[Sample], uid: &str, steps: std::ops::Range<u32>) -> Vec<(u32, Duration)> {
    let samples: Vec<&Sample> = samples.iter().filter(|s| s.uid == uid).collect();
    steps
        .filter_map(|step| {
            let achieved = samples
                .iter()
                .find(|s| s.step == Some(step) && s.achieved)?;
            let left = samples.iter().find(|s| {
                s.step.is_some_and(|at| at > step) || s.phase == Some(ReleasePhase::Complete)
            })?;
            Some((step, left.seen.duration_since(achieved.seen)))
        })
        .collect()
}

/// Reconciles the application every 200 ms (for at most a minute) by annotating it, as a busy
/// application's watch events do: a reconcile in the last second of a pause must not end it.
fn poke(apps: &Api<Application>, name: &str) -> AbortOnDrop<()> {
    let (apps, name) = (apps.clone(), name.to_owned());
    prism_testkit::spawn_for_test(async move {
        for count in 0..300 {
            let patch =
                json!({"metadata": {"annotations": {"tests.prism.dev/poke": count.to_string()}}});
            let _ = apps
                .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

fn pause(name: &str, weight: u32) -> Value {
    json!({"name": name, "capacity": {"contender": "100%"}, "traffic": {"contender": weight}, "gate": {"pause": format!("{}s", PAUSE.as_secs())}})
}

fn spec(image: &str, steps: Value) -> Value {
    json!({"template": web_template(image, 2), "strategy": {"steps": steps}})
}

fn full() -> Value {
    json!({"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"}, "traffic": {"contender": 100}})
}

#[tokio::test]
async fn a_pause_never_ends_before_its_duration_from_the_moment_its_step_is_achieved()
-> anyhow::Result<()> {
    let env = TestEnv::new("pause-duration").await;
    let (_client, apps, releases, _controller) = setup(&env).await?;
    apply(&apps, &application("web", spec("web:1", json!([full()])))?).await?;
    wait_for_phase(&releases, "web-1", ReleasePhase::Complete).await?;

    let (samples, _watch) = watch(&releases, "web-2");
    let _poke = poke(&apps, "web");
    let steps = json!([
        pause("a", 10),
        pause("b", 20),
        pause("c", 30),
        pause("d", 40),
        pause("e", 50),
        full()
    ]);
    apply(&apps, &application("web", spec("web:2", steps))?).await?;
    let done = wait_for_phase(&releases, "web-2", ReleasePhase::Complete).await?;
    let uid = done.uid().unwrap_or_default();
    let timed = pauses(&samples.lock().unwrap(), &uid, 0..5);
    assert_eq!(timed.len(), 5, "every pause timed: {timed:?}");
    for (step, lasted) in &timed {
        assert!(
            *lasted >= PAUSE,
            "the pause of step {} lasted {lasted:?}, less than {PAUSE:?}: {timed:?}",
            step + 1
        );
    }
    Ok(())
}

/// Waits, as closely as the watch allows, until `samples` show a Release other than those of
/// `uids` at `step`, achieved; returns its uid.
async fn seen_achieved(
    samples: &Mutex<Vec<Sample>>,
    step: u32,
    uids: &[String],
) -> anyhow::Result<String> {
    let deadline = Instant::now() + DEFAULT_TIMEOUT;
    loop {
        let found = samples
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.step == Some(step) && s.achieved && !uids.contains(&s.uid))
            .map(|s| s.uid.clone());
        if let Some(uid) = found {
            return Ok(uid);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "step {} was never seen achieved",
            step + 1
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The Release deleted right after its paused step was achieved, and made again by the
/// controller under the same name: the new one pauses its full duration, counted from its own
/// achievement.
#[tokio::test]
async fn a_release_deleted_mid_rollout_and_made_again_pauses_its_full_duration()
-> anyhow::Result<()> {
    let env = TestEnv::new("pause-recreated").await;
    let (_client, apps, releases, _controller) = setup(&env).await?;
    apply(&apps, &application("web", spec("web:1", json!([full()])))?).await?;
    wait_for_phase(&releases, "web-1", ReleasePhase::Complete).await?;

    let (samples, _watch) = watch(&releases, "web-2");
    let _poke = poke(&apps, "web");
    let steps = json!([
        pause("a", 10),
        {"name": "hold", "capacity": {"contender": "100%"}, "traffic": {"contender": 20}, "gate": {"manual": true}},
        full()
    ]);
    // The rollout starts just after a whole second of the clock, so that web-2, deleted once it
    // achieved its step and made again, achieves it again a few tenths into that second: a
    // moment kept in whole seconds and rounded down would date it that much too early. (A
    // moment to start at, not a wait for something to happen.)
    let into_second = SystemTime::now().duration_since(UNIX_EPOCH)?.subsec_nanos();
    tokio::time::sleep(Duration::from_nanos(u64::from(1_000_000_000 - into_second))).await;
    apply(&apps, &application("web", spec("web:2", steps))?).await?;
    let first = seen_achieved(&samples, 0, &[]).await?;
    releases.delete("web-2", &Default::default()).await?;
    // The controller makes web-2 again: the Application's template is still web:2.
    let last = seen_achieved(&samples, 0, &[first]).await?;
    let held = wait_for_step(&releases, "web-2", 1).await?;
    assert_eq!(held.uid().as_deref(), Some(last.as_str()));
    let samples = samples.lock().unwrap();
    let made_again = samples.iter().find(|s| s.uid == last);
    assert!(
        made_again.is_some_and(|s| !s.achieved),
        "the Release made again starts with a status of its own: {made_again:?}"
    );
    let timed = pauses(&samples, &last, 0..1);
    assert_eq!(timed.len(), 1, "the pause timed: {timed:?}");
    let lasted = timed[0].1;
    assert!(
        lasted >= PAUSE,
        "the pause of the Release made again lasted {lasted:?}, less than {PAUSE:?}"
    );
    Ok(())
}
