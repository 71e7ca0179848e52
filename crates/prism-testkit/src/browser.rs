//! A headless Chromium for one test, driven over WebDriver: Debian's `chromium` and
//! `chromium-driver` packages (`/usr/bin/chromium`, `/usr/bin/chromedriver`, which
//! `scripts/test.sh` installs) and the `fantoccini` client.
//!
//! [`Browser::start`] runs a chromedriver of its own on a free loopback port and opens a session
//! with a window of the given size and a profile in a new temporary directory. Every lookup waits
//! for its element until [`DEFAULT_TIMEOUT`], polling, so a test never sleeps on a page that is
//! still rendering. Elements are found by CSS selector, or by `data-testid` with the `*_testid`
//! helpers. WebDriver can set neither an `Authorization` header nor an HttpOnly cookie, so a test
//! signs in to the UI through its sign-in form, as a person does.
//!
//! Dropping it kills chromedriver and the browser it started (one process group) and removes
//! the profile; [`Browser::close`] ends the session politely first.
//!
//! ```no_run
//! use prism_testkit::browser::Browser;
//!
//! # async fn example() -> anyhow::Result<()> {
//! let browser = Browser::start(1280, 800).await?;
//! browser.goto("http://127.0.0.1:8080/").await?;
//! browser.type_into_testid("signin-token", "secret").await?;
//! browser.click_testid("signin-submit").await?;
//! browser.wait_for_text_testid("fleet-clusters", "c1").await?;
//! browser.screenshot("fleet").await?;
//! browser.close().await?;
//! # Ok(())
//! # }
//! ```

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use fantoccini::elements::Element;
use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::process::{Child, Command};

use crate::{DEFAULT_TIMEOUT, wait_until};

/// The browser, from Debian's `chromium` package.
pub const CHROMIUM_BINARY: &str = "/usr/bin/chromium";

/// Its WebDriver server, from Debian's `chromium-driver` package.
pub const CHROMEDRIVER_BINARY: &str = "/usr/bin/chromedriver";

/// How long chromedriver may take to answer and Chromium to open a session: generous, since the
/// machine is shared with the sandbox and the compiler.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A headless Chromium session of one test; see the [module](self) documentation.
pub struct Browser {
    client: Client,
    driver: Child,
    dir: PathBuf,
}

