// BullMQ (Node, ioredis) as a peer: worker, throughput, latency, by the protocol of
// bench/peers/common.py, whose JSON answer it prints as its last line; and, in `producer-latency`,
// the web app's producer adding pings to a queue a Workhorse worker takes through its BullMQ
// ingress (`--queue NAME`, BullMQ's default prefix `bull`): it prints when it added each one.
//
// `node bullmq_peer.cjs MODE --jobs N [--interval-ms MS] [--concurrency C] [--retention R]`, with
// bullmq and ioredis found through NODE_PATH (bench/peer_envs.py installs them by `npm ci` from
// this directory's lockfile into .bench-venv/bullmq). The backlog goes in with addBulk, 500 jobs a
// call (Workhorse's bulk enqueue sends 500 per round trip); then the worker starts in its own
// process, as deployed, and the drain is timed from its first finished job to its last. A job is
// finished when it has left both the `wait` and the `active` lists: BullMQ moves it out of
// `active` in the same script that stores its result or deletes it.
'use strict';

const { execFileSync, spawn } = require('node:child_process');
const { once } = require('node:events');
const { readFileSync } = require('node:fs');
const { Queue, Worker } = require('bullmq');
const IORedis = require('ioredis');

const REDIS_URL = process.env.BENCH_REDIS_URL || 'redis://127.0.0.1:6379/14';
const QUEUE = 'bench';
const CHUNK = 500;
const STOP_GRACE_MS = 30_000;
// The runbooks' retention (every queue of the seven-worker deployment sets it); `none` is
// BullMQ's fastest, removeOnComplete: true.
const RETENTION = {
  runbook: { removeOnComplete: { age: 24 * 3600, count: 1000 }, removeOnFail: { age: 7 * 24 * 3600 } },
  none: { removeOnComplete: true, removeOnFail: { age: 7 * 24 * 3600 } },
};

/** Wall-clock milliseconds with the monotonic clock's resolution (Date.now() has whole ms). */
const wallMs = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function parseArgs(argv) {
  const args = { mode: argv[0], jobs: 5000, warmup: 0, intervalMs: 20, concurrency: 20, retention: 'runbook',
    queue: QUEUE };
  const names = { '--jobs': 'jobs', '--warmup': 'warmup', '--interval-ms': 'intervalMs', '--concurrency': 'concurrency' };
  for (let i = 1; i < argv.length; i += 2) {
    if (argv[i] === '--retention') args.retention = argv[i + 1];
    else if (argv[i] === '--queue') args.queue = argv[i + 1];
    else if (names[argv[i]]) args[names[argv[i]]] = Number(argv[i + 1]);
    else throw new Error(`unknown option ${argv[i]}`);
  }
  if (!RETENTION[args.retention]) throw new Error(`unknown retention ${args.retention}`);
  return args;
}

function answer(fields) {
  process.stdout.write(`${JSON.stringify(fields)}\n`);
}

/** The producer's queue; its connection is only used to add. */
function queue(retention) {
  return new Queue(QUEUE, { connection: { url: REDIS_URL }, defaultJobOptions: RETENTION[retention] });
}

async function worker(args) {
  const w = new Worker(QUEUE, async () => wallMs(), {
    connection: { url: REDIS_URL, maxRetriesPerRequest: null },
    concurrency: args.concurrency,
  });
  w.on('error', (err) => console.error(err));
  await w.waitUntilReady();
  await once(process, 'SIGTERM');
  await w.close();
}

/** The same script in `worker` mode, in its own process group (see common.stop_worker). */
function startWorker(args) {
  const argv = [__filename, 'worker', '--concurrency', String(args.concurrency)];
  const proc = spawn(process.execPath, argv, { stdio: ['ignore', 'ignore', 'inherit'], detached: true });
  proc.exited = once(proc, 'exit');
  return proc;
}

async function stopWorker(proc) {
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), STOP_GRACE_MS);
  await proc.exited;
  clearTimeout(timer);
  try {
    process.kill(-proc.pid, 'SIGKILL');
  } catch {
    // the group is gone already
  }
}

/** Jobs not finished yet: one pipeline of two LLENs (two commands, the bench's own). */
async function remaining(redis) {
  const [[, waiting], [, active]] = await redis.pipeline().llen(`bull:${QUEUE}:wait`).llen(`bull:${QUEUE}:active`).exec();
  return waiting + active;
}

/** common.drain_times: when the first and the last of `jobs` finished, polled every 5 ms. */
async function drainTimes(left, jobs, timeoutMs = 600_000) {
  const deadline = performance.now() + timeoutMs;
  let first = null;
  while (performance.now() < deadline) {
    const n = await left();
    const now = performance.now();
    if (first === null && n < jobs) first = now;
    if (n === 0) return [first, now];
    await sleep(5);
  }
  throw new Error(`${jobs} jobs not drained in ${timeoutMs} ms`);
}

async function totalCommands(redis) {
  return Number(/total_commands_processed:(\d+)/.exec(await redis.info('stats'))[1]);
}

