//! The request timeout as a router layer that arms a timer only when it can matter: the
//! deadline is taken when the request is called (one clock read), and a timer is created
//! only if the handler is still pending after its first poll. Most requests (a prediction,
//! a health check, a body already in the buffer) finish on that poll and never touch the
//! runtime's timer wheel; tower's `TimeoutLayer` registers a timer for each of them.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

/// Answers `on_timeout(limit)` to a request not answered within `limit` of its call.
#[derive(Clone, Copy)]
pub(crate) struct RequestTimeoutLayer<T> {
    limit: Duration,
    on_timeout: T,
}

impl<T> RequestTimeoutLayer<T> {
    pub(crate) fn new(limit: Duration, on_timeout: T) -> Self {
        RequestTimeoutLayer { limit, on_timeout }
    }
}

impl<S, T: Copy> tower::Layer<S> for RequestTimeoutLayer<T> {
    type Service = RequestTimeout<S, T>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestTimeout {
            inner,
            limit: self.limit,
            on_timeout: self.on_timeout,
        }
    }
}

/// See [`RequestTimeoutLayer`].
#[derive(Clone, Copy)]
pub(crate) struct RequestTimeout<S, T> {
    inner: S,
    limit: Duration,
    on_timeout: T,
}

impl<S, T, R, E> tower::Service<R> for RequestTimeout<S, T>
where
    S: tower::Service<R, Response = Response, Error = Infallible>,
    T: Fn(Duration) -> E + Copy,
    E: IntoResponse,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Deadline<S::Future, T>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        Deadline {
            inner: self.inner.call(req),
            deadline: Instant::now() + self.limit,
            limit: self.limit,
            on_timeout: self.on_timeout,
            timer: None,
        }
    }
}

pin_project! {
    /// A request under its deadline; the timer exists only once the request has waited.
    pub(crate) struct Deadline<F, T> {
        #[pin]
        inner: F,
        deadline: Instant,
        limit: Duration,
        on_timeout: T,
        #[pin]
        timer: Option<Sleep>,
    }
}

impl<F, T, E> Future for Deadline<F, T>
where
    F: Future<Output = Result<Response, Infallible>>,
    T: Fn(Duration) -> E,
    E: IntoResponse,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(response) = this.inner.poll(cx) {
            return Poll::Ready(response);
        }
        if this.timer.is_none() {
            this.timer
                .set(Some(tokio::time::sleep_until(*this.deadline)));
        }
        match this.timer.as_pin_mut().map(|timer| timer.poll(cx)) {
            Some(Poll::Ready(())) => {
                Poll::Ready(Ok((this.on_timeout)(*this.limit).into_response()))
            }
            _ => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{service_fn, Layer, ServiceExt};

    fn timed_out(limit: Duration) -> String {
        format!("late after {} ms", limit.as_millis())
    }

    /// A handler that waits past the deadline is answered by `on_timeout`, counted from the
    /// call (not from the first wait); one that answers in time keeps its answer.
    #[tokio::test]
    async fn late_requests_get_the_timeout_answer() {
        let layer = RequestTimeoutLayer::new(Duration::from_millis(300), timed_out);
        let slow = layer.layer(service_fn(|wait: u64| async move {
            tokio::time::sleep(Duration::from_millis(wait)).await;
            Ok::<_, Infallible>("done".into_response())
        }));
        let started = Instant::now();
        let answer = slow.oneshot(5_000).await.unwrap();
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(3),
            "{took:?}"
        );
        let body = axum::body::to_bytes(answer.into_body(), 1024)
            .await
            .unwrap();
        assert_eq!(&body[..], b"late after 300 ms");
        let answer = slow.oneshot(100).await.unwrap();
        let body = axum::body::to_bytes(answer.into_body(), 1024)
            .await
            .unwrap();
        assert_eq!(&body[..], b"done");
    }
}
