//! End to end in headless Chromium: the fleet page and an application page follow a live
//! rollout across three clusters without a reload, a pod failing in c2 shows with its reason,
//! promote from the UI moves the step, and a caller without the right sees no button and is
//! refused if they try. Screenshots of both pages at two widths are saved under
//! `target/screenshots/` for a person to look at.

mod common;

use common::{
    Served, allow_clusters, application, apply, caller, forbid_clusters, operator_rules,
    rolled_to_first_step, serve, viewer_rules, wait_for,
};
use prism_api::release::ReleasePhase;
use prism_testkit::TestEnv;
use prism_testkit::browser::Browser;
use serde_json::json;

/// A browser of `width`×`height` signed in to the server with `token`.
async fn signed_in(
    served: &Served,
    token: &str,
    width: u32,
    height: u32,
) -> anyhow::Result<Browser> {
    let browser = Browser::start(width, height).await?;
    browser.goto(&format!("{}/", served.url)).await?;
    browser.type_into_testid("signin-token", token).await?;
    browser.click_testid("signin-submit").await?;
    browser.wait_for_testid("fleet-clusters").await?;
    Ok(browser)
}

/// WebDriver's codes of the Enter and Escape keys.
const ENTER: &str = "\u{E007}";
const ESCAPE: &str = "\u{E00C}";

/// The `data-testid` of the element that has the focus.
async fn focused(browser: &Browser) -> anyhow::Result<serde_json::Value> {
    Ok(browser
        .client()
        .execute(
            "return document.activeElement.dataset.testid || null;",
            vec![],
        )
        .await?)
}

/// Marks the page, so that a test can tell a live update from a reload: a reload forgets it.
async fn mark(browser: &Browser) -> anyhow::Result<()> {
    browser
        .client()
        .execute("window.prismTestMark = 'kept'; return null;", vec![])
        .await?;
    Ok(())
}

async fn still_marked(browser: &Browser) -> anyhow::Result<bool> {
    let mark = browser
        .client()
        .execute("return window.prismTestMark || null;", vec![])
        .await?;
    Ok(mark == json!("kept"))
}

#[tokio::test]
async fn the_pages_follow_a_live_rollout_and_promote_moves_the_step() -> anyhow::Result<()> {
    let env = TestEnv::new("ui-rollout").await;
    let served = serve(&env).await?;
    let ns = env.namespace();
    let operator = caller(&env, ns, "operator", operator_rules()).await?;
    let viewer = caller(&env, ns, "viewer", viewer_rules()).await?;
    allow_clusters(&env, "operator").await?;

    // web rolls out across the three clusters; worker's pods crash in c2 alone.
    apply(&served.apps, &application("web", "web:1", 3, json!({}))?).await?;
    let crash_in_c2 = json!({"sandbox.prism.dev/fail-c2": "CrashLoopBackOff"});
    apply(
        &served.apps,
        &application("worker", "worker:1", 2, crash_in_c2)?,
    )
    .await?;
    wait_for(&served.releases, "web-1", ReleasePhase::Complete, None).await?;

    let browser = signed_in(&served, &operator, 1280, 800).await?;
    mark(&browser).await?;
    for cluster in ["c1", "c2", "c3"] {
        let card = format!("cluster-{}", env.cluster_object_name(cluster));
        browser.wait_for_text_testid(&card, "Ready").await?;
    }
    let row = format!("app-row-{ns}-web");
    browser.wait_for_testid(&row).await?;
    let c2 = env.cluster_object_name("c2");
    let failing = browser
        .wait_for_text_testid("failing-pods", "CrashLoopBackOff")
        .await?;
    assert!(failing.contains(&c2), "the failing pod is in c2: {failing}");
    assert!(
        !failing.contains(&env.cluster_object_name("c1")),
        "{failing}"
    );

    // A new version: the fleet page shows its first step without a reload.
    apply(&served.apps, &application("web", "web:2", 3, json!({}))?).await?;
    browser.wait_for_text_testid(&row, "step 1/3").await?;
    assert!(still_marked(&browser).await?, "the fleet page was reloaded");
    browser.screenshot("fleet-1280").await?;

    // The application page: where the rollout is, per cluster and version.
    browser.click(&format!("[data-testid='{row}'] a")).await?;
    browser.wait_for_text_testid("app-step", "step 1/3").await?;
    mark(&browser).await?;
    let step = browser
        .attribute("[data-testid='timeline-step-0']", "data-state")
        .await?;
    assert_eq!(step.as_deref(), Some("current"));
    for cluster in ["c1", "c2", "c3"] {
        let cell = format!("grid-cell-{}-web-2", env.cluster_object_name(cluster));
        browser.wait_for_testid(&cell).await?;
    }
    browser
        .wait_for_text_testid("app-waiting", "promote")
        .await?;

    // Promote from the UI, behind a confirmation: the step moves, live.
    browser.click_testid("promote").await?;
    browser.click_testid("confirm").await?;
    browser
        .wait_for_text_testid("action-result", "promoted web-2")
        .await?;
    browser.wait_for_text_testid("app-step", "step 2/3").await?;
    wait_for(
        &served.releases,
        "web-2",
        ReleasePhase::WaitingForCommand,
        Some(1),
    )
    .await?;
    assert!(
        still_marked(&browser).await?,
        "the application page was reloaded"
    );
    browser.screenshot_full_page("application-1280").await?;

    // From the keyboard: Enter on a focused button opens its confirmation with the safe choice
    // focused, Escape closes it, nothing is sent, and focus returns to the button.
    browser
        .client()
        .execute(
            "document.querySelector(\"[data-testid='abort']\").focus(); return null;",
            vec![],
        )
        .await?;
    browser
        .client()
        .active_element()
        .await?
        .send_keys(ENTER)
        .await?;
    browser.wait_for("dialog[open]").await?;
    assert_eq!(focused(&browser).await?, json!("cancel"));
    browser
        .client()
        .active_element()
        .await?
        .send_keys(ESCAPE)
        .await?;
    browser.wait_for_absent("dialog[open]").await?;
    assert_eq!(focused(&browser).await?, json!("abort"));
    assert!(
        !served.releases.get("web-2").await?.spec.aborted,
        "Escape aborted the rollout"
    );
    browser.close().await?;

    // A wall screen.
    let wall = signed_in(&served, &operator, 1920, 1080).await?;
    wall.wait_for_text_testid(&row, "step 2/3").await?;
    wall.screenshot("fleet-1920").await?;
    wall.goto(&format!(
        "{}/#/namespaces/{ns}/applications/web",
        served.url
    ))
    .await?;
    wall.wait_for_text_testid("app-step", "step 2/3").await?;
    wall.screenshot_full_page("application-1920").await?;
    wall.close().await?;

    // A viewer sees no button, and a promote they send anyway is refused.
    let as_viewer = signed_in(&served, &viewer, 1280, 800).await?;
    as_viewer
        .goto(&format!(
            "{}/#/namespaces/{ns}/applications/web",
            served.url
        ))
        .await?;
    as_viewer
        .wait_for_text_testid("app-step", "step 2/3")
        .await?;
    for button in ["promote", "promote-full", "abort", "rollback"] {
        as_viewer
            .wait_for_absent(&format!("[data-testid='{button}']"))
            .await?;
    }
    let status = as_viewer
        .client()
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch(arguments[0], {method: 'POST', headers: {'Content-Type': 'application/json'}, body: '{}'})
               .then((response) => done(response.status));",
            vec![json!(format!("/api/v1/namespaces/{ns}/applications/web/promote"))],
        )
        .await?;
    assert_eq!(status, json!(403));
    as_viewer.close().await?;
    forbid_clusters(&env).await?;
    Ok(())
}

