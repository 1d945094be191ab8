//! The sampler: a thread that reads a [`PowerSource`] on a fixed period and keeps the
//! timestamped readings, so a meter can integrate any window of them afterwards
//! ([`Sampler::integrate`]).
//!
//! Deadlines are absolute: the k-th read is due at `start + k·period`, whatever the previous
//! read cost, so a slow read never shifts the later ones (no drift). A read that ends past the
//! next deadline skips the missed deadlines (it does not read twice to catch up) and counts
//! them as overruns ([`Schedule`]). Timestamps are the midpoint of each read, on one monotonic
//! clock whose zero is the sampler's start.

use super::hwmon::PowerSource;
use super::integrate::{self, Integral, SensorSpec, Timed};
use crate::error::{HostError, Result};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The absolute-deadline schedule of a periodic task: pure, so its arithmetic is tested without
/// a thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    start: Duration,
    period: Duration,
    /// Index of the deadline last handed out.
    k: u64,
    overruns: u64,
}

impl Schedule {
    /// A schedule whose deadline 0 is `start` (the first read runs at once).
    pub fn new(start: Duration, period: Duration) -> Schedule {
        Schedule {
            start,
            period: period.max(Duration::from_nanos(1)),
            k: 0,
            overruns: 0,
        }
    }

    /// The next deadline after a task that finished at `now`: `start + k·period` for the
    /// smallest k above the last one that is still ahead of `now`. Every deadline skipped
    /// because `now` is already past it counts as an overrun.
    pub fn next(&mut self, now: Duration) -> Duration {
        self.k += 1;
        let due = self.deadline(self.k);
        if now > due {
            let elapsed = (now - self.start).as_nanos();
            let k_now = u64::try_from(elapsed / self.period.as_nanos()).unwrap_or(u64::MAX);
            let k_next = k_now.saturating_add(1);
            self.overruns += k_next - self.k;
            self.k = k_next;
        }
        self.deadline(self.k)
    }

    /// Deadlines missed so far.
    pub fn overruns(&self) -> u64 {
        self.overruns
    }

    fn deadline(&self, k: u64) -> Duration {
        let k = u32::try_from(k).unwrap_or(u32::MAX);
        self.start + self.period * k
    }
}

struct Shared {
    samples: Mutex<Vec<Timed>>,
    /// Notified after every new sample (and when the thread stops).
    fresh: Condvar,
    stop: AtomicBool,
    overruns: AtomicU64,
    /// The read error that stopped the thread, until someone takes it.
    failure: Mutex<Option<HostError>>,
    stopped: AtomicBool,
}

/// A thread sampling one [`PowerSource`]; stopped and joined on drop.
pub struct Sampler {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    epoch: Instant,
    period: Duration,
    name: String,
}

/// The longest a stop request waits for the thread: it sleeps in slices of this length.
const SLEEP_SLICE: Duration = Duration::from_millis(10);

impl Sampler {
    /// Starts reading `source` every `period` on a new thread, and returns once the first
    /// reading is in (or with the error that reading gave).
    pub fn start(mut source: Box<dyn PowerSource>, period: Duration) -> Result<Sampler> {
        if period.is_zero() {
            return Err(HostError::Arg {
                what: "sampling period",
                why: "must be above zero".into(),
            });
        }
        let shared = Arc::new(Shared {
            samples: Mutex::new(Vec::new()),
            fresh: Condvar::new(),
            stop: AtomicBool::new(false),
            overruns: AtomicU64::new(0),
            failure: Mutex::new(None),
            stopped: AtomicBool::new(false),
        });
        let epoch = Instant::now();
        let name = source.name();
        let sh = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("caq-power-sampler".into())
            .spawn(move || run(&mut *source, period, epoch, &sh))
            .map_err(|e| HostError::Io {
                path: "(sampler thread)".into(),
                source: e,
            })?;
        let sampler = Sampler {
            shared,
            thread: Some(thread),
            epoch,
            period,
            name,
        };
        // The first reading before returning: a window opened right away then has a reading
        // at or before its start, and a sensor that cannot be read fails here, naming its file.
        sampler.wait_past(Duration::ZERO, period * 10 + Duration::from_secs(1))?;
        Ok(sampler)
    }

    /// Time on the sampler's clock (zero at its start): what windows are given in.
    pub fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// The source's name.
    pub fn source_name(&self) -> &str {
        &self.name
    }

    pub fn period(&self) -> Duration {
        self.period
    }

    /// Deadlines missed so far (reads slower than the period).
    pub fn overruns(&self) -> u64 {
        self.shared.overruns.load(Ordering::Relaxed)
    }

