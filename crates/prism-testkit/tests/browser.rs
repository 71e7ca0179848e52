//! The browser harness drives a real headless Chromium: it loads a page served here, clicks a
//! button whose script changes a text, reads the new text and saves a screenshot.

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use prism_testkit::browser::Browser;
use tokio::net::TcpListener;

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>harness</title></head>
<body>
  <p data-testid="greeting">waiting</p>
  <input data-testid="name" value="">
  <button data-testid="greet" type="button">Greet</button>
  <script>
    document.querySelector('[data-testid="greet"]').addEventListener("click", () => {
      const name = document.querySelector('[data-testid="name"]').value;
      // Later than the click returns, as a page that fetches before it renders.
      setTimeout(() => {
        document.querySelector('[data-testid="greeting"]').textContent = `hello, ${name}`;
      }, 200);
    });
  </script>
</body>
</html>"#;

#[tokio::test]
async fn clicks_a_button_reads_the_changed_text_and_takes_a_screenshot() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let app = Router::new().route("/", get(|| async { Html(PAGE) }));
    let server = prism_testkit::spawn_for_test(async move { axum::serve(listener, app).await });

    let browser = Browser::start(1280, 800).await.unwrap();
    browser.goto(&url).await.unwrap();
    assert_eq!(browser.viewport().await.unwrap(), (1280, 800));
    assert_eq!(browser.text_testid("greeting").await.unwrap(), "waiting");

    browser.type_into_testid("name", "prism").await.unwrap();
    browser.click_testid("greet").await.unwrap();
    let greeting = browser
        .wait_for_text_testid("greeting", "hello")
        .await
        .unwrap();
    assert_eq!(greeting, "hello, prism");

    let path = browser.screenshot("harness-greeting").await.unwrap();
    let png = std::fs::read(&path).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        path.display()
    );

    let path = browser
        .screenshot_full_page("harness-greeting-page")
        .await
        .unwrap();
    assert!(std::fs::read(&path).unwrap().starts_with(b"\x89PNG"));
    assert_eq!(
        browser.viewport().await.unwrap(),
        (1280, 800),
        "the window is its size again after a whole-page screenshot"
    );

    let dir = browser.dir().to_owned();
    browser.close().await.unwrap();
    assert!(
        !dir.exists(),
        "the browser's profile {} is left",
        dir.display()
    );
    drop(server);
}