impl Browser {
    /// Starts chromedriver and opens a headless session whose window is `width` × `height`
    /// pixels. chromedriver's log is `chromedriver.log` in [`Browser::dir`].
    pub async fn start(width: u32, height: u32) -> anyhow::Result<Browser> {
        for binary in [CHROMIUM_BINARY, CHROMEDRIVER_BINARY] {
            anyhow::ensure!(
                Path::new(binary).exists(),
                "{binary} is missing: install Debian's chromium and chromium-driver packages \
                 (scripts/test.sh does: apt-get install chromium chromium-driver)"
            );
        }
        let dir = crate::unique_temp_dir("browser")?;
        let port = crate::free_port()?;
        let log = dir.join("chromedriver.log");
        let driver = Command::new(CHROMEDRIVER_BINARY)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            // A group of its own, so that Drop can kill the browsers it starts along with it.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {CHROMEDRIVER_BINARY}"))?;
        let url = format!("http://127.0.0.1:{port}");
        let connected = match connect(&url, &dir, width, height).await {
            Ok(client) => fit_viewport(&client, width, height).await.map(|()| client),
            Err(error) => Err(error),
        };
        match connected {
            Ok(client) => Ok(Browser {
                client,
                driver,
                dir,
            }),
            Err(error) => {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                // Dropping a Browser cleans up; build one without a session to do so.
                drop(Cleanup {
                    driver,
                    dir: dir.clone(),
                });
                Err(error.context(format!(
                    "chromedriver's log ends with:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )))
            }
        }
    }

    /// The WebDriver client, for what the helpers here do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The session's temporary directory: the browser's profile and `chromedriver.log`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Loads `url` and waits until the page has loaded.
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.client
            .goto(url)
            .await
            .with_context(|| format!("loading {url}"))
    }

    /// The URL the browser shows now (its hash route included).
    pub async fn current_url(&self) -> anyhow::Result<String> {
        Ok(self.client.current_url().await?.to_string())
    }

    /// Waits until an element matches `css` and returns the first.
    pub async fn wait_for(&self, css: &str) -> anyhow::Result<Element> {
        wait_until(
            format!("an element matches {css:?}"),
            DEFAULT_TIMEOUT,
            || async {
                match self.client.find(Locator::Css(css)).await {
                    Ok(element) => Ok(Some(element)),
                    Err(error) if error.is_no_such_element() => Ok(None),
                    Err(error) => Err(error.into()),
                }
            },
        )
        .await
    }

    /// Waits until an element has `data-testid="{testid}"` and returns it.
    pub async fn wait_for_testid(&self, testid: &str) -> anyhow::Result<Element> {
        self.wait_for(&testid_selector(testid)).await
    }

    /// Waits until no element matches `css` (a dialog closed, a row gone).
    pub async fn wait_for_absent(&self, css: &str) -> anyhow::Result<()> {
        wait_until(
            format!("no element matches {css:?}"),
            DEFAULT_TIMEOUT,
            || async {
                let found = self.client.find_all(Locator::Css(css)).await?;
                Ok(found.is_empty().then_some(()))
            },
        )
        .await
    }

    /// The rendered text of the first element matching `css`, once there is one.
    pub async fn text(&self, css: &str) -> anyhow::Result<String> {
        Ok(self.wait_for(css).await?.text().await?)
    }

    /// The rendered text of the element with `data-testid="{testid}"`, once there is one.
    pub async fn text_testid(&self, testid: &str) -> anyhow::Result<String> {
        self.text(&testid_selector(testid)).await
    }

    /// Waits until the first element matching `css` shows text containing `expected` (pages
    /// change under live updates, so a test waits for what it expects) and returns its text.
    pub async fn wait_for_text(&self, css: &str, expected: &str) -> anyhow::Result<String> {
        wait_until(
            format!("{css:?} shows {expected:?}"),
            DEFAULT_TIMEOUT,
            || async {
                let element = match self.client.find(Locator::Css(css)).await {
                    Ok(element) => element,
                    Err(error) if error.is_no_such_element() => bail!("no element yet"),
                    Err(error) => return Err(error.into()),
                };
                // The element may be replaced between finding it and reading it.
                let text = match element.text().await {
                    Ok(text) => text,
                    Err(error) if error.is_stale_element_reference() => bail!("replaced"),
                    Err(error) => return Err(error.into()),
                };
                if text.contains(expected) {
                    Ok(Some(text))
                } else {
                    bail!("it shows {text:?}")
                }
            },
        )
        .await
    }

    /// [`Browser::wait_for_text`] of the element with `data-testid="{testid}"`.
    pub async fn wait_for_text_testid(
        &self,
        testid: &str,
        expected: &str,
    ) -> anyhow::Result<String> {
        self.wait_for_text(&testid_selector(testid), expected).await
    }

    /// The attribute `name` of the first element matching `css`, once there is one.
    pub async fn attribute(&self, css: &str, name: &str) -> anyhow::Result<Option<String>> {
        Ok(self.wait_for(css).await?.attr(name).await?)
    }

    /// Clicks the first element matching `css`, once there is one and a click lands on it: a
    /// live page may move the element between finding it and clicking it (an update re-sorts a
    /// table, and the click lands on what took its place, which the browser refuses as
    /// intercepted), so a refused click is tried again on the element found anew.
    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        wait_until(
            format!("a click on {css:?} lands"),
            DEFAULT_TIMEOUT,
            || async {
                self.wait_for(css)
                    .await?
                    .click()
                    .await
                    .with_context(|| format!("clicking {css:?}"))?;
                Ok(Some(()))
            },
        )
        .await
    }

    /// Clicks the element with `data-testid="{testid}"`, once there is one.
    pub async fn click_testid(&self, testid: &str) -> anyhow::Result<()> {
        self.click(&testid_selector(testid)).await
    }

    /// Types `text` into the first element matching `css` (an input), once there is one.
    pub async fn type_into(&self, css: &str, text: &str) -> anyhow::Result<()> {
        self.wait_for(css)
            .await?
            .send_keys(text)
            .await
            .with_context(|| format!("typing into {css:?}"))
    }

    /// Types `text` into the element with `data-testid="{testid}"`, once there is one.
    pub async fn type_into_testid(&self, testid: &str, text: &str) -> anyhow::Result<()> {
        self.type_into(&testid_selector(testid), text).await
    }

    /// Saves a PNG of the viewport as `screenshots/{name}.png` in the Cargo target directory
    /// (`CARGO_TARGET_DIR`, else the workspace's `target/`) and returns its path.
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let png = self
            .client
            .screenshot()
            .await
            .context("taking a screenshot")?;
        save_screenshot(name, png)
    }

    /// As [`Browser::screenshot`], of the whole page: the window grows to the page's height
    /// for the picture (WebDriver captures only the viewport) and shrinks back after it.
    pub async fn screenshot_full_page(&self, name: &str) -> anyhow::Result<PathBuf> {
        let (width, height) = self.client.get_window_size().await?;
        let page_height = self
            .client
            .execute("return document.documentElement.scrollHeight", vec![])
            .await?
            .as_u64()
            .context("the page's height is not a number")?;
        let toolbars = height.saturating_sub(self.viewport().await?.1);
        let taller = (page_height + toolbars).max(height);
        self.client
            .set_window_size(u32::try_from(width)?, u32::try_from(taller)?)
            .await?;
        let png = self
            .client
            .screenshot()
            .await
            .context("taking a screenshot");
        self.client
            .set_window_size(u32::try_from(width)?, u32::try_from(height)?)
            .await?;
        save_screenshot(name, png?)
    }

