// Runs every benchmark and prints its figures with the ratio to its target or baseline.
import { benchClaimLatency } from './claim-latency.js';
import { benchTriggerToFirstOutput } from './pipeline-latency.js';
import { benchThroughput } from './throughput.js';
import { benchDockerStart, printDockerStart } from './docker-start.js';
import { benchLogThroughput, printLogThroughput } from './log-throughput.js';
import { benchCache, printCache } from './cache.js';
import { benchOrbs, printOrbs } from './orbs.js';
import { benchWebOutput, printWebOutput } from './web-output.js';
import { fmt } from './lib.js';
import { benchConfig, printConfigBench } from './config/index.js';

const claim = await benchClaimLatency();
console.log(
  `claim latency (PGlite, ${claim.n} tasks): p50 ${fmt(claim.p50)} (target ≤ 20 ms, ${(claim.p50 / 20).toFixed(2)}× target), ` +
    `p99 ${fmt(claim.p99)} (target ≤ 100 ms, ${(claim.p99 / 100).toFixed(2)}× target)`,
);
const first = await benchTriggerToFirstOutput();
console.log(
  `trigger → first output line: p50 ${fmt(first.p50)}, p90 ${fmt(first.p90)} (target p50 ≤ 500 ms, ${(first.p50 / 500).toFixed(2)}× target)`,
);
const tp = await benchThroughput();
console.log(
  `throughput: ${tp.jobs} one-step jobs in ${tp.seconds.toFixed(1)} s = ${tp.perSecond.toFixed(1)} jobs/s (target ≥ 10, ${(tp.perSecond / 10).toFixed(2)}× target)`,
);
printConfigBench(await benchConfig());
printDockerStart(await benchDockerStart());
printLogThroughput(await benchLogThroughput());
printCache(await benchCache());
printOrbs(await benchOrbs());
printWebOutput(await benchWebOutput());
process.exit(0);
