//! The SMTP connections one sender keeps with its relay: up to `max` connection tasks, each
//! owning one session, all taking messages from one queue.
//!
//! Owns when a session is opened, vetted, reused and closed, and which connection carries
//! which message. A connection that has sent a message's body looks for the next queued
//! message before it writes the final `.`, and sends that message's envelope in the same
//! write ([`Session::send_chain`]): under load a message costs one write and one read on each
//! side instead of two of each. Must not touch: what a message says ([`super::email`]) or the
//! conversation's commands ([`super::smtp`]).
//!
//! ```text
//! send ──▶ queue ──▶ connection task: [open | vet: broken? closed? idle ≥ 5 s → NOOP]
//!   ▲                      │  message 1: envelope ─▶ 354 ─▶ body + "." + envelope 2 ─▶ …
//!   └──── outcome ◀────────┘  (each message's outcome as soon as its last reply is read)
//! ```
//!
//! # Invariants
//! - A session carries a message only from between transactions, vetted first unless it has
//!   just finished the message before (same as a pool checkout would).
//! - A message whose sender gave up waiting is not started. One whose envelope went out on a
//!   session that broke before its DATA was answered is sent on another session: its
//!   transaction never started, so the relay has nothing of it.
//! - Every write and reply is bounded in time; a session that runs out of it is closed.
//! - A connection task that has waited `retire_after` for a message closes its session and
//!   ends (unless a message arrived meanwhile), so a burst's connections age out.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use lettre::address::Envelope;
use tokio::sync::oneshot;

use super::smtp::{Dial, Failure, Session, Transaction};

/// How a pool behaves.
#[derive(Debug, Clone, Copy)]
pub(super) struct Settings {
    /// Connections open at once.
    pub max: usize,
    /// A session unused for this long is asked NOOP before it carries a message.
    pub idle_check: Duration,
    /// How long that NOOP may take.
    pub noop_timeout: Duration,
    /// How long one write, or one reply, may take.
    pub io_timeout: Duration,
    /// How long a connection waits for a message before it closes.
    pub retire_after: Duration,
}

/// Connections to one relay. Dropped, its connections finish what they hold and close.
pub(super) struct Pool {
    queue: flume::Sender<Job>,
    shared: Arc<Shared>,
}

struct Shared {
    dial: Dial,
    settings: Settings,
    jobs: flume::Receiver<Job>,
    /// Connection tasks running, and how many of them wait for a message.
    connections: AtomicUsize,
    idle: AtomicUsize,
}

/// One message and who waits for its outcome.
struct Job {
    envelope: Envelope,
    message: Vec<u8>,
    done: oneshot::Sender<Result<(), Failure>>,
}

impl Transaction for Job {
    fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    fn message(&self) -> &[u8] {
        &self.message
    }

    fn finish(self, outcome: Result<(), Failure>) {
        // The sender may have stopped waiting; the outcome then has no one to tell.
        let _ = self.done.send(outcome);
    }
}

impl Pool {
    pub(super) fn new(dial: Dial, settings: Settings) -> Self {
        let (queue, jobs) = flume::unbounded();
        Self {
            queue,
            shared: Arc::new(Shared {
                dial,
                settings,
                jobs,
                connections: AtomicUsize::new(0),
                idle: AtomicUsize::new(0),
            }),
        }
    }

    #[cfg(test)]
    pub(super) fn dial(&self) -> &Dial {
        &self.shared.dial
    }

    /// Connection tasks running.
    #[cfg(test)]
    pub(super) fn connections(&self) -> usize {
        self.shared.connections.load(SeqCst)
    }

    /// One transaction: `message` (CRLF lines, as lettre formats it) to the envelope's
    /// recipients, on whichever connection is free first. Dropped before a connection took
    /// it, the message is not sent.
    pub(super) async fn send(&self, envelope: Envelope, message: Vec<u8>) -> Result<(), Failure> {
        let (done, outcome) = oneshot::channel();
        let job = Job {
            envelope,
            message,
            done,
        };
        self.queue.send(job).map_err(|_| Failure::Shutdown)?;
        Shared::connect_if_none_idle(&self.shared);
        outcome.await.unwrap_or(Err(Failure::Shutdown))
    }
}

impl Shared {
    /// Starts a connection task unless one is waiting for a message (it will take this
    /// one) or there are `max` already (the queue waits for the first free one).
    fn connect_if_none_idle(this: &Arc<Self>) {
        if this.idle.load(SeqCst) > 0 {
            return;
        }
        let mut running = this.connections.load(SeqCst);
        while running < this.settings.max {
            match this
                .connections
                .compare_exchange(running, running + 1, SeqCst, SeqCst)
            {
                Ok(_) => {
                    tokio::spawn(connection(this.clone()));
                    return;
                }
                Err(now) => running = now,
            }
        }
    }

    /// The next message for a connection with nothing to do; `None` when the connection
    /// should end (no message for `retire_after`, or the pool was dropped), counted out.
    async fn wait_for_job(&self) -> Option<Job> {
        loop {
            self.idle.fetch_add(1, SeqCst);
            let got =
                tokio::time::timeout(self.settings.retire_after, self.jobs.recv_async()).await;
            self.idle.fetch_sub(1, SeqCst);
            let job = match got {
                Ok(Ok(job)) => job,
                Ok(Err(_)) => {
                    self.connections.fetch_sub(1, SeqCst);
                    return None;
                }
                Err(_) => {
                    // Counted out before the last look at the queue: a message sent after
                    // it finds this connection gone and starts another.
                    self.connections.fetch_sub(1, SeqCst);
                    match self.jobs.try_recv() {
                        Ok(job) => {
                            self.connections.fetch_add(1, SeqCst);
                            job
                        }
                        Err(_) => return None,
                    }
                }
            };
            if !job.done.is_closed() {
                return Some(job);
            }
        }
    }

    /// A queued message, if one is ready now (for a connection about to end a message).
    fn ready_job(&self) -> Option<Job> {
        while let Ok(job) = self.jobs.try_recv() {
            if !job.done.is_closed() {
                return Some(job);
            }
        }
        None
    }

    /// `session` if it may carry a message, else a new one. A session the relay dropped
    /// while idle never costs a delivery: it is found here and replaced.
    async fn fit(&self, session: Option<Session>) -> Result<Session, Failure> {
        if let Some(mut session) = session
            && !session.is_broken()
            && session.is_quiet()
        {
            if session.last_reply().elapsed() < self.settings.idle_check {
                return Ok(session);
            }
            let alive = tokio::time::timeout(self.settings.noop_timeout, session.noop())
                .await
                .unwrap_or(false);
            if alive {
                return Ok(session);
            }
        }
        let mut session = self.dial.open().await?;
        session.set_io_timeout(self.settings.io_timeout);
        Ok(session)
    }
}

/// One connection's task: messages one after another, on one session at a time.
async fn connection(shared: Arc<Shared>) {
    let mut session: Option<Session> = None;
    // A message whose envelope went out on a session that broke: first on the next one.
    let mut carried: Option<Job> = None;
    loop {
        let job = match carried.take() {
            Some(job) if job.done.is_closed() => continue,
            Some(job) => job,
            None => match shared.wait_for_job().await {
                Some(job) => job,
                None => return,
            },
        };
        let mut current = match shared.fit(session.take()).await {
            Ok(current) => current,
            Err(failure) => {
                job.finish(Err(failure));
                continue;
            }
        };
        carried = current.send_chain(job, || shared.ready_job()).await;
        if !current.is_broken() {
            session = Some(current);
        }
    }
}