const CLOCK_TICKS_PER_S = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));

/** CPU seconds (user + system) process `pid` has used so far (/proc/PID/stat, in clock ticks). */
function processCpuS(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(')').pop().trim().split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_S;
}

/** Seconds the main thread of `pid` has spent runnable but waiting for a core. */
function runQueueWaitS(pid) {
  return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[1]) / 1e9;
}

/** CPU seconds the Redis server has used so far (INFO cpu, user + system). */
async function redisCpuS(redis) {
  const info = await redis.info('cpu');
  return Number(/used_cpu_user:([\d.]+)/.exec(info)[1]) + Number(/used_cpu_sys:([\d.]+)/.exec(info)[1]);
}

/** bench/cpu.py's readings: [worker CPU, worker's wait for a core, Redis CPU] so far. */
async function cpuNow(proc, redis) {
  return [processCpuS(proc.pid), runQueueWaitS(proc.pid), await redisCpuS(redis)];
}

/** With `--warmup W`, W more jobs go first and the rate, CPU and commands are read over the last
 * `--jobs` only: Node compiles its hot code while it runs, so a cold worker spends ~2x the CPU
 * per job on its first thousand jobs (a long-running one is warm). */
async function throughput(args) {
  const producer = queue(args.retention);
  const total = args.warmup + args.jobs;
  const jobs = Array.from({ length: total }, () => ({ name: 'noop', data: {} }));
  const t0 = performance.now();
  for (let start = 0; start < jobs.length; start += CHUNK) {
    await producer.addBulk(jobs.slice(start, start + CHUNK));
  }
  const enqueueS = (performance.now() - t0) / 1000;
  await producer.close();

  const redis = new IORedis(REDIS_URL);
  let proc, polls = 0, cpuFirst = null;
  // The CPU window is the rate's, from the first finished job after the warm-up (one INFO of ours).
  const left = async () => {
    polls += 1;
    const n = await remaining(redis);
    if (cpuFirst === null && n < args.jobs) cpuFirst = await cpuNow(proc, redis);
    return n;
  };
  const before = await totalCommands(redis);
  proc = startWorker(args);
  let first, last, commands, cpuLast;
  try {
    [first, last] = await drainTimes(left, args.jobs);
    // common.commands_since: less the polls, the CPU window's INFO and this INFO itself; over
    // every job the worker ran, its start-up included.
    commands = (await totalCommands(redis)) - before - 2 * polls - 2;
    cpuLast = await cpuNow(proc, redis);
  } finally {
    await stopWorker(proc);
    redis.disconnect();
  }
  const done = args.jobs - 1; // finished inside the window
  answer({
    jobs: args.jobs, enqueue_per_s: total / enqueueS, process_per_s: done / ((last - first) / 1000),
    commands_per_job: commands / total,
    worker_cpu_s_per_job: (cpuLast[0] - cpuFirst[0]) / done,
    worker_wait_s_per_job: (cpuLast[1] - cpuFirst[1]) / done,
    redis_cpu_s_per_job: (cpuLast[2] - cpuFirst[2]) / done,
  });
}

async function latency(args) {
  const producer = queue('runbook'); // completed jobs keep their start time, the return value
  const redis = new IORedis(REDIS_URL);
  const proc = startWorker(args);
  const sent = [];
  try {
    await producer.add('noop', {});
    await drainTimes(() => remaining(redis), 1); // the worker is up and waiting
    const start = performance.now();
    for (let i = 0; i < args.jobs; i += 1) {
      const delay = start + i * args.intervalMs - performance.now();
      if (delay > 0) await sleep(delay);
      const before = wallMs();
      sent.push([await producer.add('noop', {}), before]);
    }
    await drainTimes(() => remaining(redis), args.jobs);
  } finally {
    await stopWorker(proc);
  }
  const done = await Promise.all(sent.map(([job]) => producer.getJob(job.id)));
  answer({ latencies_ms: done.map((job, i) => job.returnvalue - sent[i][1]) });
  await producer.close();
  redis.disconnect();
}

/** Pings added one at a time for a Workhorse worker's ingress, with their ids and wall times. */
async function producerLatency(args) {
  const producer = new Queue(args.queue, { connection: { url: REDIS_URL }, prefix: 'bull' });
  const sent = [];
  const start = performance.now();
  for (let i = 0; i < args.jobs; i += 1) {
    const delay = start + i * args.intervalMs - performance.now();
    if (delay > 0) await sleep(delay);
    const before = wallMs();
    await producer.add('ping', {}, { jobId: `bench-producer-${i}`, removeOnComplete: true });
    sent.push([`bench-producer-${i}`, before]);
  }
  answer({ sent });
  await producer.close();
}

const MODES = { worker, throughput, latency, 'producer-latency': producerLatency };

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const run = MODES[args.mode];
  if (!run) throw new Error(`mode is one of ${Object.keys(MODES).join(', ')}`);
  await run(args);
}

main().then(
  () => process.exit(0),
  (err) => { console.error(err); process.exit(1); },
);
