//! The service hyper calls: tells the connection's [`Tracker`] where each request begins (its
//! head is complete) and ends (its response body is dropped, i.e. written or abandoned).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::{Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use tower_service::Service;

use super::tracker::Tracker;

/// Wraps the application's service for one connection.
#[derive(Clone)]
pub struct WatchedService<S> {
    inner: S,
    tracker: Arc<Tracker>,
}

impl<S> WatchedService<S> {
    pub(crate) fn new(inner: S, tracker: Arc<Tracker>) -> Self {
        Self { inner, tracker }
    }
}

/// A request in flight on its connection, until dropped.
struct InFlight(Arc<Tracker>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, ResB> Service<Request<B>> for WatchedService<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    S::Future: Send + 'static,
{
    type Response = Response<WatchedBody<ResB>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // HTTP/2 frames its own heads (hyper's HTTP/2 limits); only its idle time is ours.
        self.tracker
            .request_started(req.version() != Version::HTTP_2);
        let in_flight = InFlight(self.tracker.clone());
        let response = self.inner.call(req);
        Box::pin(async move {
            let r = response.await?;
            if r.status() == StatusCode::SWITCHING_PROTOCOLS {
                in_flight.0.unwatch();
            }
            Ok(r.map(|body| WatchedBody {
                body,
                _in_flight: in_flight,
            }))
        })
    }
}

/// A response body that holds its request in flight until hyper drops it.
pub struct WatchedBody<B> {
    body: B,
    _in_flight: InFlight,
}

impl<B: Body + Unpin> Body for WatchedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
