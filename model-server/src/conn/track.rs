//! What a connection's requests tell its I/O: a [`ConnState`] shared by the connection
//! ([`super::Limited`]) and the service that answers it ([`Tracked`]). The service counts
//! the requests in flight (from the call until the response body is dropped, i.e. written or
//! abandoned) and marks the connection as having started a request; the connection uses
//! these for its header-read deadline (between requests only) and the gate for shedding
//! (only connections that never started one). A few relaxed atomics per request, no timer.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::http::{Request, Response};
use axum::Router;
use futures::task::AtomicWaker;
use pin_project_lite::pin_project;
use tokio::sync::{oneshot, OwnedSemaphorePermit};

/// Where a shed connection's permit goes.
pub(crate) type Handoff = oneshot::Sender<OwnedSemaphorePermit>;

/// The state of one connection, shared by its I/O, its service and (for shedding) its gate.
#[derive(Debug, Default)]
pub(crate) struct ConnState {
    /// Requests called and whose response body is not yet dropped.
    in_flight: AtomicUsize,
    /// A request has started on this connection, or it is on a port that never sheds.
    started: AtomicBool,
    /// The gate chose this connection to make room: its next read fails.
    shed: AtomicBool,
    /// The connection is closed (its permit given back).
    closed: AtomicBool,
    /// The connection's task, woken when it is shed.
    waker: AtomicWaker,
    /// Once shed: where its permit goes when it closes (to the connection that shed it).
    handoff: Mutex<Option<Handoff>>,
}

impl ConnState {
    /// No request being answered (between requests, or before the first).
    pub(crate) fn idle(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0
    }

    /// A request has started on this connection.
    pub(crate) fn started(&self) -> bool {
        self.started.load(Ordering::Relaxed)
    }

    /// Chosen to be shed.
    pub(crate) fn is_shed(&self) -> bool {
        self.shed.load(Ordering::SeqCst)
    }

    /// Could still be shed: never started a request, not closed, not shed already.
    pub(crate) fn sheddable(&self) -> bool {
        !self.started() && !self.closed.load(Ordering::Relaxed) && !self.is_shed()
    }

    /// The connection's task waits for bytes: remember it, for [`ConnState::shed`].
    pub(crate) fn register(&self, cx: &Context<'_>) {
        self.waker.register(cx.waker());
    }

    /// Marks the connection shed, to give its permit to `handoff` when it closes, and wakes
    /// its task, whose next read then fails. Gives `handoff` back if it closed already.
    pub(crate) fn shed(&self, handoff: Handoff) -> Result<(), Handoff> {
        {
            let mut slot = self.handoff.lock().unwrap_or_else(|e| e.into_inner());
            if self.closed.load(Ordering::SeqCst) {
                return Err(handoff);
            }
            *slot = Some(handoff);
            self.shed.store(true, Ordering::SeqCst);
        }
        self.waker.wake();
        Ok(())
    }

    /// The connection closed: its permit goes to the connection that shed it, if any, else
    /// back to the semaphore.
    pub(crate) fn close(&self, permit: OwnedSemaphorePermit) {
        let handoff = {
            let mut slot = self.handoff.lock().unwrap_or_else(|e| e.into_inner());
            self.closed.store(true, Ordering::SeqCst);
            slot.take()
        };
        if let Some(handoff) = handoff {
            // The other connection gone (its accept cancelled): the permit drops, given back.
            let _ = handoff.send(permit);
        }
    }

    /// On a port that never sheds.
    pub(crate) fn never_shed(&self) {
        self.started.store(true, Ordering::Relaxed);
    }

    #[cfg(test)]
    pub(crate) fn set_closed(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }
}

/// One request in flight; dropped with the response body.
struct Flight(Arc<ConnState>);

impl Flight {
    fn start(state: &Arc<ConnState>) -> Flight {
        if !state.started() {
            state.started.store(true, Ordering::Relaxed);
        }
        state.in_flight.fetch_add(1, Ordering::Relaxed);
        Flight(state.clone())
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection's service: the router, each request counted in the connection's
/// [`ConnState`]. A hyper service itself (not through `TowerToHyperService`, which clones
/// its service and runs `oneshot` per request): the router is always ready.
#[derive(Clone)]
pub(crate) struct Tracked {
    router: Router,
    state: Arc<ConnState>,
}

impl Tracked {
    pub(crate) fn new(router: Router, state: Arc<ConnState>) -> Tracked {
        Tracked { router, state }
    }
}

impl<R> hyper::service::Service<Request<R>> for Tracked
where
    R: HttpBody<Data = Bytes> + Send + 'static,
    R::Error: Into<axum::BoxError>,
{
    type Response = Response<TrackedBody<Body>>;
    type Error = Infallible;
    type Future = TrackedFuture<<Router as tower::Service<Request<R>>>::Future>;

    fn call(&self, req: Request<R>) -> Self::Future {
        let flight = Some(Flight::start(&self.state));
        TrackedFuture {
            inner: tower::Service::call(&mut self.router.clone(), req),
            flight,
        }
    }
}

pin_project! {
    /// The response of a [`Tracked`] service, its body holding the request's [`Flight`].
    pub(crate) struct TrackedFuture<F> {
        #[pin]
        inner: F,
        flight: Option<Flight>,
    }
}

impl<F, B, E> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<TrackedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let flight = this.flight.take();
        Poll::Ready(result.map(|response| {
            response.map(|inner| TrackedBody {
                inner,
                _flight: flight,
            })
        }))
    }
}

pin_project! {
    /// A response body that ends its request's [`Flight`] when dropped.
    pub(crate) struct TrackedBody<B> {
        #[pin]
        inner: B,
        _flight: Option<Flight>,
    }
}

impl<B: HttpBody> HttpBody for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
