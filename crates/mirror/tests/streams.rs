//! Event streams pass through unbuffered: the first event reaches the client while the
//! primary still holds the stream open, and the stream is not mirrored or compared here.

use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderValue;
use http_body_util::BodyExt;
use tokio::sync::mpsc;

use crate::util::{self, TestBody, client, serve, url};

#[tokio::test]
async fn event_streams_pass_through_unbuffered() {
    // The primary sends one event at once and ends the stream 3 s later.
    let (p_addr, p_task) = serve(|_req| async {
        let (tx, rx) = mpsc::channel::<Bytes>(8);
        let _ = tx
            .send(Bytes::from_static(b"event: market\ndata: {\"n\":1}\n\n"))
            .await;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            let _ = tx.send(Bytes::from_static(b"data: last\n\n")).await;
        });
        let mut resp = http::Response::new(TestBody::Chan(rx));
        resp.headers_mut().insert(
            "content-type",
            HeaderValue::from_static("text/event-stream"),
        );
        resp
    })
    .await;
    let (c_addr, c_task) = serve(|_req| async { http::Response::new(TestBody::text("x")) }).await;
    let dir = tempfile::tempdir().unwrap();
    let mirror = util::mirror(
        &url(p_addr),
        &url(c_addr),
        &dir.path().join("run"),
        shadowgate_mirror::default_rules(),
        |_| {},
    )
    .await;
    let http = client();
    let req = http::Request::get(format!("{}/api/stream", url(mirror.local_addr())))
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), http.request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    let first = tokio::time::timeout(Duration::from_secs(2), body.frame())
        .await
        .expect("the first event arrives while the stream is open")
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    assert!(first.starts_with(b"event: market"), "{first:?}");
    let s = mirror.summary();
    assert_eq!((s.shadow.eligible, s.shadow.sse, s.shadow.sent), (1, 1, 0));
    let rest = tokio::time::timeout(Duration::from_secs(10), body.collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    assert_eq!(&rest[..], b"data: last\n\n");
    let s = mirror.shutdown().await.unwrap();
    assert_eq!(s.primary.status_2xx, 1);
    assert_eq!(s.candidate.requests, 0);
    p_task.abort();
    c_task.abort();
}