    /// Waits until a reading taken at or after `t` exists. Fails with the read error that
    /// stopped the thread, or after `timeout`.
    pub fn wait_past(&self, t: Duration, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut samples = lock(&self.shared.samples);
        loop {
            if samples.last().is_some_and(|s| s.t >= t) {
                return Ok(());
            }
            if self.shared.stopped.load(Ordering::Acquire) {
                drop(samples);
                return Err(self.failure());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(HostError::Arg {
                    what: "power sampler",
                    why: format!(
                        "no reading of {} at or after {t:?} within {timeout:?} (period {:?})",
                        self.name, self.period
                    ),
                });
            }
            samples = self
                .shared
                .fresh
                .wait_timeout(samples, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// The readings that bracket and cover `[t0, t1]`: the last one at or before `t0`, every
    /// one inside, the first one at or after `t1` (waiting for it, up to ten periods).
    pub fn window(&self, t0: Duration, t1: Duration) -> Result<Vec<Timed>> {
        self.wait_past(t1, self.period * 10 + Duration::from_secs(1))?;
        let samples = lock(&self.shared.samples);
        let lo = samples.partition_point(|s| s.t <= t0).saturating_sub(1);
        let hi = samples.partition_point(|s| s.t < t1);
        let hi = (hi + 1).min(samples.len());
        Ok(samples[lo..hi].to_vec())
    }

    /// Integrates `[t0, t1]` (see [`integrate::integrate`]); deadlines missed in between add a
    /// warning.
    pub fn integrate(&self, t0: Duration, t1: Duration, spec: &SensorSpec) -> Result<Integral> {
        let overruns0 = self.overruns();
        let window = self.window(t0, t1)?;
        let mut r = integrate::integrate(&window, t0, t1, spec, &self.name)?;
        let missed = self.overruns() - overruns0;
        if missed > 0 {
            r.warnings.push(format!(
                "{}: {missed} sampling deadlines missed near the window (reads slower than the {:?} period): the samples are coarser than configured",
                self.name, self.period
            ));
        }
        Ok(r)
    }

    /// Drops readings older than `t`, keeping the last one before it (a window starting at
    /// `t` still has its bracket). Long-running meters call this so memory stays bounded.
    pub fn discard_before(&self, t: Duration) {
        let mut samples = lock(&self.shared.samples);
        let keep_from = samples.partition_point(|s| s.t <= t).saturating_sub(1);
        samples.drain(..keep_from);
    }

    fn failure(&self) -> HostError {
        lock(&self.shared.failure)
            .take()
            .unwrap_or_else(|| HostError::Arg {
                what: "power sampler",
                why: format!("the sampler of {} has stopped", self.name),
            })
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            // A panicking source already stopped the thread; nothing to report on drop.
            let _ = t.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn run(source: &mut dyn PowerSource, period: Duration, epoch: Instant, sh: &Shared) {
    let mut schedule = Schedule::new(epoch.elapsed(), period);
    while !sh.stop.load(Ordering::Acquire) {
        let before = epoch.elapsed();
        let reading = source.read();
        let after = epoch.elapsed();
        match reading {
            Ok(sample) => {
                let t = before + (after - before) / 2;
                let mut samples = lock(&sh.samples);
                // The clock is monotonic, but two reads within a nanosecond would tie.
                if samples.last().is_none_or(|s| s.t < t) {
                    samples.push(Timed { t, sample });
                }
                drop(samples);
                sh.fresh.notify_all();
            }
            Err(e) => {
                *lock(&sh.failure) = Some(e);
                break;
            }
        }
        let due = schedule.next(epoch.elapsed());
        sh.overruns.store(schedule.overruns(), Ordering::Relaxed);
        loop {
            let now = epoch.elapsed();
            if now >= due || sh.stop.load(Ordering::Acquire) {
                break;
            }
            std::thread::sleep((due - now).min(SLEEP_SLICE));
        }
    }
    sh.stopped.store(true, Ordering::Release);
    sh.fresh.notify_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn deadlines_are_absolute_and_do_not_drift() {
        let mut s = Schedule::new(ms(100), ms(10));
        // Each read takes 3 ms: deadlines stay on the 10 ms grid.
        let mut now = ms(100);
        for k in 1..=100u64 {
            now += ms(3);
            let due = s.next(now);
            assert_eq!(due, ms(100 + 10 * k));
            now = due;
        }
        assert_eq!(s.overruns(), 0);
    }

    #[test]
    fn a_slow_read_skips_missed_deadlines_and_counts_them() {
        let mut s = Schedule::new(ms(0), ms(10));
        assert_eq!(s.next(ms(2)), ms(10));
        // The read at 10 ms took 25 ms: deadlines 20 and 30 are missed, the next is 40.
        assert_eq!(s.next(ms(35)), ms(40));
        assert_eq!(s.overruns(), 2);
        // Exactly on a deadline is not late.
        assert_eq!(s.next(ms(50)), ms(50));
        assert_eq!(s.overruns(), 2);
        assert_eq!(s.next(ms(51)), ms(60));
        assert_eq!(s.overruns(), 2);
    }
}