#[tokio::test]
async fn the_application_page_plots_each_metrics_measurements_per_cluster() -> anyhow::Result<()> {
    use prism_testkit::exporter::{Behaviour, Series, TestExporter};
    use prism_testkit::prometheus::Prometheus;

    let env = TestEnv::new("ui-analysis").await;
    let served = serve(&env).await?;
    let ns = env.namespace();
    let operator = caller(&env, ns, "operator", operator_rules()).await?;

    // Every version of web healthy in every cluster, scraped by a real Prometheus.
    let exporter = TestExporter::start().await?;
    let prometheus = Prometheus::start(&[exporter.addr()]).await?;
    for version in ["web-1", "web-2"] {
        for cluster in env.clusters() {
            let series = Series::new("web", ns, version, env.cluster_object_name(cluster.name()));
            exporter.set(
                series,
                Behaviour::new(0.0, std::time::Duration::from_millis(50)),
            );
        }
    }
    let query = Series::new("{{app}}", "{{namespace}}", "{{version}}", "{{cluster}}")
        .error_ratio_query("10s");
    prometheus
        .wait_for_sample(
            &Series::new("web", ns, "web-1", env.cluster_object_name("c1"))
                .error_ratio_query("10s"),
        )
        .await?;
    let analysed = |image: &str| -> anyhow::Result<prism_api::Application> {
        let mut app = application("web", image, 2, json!({}))?;
        app.spec.strategy = serde_json::from_value(json!({"steps": [
            {"name": "canary", "capacity": {"contender": "50%"}, "traffic": {"contender": 50},
             "analysis": {"interval": "2s", "count": 3, "metrics": [{
                 "name": "error-rate", "query": query, "threshold": {"max": 0.05},
                 "prometheus": {"address": prometheus.url()}}]},
             "gate": {"manual": true}},
            {"name": "full", "capacity": {"contender": "100%", "incumbent": "0%"},
             "traffic": {"contender": 100}}
        ]}))?;
        Ok(app)
    };
    rolled_to_first_step(&served, analysed).await?;

    let browser = signed_in(&served, &operator, 1280, 800).await?;
    browser
        .goto(&format!(
            "{}/#/namespaces/{ns}/applications/web",
            served.url
        ))
        .await?;
    browser.wait_for_text_testid("analysis", "3 passed").await?;
    let chart = "[data-testid='analysis-error-rate']";
    browser.wait_for(chart).await?;
    for cluster in ["c1", "c2", "c3"] {
        let series = format!(
            "{chart} [data-key='series-{}']",
            env.cluster_object_name(cluster)
        );
        browser.wait_for(&series).await?;
    }
    browser
        .screenshot_full_page("application-analysis-1280")
        .await?;
    browser.close().await?;
    Ok(())
}
