"""The BullMQ ingress: jobs the web app's BullMQ producers add (the bullmq npm client's `add` and
`addBulk`, unchanged) are run by the Workhorse queue of the same name, and each BullMQ job ends
with its Workhorse job's outcome, so `job.waitUntilFinished(queueEvents)`, QueueEvents listeners
and bull-board keep telling the truth. Off unless BULLMQ_PREFIX is set; BULLMQ_QUEUES picks the
queues (default: all). Every process with BULLMQ_PREFIX takes BullMQ jobs of every mapped queue,
whichever queues it serves itself: taking a job is handing it over and waiting.

One BullMQ job, in order (ingress.py; the library is fetcher.py, the decisions handover.py):

    take ──── BullMQ's moveToActive: the job is ours, locked (JOB_LOCK_TTL_S, renewed)
    plan ──── name through the registry's aliases, data validated like every other way in;
              a job that cannot run: one dead letter, the BullMQ job failed naming the field
    enqueue ─ into the queue of the same name under a deterministic id (handover.py), its
              result pinned against the count trim in the same script (outcomes.py); a job
              with that id already there is waited for instead
    wait ──── the Workhorse job's outcome (outcomes.py), its progress mirrored meanwhile
    record ── BullMQ's moveToCompleted with the return value, or moveToFailed with
              "ErrorClass: message" and no BullMQ retry; the pin dropped

Exactly once across crashes. Every step before `record` can be repeated: the job id is
derived from the BullMQ job alone, and the Enqueuer enqueues no id that is queued, running or
holding a result. A process killed anywhere after `take` stops renewing the lock, BullMQ's
stalled-job check (run by every ingress, every JOB_LOCK_TTL_S) puts the job back in wait once the
lock has lapsed, and whichever process takes it next repeats the steps:
- killed after the Workhorse job was enqueued, before BullMQ heard anything: the enqueue finds
  the job there and the new taker waits for it; it runs once;
- killed while the Workhorse job runs (in another process, or in this one, where Workhorse's own
  crash recovery runs it again as it would any job whose process died): as above;
- killed after the Workhorse job finished, before BullMQ recorded it: its result is there (pinned
  against the per-queue count trim, kept KEEP_RESULT_S / KEEP_FAILED_S, which start-up holds
  well above the time a re-delivery takes) and is recorded; nothing runs again;
- killed after BullMQ recorded the outcome: the job is finished in BullMQ and never re-delivered.
A refused job's dead letter is written under the same job id each time, so a re-delivery updates
its row instead of adding one. BullMQ's stall limit is lifted for these jobs (fetcher.py): a
re-delivery costs a wait, never a run. A job whose taker lost its lock while it still lived (an
event loop stalled past the lock) may be in two hands for a while; both wait on the same
Workhorse job, and BullMQ refuses the second record (LostJob).

Options: `jobId` becomes the job id, `delay` is BullMQ's (the job becomes active, and is taken,
when due), `priority` orders the hand-over and is carried for the engine's ordering
(handover.py), `attempts`/`backoff` give way to the queue's retry policy (logged once per queue),
`removeOnComplete`/`removeOnFail`, `lifo`, deduplication and job schedulers stay BullMQ's own.

On shutdown the ingress stops taking jobs first, records the outcomes that arrive while the
engine waits for its running jobs, and leaves the rest to BullMQ's re-delivery.
"""

from app.queue.bullmq.ingress import BullmqIngress, mapped_queues

__all__ = ["BullmqIngress", "mapped_queues"]
