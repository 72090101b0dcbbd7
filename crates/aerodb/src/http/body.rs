//! Request bodies (RES-3): the size is checked before anything is read
//! (a declared `Content-Length` above the endpoint's limit is refused at
//! once), every byte held counts against one node-wide budget of in-flight
//! body bytes, and the whole body must arrive within the body timeout.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, HttpBody};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;

use crate::http::limits::millis;
use crate::http::refusal::LimitRefusal;

/// The node-wide budget of request body bytes held at once.
#[derive(Debug)]
pub struct BodyBudget {
    budget: usize,
    in_flight: AtomicU64,
}

impl BodyBudget {
    /// A budget of `budget` bytes.
    pub fn new(budget: usize) -> Arc<Self> {
        Arc::new(BodyBudget { budget, in_flight: AtomicU64::new(0) })
    }

    // Read by the DX API (`/metrics`), which a build without replication does not have.
    #[cfg_attr(not(feature = "replication"), allow(dead_code))]
    /// Body bytes held now.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// An empty reservation that can grow.
    pub fn reservation(self: &Arc<Self>) -> BodyReservation {
        BodyReservation { budget: self.clone(), bytes: 0 }
    }
}

/// Bytes reserved from the budget by one request; released on drop.
#[derive(Debug)]
pub struct BodyReservation {
    budget: Arc<BodyBudget>,
    bytes: u64,
}

impl BodyReservation {
    /// Reserves `n` more bytes, or refuses if the budget would be exceeded.
    pub fn grow(&mut self, n: u64) -> Result<(), LimitRefusal> {
        let max = self.budget.budget as u64;
        let result = self.budget.in_flight.fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| used.checked_add(n).filter(|total| *total <= max));
        match result {
            Ok(_) => {
                self.bytes += n;
                Ok(())
            }
            Err(used) => Err(LimitRefusal::BodyBudgetExhausted { requested: n, in_flight: used.saturating_sub(self.bytes), budget: self.budget.budget }),
        }
    }
}

impl Drop for BodyReservation {
    fn drop(&mut self) {
        self.budget.in_flight.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// How one endpoint reads its body.
#[derive(Clone, Copy, Debug)]
pub struct BodyRules {
    /// Largest body accepted.
    pub max_bytes: usize,
    /// Time the whole body has to arrive.
    pub timeout: Duration,
}

/// Reads a whole body under `rules`, reserving its bytes from `budget`. A
/// declared length above the limit is refused before any byte is read; the
/// reservation must be kept as long as the bytes (or what is parsed from
/// them) are held.
pub async fn read_body(body: Body, rules: BodyRules, budget: &Arc<BodyBudget>) -> Result<(Bytes, BodyReservation), LimitRefusal> {
    let too_large = |bytes: Option<u64>| LimitRefusal::BodyTooLarge { bytes, max: rules.max_bytes };
    let declared = body.size_hint().exact();
    if let Some(n) = declared {
        if n > rules.max_bytes as u64 {
            return Err(too_large(Some(n)));
        }
    }
    let mut reservation = budget.reservation();
    let capacity = match declared {
        Some(n) => {
            reservation.grow(n)?;
            n as usize
        }
        None => 0,
    };
    let mut buf = BytesMut::with_capacity(capacity);
    let deadline = tokio::time::Instant::now() + rules.timeout;
    let mut body = body;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(LimitRefusal::BodyTimeout { timeout_ms: millis(rules.timeout) }),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(LimitRefusal::BadHttp { detail: format!("cannot read the request body: {e}") }),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else { continue };
        let total = buf.len() + data.len();
        if total > rules.max_bytes {
            return Err(too_large(declared.or(Some(total as u64))));
        }
        if declared.is_none() {
            reservation.grow(data.len() as u64)?;
        }
        buf.extend_from_slice(&data);
    }
    Ok((buf.freeze(), reservation))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RES-3: reservations add up to at most the budget, a refusal reports
    /// the numbers, and dropping a reservation returns its bytes.
    #[test]
    fn res_3_body_budget_is_never_exceeded_and_is_returned() {
        let budget = BodyBudget::new(100);
        let mut a = budget.reservation();
        a.grow(60).unwrap();
        let mut b = budget.reservation();
        assert_eq!(b.grow(50), Err(LimitRefusal::BodyBudgetExhausted { requested: 50, in_flight: 60, budget: 100 }));
        b.grow(40).unwrap();
        assert_eq!(budget.in_flight(), 100);
        drop(a);
        assert_eq!(budget.in_flight(), 40);
        drop(b);
        assert_eq!(budget.in_flight(), 0);
    }

    /// RES-3: a declared length above the limit is refused before reading;
    /// a chunked body is counted as it arrives.
    #[tokio::test]
    async fn res_3_body_size_is_checked_before_reading() {
        let budget = BodyBudget::new(1 << 20);
        let rules = BodyRules { max_bytes: 8, timeout: Duration::from_secs(60) };
        let refused = read_body(Body::from("0123456789"), rules, &budget).await.unwrap_err();
        assert_eq!(refused, LimitRefusal::BodyTooLarge { bytes: Some(10), max: 8 });
        let (bytes, reservation) = read_body(Body::from("01234567"), rules, &budget).await.unwrap();
        assert_eq!(&bytes[..], b"01234567");
        assert_eq!(budget.in_flight(), 8);
        drop(reservation);
        let stream = futures_stream(vec!["0123", "4567", "89"]);
        let refused = read_body(stream, rules, &budget).await.unwrap_err();
        assert_eq!(refused, LimitRefusal::BodyTooLarge { bytes: Some(10), max: 8 });
        assert_eq!(budget.in_flight(), 0);
    }

    fn futures_stream(parts: Vec<&'static str>) -> Body {
        Body::new(Chunks(parts.into_iter().map(|p| Bytes::from_static(p.as_bytes())).collect()))
    }

    /// A body of unknown length delivered in pieces (like chunked encoding).
    struct Chunks(std::collections::VecDeque<Bytes>);

    impl HttpBody for Chunks {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
            std::task::Poll::Ready(self.0.pop_front().map(|b| Ok(hyper::body::Frame::data(b))))
        }
    }
}
