// The flags Node runs Torus's long-lived processes (the server and its agents) with.

/**
 * A young generation of up to 32 MiB per semi-space (V8's default is 16 MiB on 64-bit): a loud
 * step streams hundreds of MB/s through the agent and the server, and with the default, the request
 * objects alive across a scavenge are promoted and start a full (mark-compact) collection every
 * ~200 ms. Measured by bench/log-throughput.ts on 1 GB of output: the server's CPU time per GB
 * 10.0 s → 6.0 s and the agent's 4.0 → 2.9 s; resident memory grows by at most 2 × 32 MiB.
 */
export const NODE_FLAGS: readonly string[] = ['--max-semi-space-size=32'];