    /// The viewport's width and height in CSS pixels (`innerWidth`, `innerHeight`).
    pub async fn viewport(&self) -> anyhow::Result<(u64, u64)> {
        viewport(&self.client).await
    }

    /// Ends the session (the browser exits), then stops chromedriver.
    pub async fn close(self) -> anyhow::Result<()> {
        self.client
            .clone()
            .close()
            .await
            .context("closing the browser session")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_group(&mut self.driver);
        remove_dir(&self.dir);
    }
}

/// What a failed start leaves to clean up.
struct Cleanup {
    driver: Child,
    dir: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        kill_group(&mut self.driver);
        remove_dir(&self.dir);
    }
}

/// Waits until chromedriver answers, then opens a session.
async fn connect(url: &str, dir: &Path, width: u32, height: u32) -> anyhow::Result<Client> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .context("building an HTTP client")?;
    let status = format!("{url}/status");
    wait_until("chromedriver answers", START_TIMEOUT, || async {
        let response = http.get(&status).send().await?;
        Ok(response.status().is_success().then_some(()))
    })
    .await?;
    let mut capabilities = Capabilities::new();
    capabilities.insert(
        "goog:chromeOptions".to_owned(),
        serde_json::json!({
            "binary": CHROMIUM_BINARY,
            "args": [
                "--headless=new",
                // Tests run as root, where Chromium's sandbox cannot start.
                "--no-sandbox",
                "--disable-gpu",
                // Containers give /dev/shm 64 MiB, too little for a renderer.
                "--disable-dev-shm-usage",
                format!("--window-size={width},{height}"),
                format!("--user-data-dir={}", dir.join("profile").display()),
            ],
        }),
    );
    // chromedriver listens on loopback in plain HTTP: no TLS stack is needed.
    let client = tokio::time::timeout(
        START_TIMEOUT,
        ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(url),
    )
    .await
    .context("timed out opening a browser session")?
    .context("opening a browser session")?;
    Ok(client)
}

/// Resizes the window so that the page, not the window, is `width` × `height`: a headless
/// window keeps room for a browser's toolbars, which would shorten every screenshot.
async fn fit_viewport(client: &Client, width: u32, height: u32) -> anyhow::Result<()> {
    let (inner_width, inner_height) = viewport(client).await?;
    let (outer_width, outer_height) = client.get_window_size().await?;
    let toolbar_width = u32::try_from(outer_width.saturating_sub(inner_width))?;
    let toolbar_height = u32::try_from(outer_height.saturating_sub(inner_height))?;
    client
        .set_window_size(width + toolbar_width, height + toolbar_height)
        .await
        .context("sizing the window")?;
    Ok(())
}

async fn viewport(client: &Client) -> anyhow::Result<(u64, u64)> {
    let size = client
        .execute("return [window.innerWidth, window.innerHeight]", vec![])
        .await?;
    match size
        .as_array()
        .map(|pair| (pair[0].as_u64(), pair[1].as_u64()))
    {
        Some((Some(width), Some(height))) => Ok((width, height)),
        _ => bail!("the viewport's size is not two numbers: {size}"),
    }
}

fn save_screenshot(name: &str, png: Vec<u8>) -> anyhow::Result<PathBuf> {
    let dir = screenshot_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, png).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// `[data-testid="{testid}"]`.
fn testid_selector(testid: &str) -> String {
    format!("[data-testid=\"{testid}\"]")
}

/// Kills chromedriver's process group (chromedriver and every browser process it started) and
/// reaps chromedriver. Drop cannot await the session's polite end, and a browser left behind
/// would outlive the test.
fn kill_group(driver: &mut Child) {
    if let Some(pid) = driver.id() {
        let killed = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stderr(Stdio::null())
            .status();
        if let Err(error) = killed {
            eprintln!("prism-testkit: killing chromedriver's process group {pid}: {error}");
        }
    }
    let _ = driver.start_kill();
    // Reap it, so no zombie stays; SIGKILL takes effect at once.
    for _ in 0..100 {
        match driver.try_wait() {
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            _ => break,
        }
    }
}

fn remove_dir(dir: &Path) {
    if let Err(error) = std::fs::remove_dir_all(dir) {
        eprintln!("prism-testkit: removing {}: {error}", dir.display());
    }
}

/// `CARGO_TARGET_DIR/screenshots`, else the workspace's `target/screenshots`.
fn screenshot_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    workspace.join(target).join("screenshots")
}
