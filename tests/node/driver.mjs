// The web app's side of the BullMQ ingress tests: the real bullmq npm client (tests/node/package.json,
// installed from package-lock.json by tests/support/bullmq_node.py), driven line by line.
//
//     node driver.mjs REDIS_URL PREFIX
//
// Each stdin line is a JSON command {seq, op, ...}; each answer is one JSON line {seq, ...} on
// stdout, or {seq, error}. Answers may come out of order: `wait` answers when its job finishes.
import { Job, Queue, QueueEvents } from 'bullmq';
import IORedis from 'ioredis';
import readline from 'node:readline';

const [url, prefix] = process.argv.slice(2);

// As the web app connects (runbook: maxRetriesPerRequest null); the tests' embedded Redis is a unix socket.
// ioredis reconnects by itself while Redis is away (a test restarts it): its error events are
// expected then, and a failed command reaches the test in its answer.
function connect() {
  const parsed = new URL(url);
  const client = parsed.protocol === 'unix:'
    ? new IORedis({ path: parsed.pathname, db: Number(parsed.searchParams.get('db') ?? 0), maxRetriesPerRequest: null })
    : new IORedis(url, { maxRetriesPerRequest: null });
  client.on('error', () => {});
  return client;
}

const connection = connect();
const queues = new Map();
const listeners = new Map();
const progressSeen = new Map();

function queue(name) {
  if (!queues.has(name)) queues.set(name, new Queue(name, { connection, prefix }));
  return queues.get(name);
}

// QueueEvents reads the events stream from where it stands when it starts: listen before adding.
async function queueEvents(name) {
  if (!listeners.has(name)) {
    const events = new QueueEvents(name, { connection: connect(), prefix });
    events.on('progress', ({ jobId, data }) => {
      const key = `${name}/${jobId}`;
      progressSeen.set(key, [...(progressSeen.get(key) ?? []), data]);
    });
    await events.waitUntilReady();
    listeners.set(name, events);
  }
  return listeners.get(name);
}

async function job(name, id) {
  const found = await Job.fromId(queue(name), id);
  if (!found) throw new Error(`no job ${id} in ${name}`);
  return found;
}

const ops = {
  async listen({ queue: name }) {
    await queueEvents(name);
    return {};
  },
  async add({ queue: name, name: jobName, data, opts }) {
    const sentMs = performance.timeOrigin + performance.now(); // sub-millisecond, on the same clock as Date.now()
    const added = await queue(name).add(jobName, data, opts ?? {});
    return { id: added.id, sentMs };
  },
  async addBulk({ queue: name, jobs }) {
    const added = await queue(name).addBulk(jobs);
    return { ids: added.map((j) => j.id) };
  },
  async wait({ queue: name, id, timeoutMs }) {
    const events = await queueEvents(name);
    const found = await job(name, id);
    try {
      return { resolved: await found.waitUntilFinished(events, timeoutMs ?? 30000) };
    } catch (err) {
      return { rejected: err.message };
    }
  },
  async state({ queue: name, id }) {
    const found = await job(name, id);
    return {
      state: await found.getState(), returnvalue: found.returnvalue ?? null, failedReason: found.failedReason ?? null,
      progress: found.progress, attemptsMade: found.attemptsMade, stacktrace: found.stacktrace,
    };
  },
  async progress({ queue: name, id }) {
    return { seen: progressSeen.get(`${name}/${id}`) ?? [] };
  },
  async retry({ queue: name, id }) {
    await (await job(name, id)).retry();
    return {};
  },
};

function answer(seq, body) {
  process.stdout.write(JSON.stringify({ seq, ...body }) + '\n');
}

const lines = readline.createInterface({ input: process.stdin });
lines.on('line', (line) => {
  const command = JSON.parse(line);
  const op = ops[command.op];
  if (!op) {
    answer(command.seq, { error: `unknown op ${command.op}` });
    return;
  }
  op(command).then((body) => answer(command.seq, body), (err) => answer(command.seq, { error: String(err?.stack ?? err) }));
});
lines.on('close', async () => {
  await Promise.allSettled([...queues.values(), ...listeners.values()].map((c) => c.close()));
  connection.disconnect();
  process.exit(0);
});
answer(0, { ready: true });
