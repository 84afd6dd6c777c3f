"""Job priorities, with BullMQ's semantics: a lower number runs first, and a job without a priority
(None or 0) runs before any prioritised one; jobs of one priority run in the order they fell due.

arq's protocol has no priority: a queue is one ZSET scored by run-at time. A prioritised job that
is due waits instead in the queue's prioritised ZSET (`workhorse:prioritized:<queue>`), scored by
priority then arrival, and its priority is kept in the queue's priorities hash until it finishes,
so a deferred one, a retried one or one requeued at shutdown joins the prioritised ZSET again
when it falls due (the claim moves it there: app/queue/claims.py). A claim takes the queue's due
jobs first and fills its remaining slots from the prioritised ZSET, moving each job it takes into
the queue ZSET, where a running job is in arq's protocol. A queue that never had a prioritised job
pays one EXISTS per poll for all this, and none per job.

Seen from a stock arq client, a prioritised job that waits is not in the queue yet (`not_found`);
Workhorse's own views (JobHandle, the API, the dashboard, the stats) count it as waiting.
"""

from __future__ import annotations

from app.errors import InvalidPayload
from app.queue import keys

MAX_PRIORITY = 2_097_152
"""BullMQ's largest priority (2^21); 0 means none, as in BullMQ."""

# A Lua function: the prioritised ZSET's score for a job of priority `p` falling due now, in the
# queue `q`: priority first, then arrival (a per-queue counter, so the score stays an exact
# integer below 2^53).
PRIORITY_SCORE_LUA = """
local function priority_score(q, p)
  return tonumber(p) * 4294967296 + redis.call('INCR', '%(seq)s' .. q) %% 4294967296
end
""" % {"seq": keys.priority_seq_key("")}


def checked(priority: int | None, job: str) -> int | None:
    """The priority to store: None for no priority (None or 0); InvalidPayload outside 0..2^21."""
    if priority is None or priority == 0:
        return None
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 < priority <= MAX_PRIORITY:
        raise InvalidPayload(job, {"priority": f"an integer from 0 (none) to {MAX_PRIORITY}; lower runs first"})
    return priority
