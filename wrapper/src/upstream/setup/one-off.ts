// Runs Kanidm for the length of one task (first-boot provisioning needs the
// server up: account recovery goes through its admin socket, OAuth2 setup
// through its API), then stops it. Never adopts a server it did not start:
// if the address is already answering, it refuses.
import { execa } from 'execa';
import type { Dispatcher } from 'undici';
import { probeStatus } from '../health.js';

export interface OneOffOptions {
  bin: string;
  config: string;
  upstreamAddr: string;
  dispatcher: Dispatcher;
  /** How long Kanidm may take to answer /status. */
  startTimeoutMs?: number;
}

const POLL_MS = 200;

export async function withKanidm<T>(o: OneOffOptions, task: () => Promise<T>): Promise<T> {
  if (await probeStatus(o.upstreamAddr, o.dispatcher, 2_000)) {
    throw new Error(`a Kanidm already answers at ${o.upstreamAddr}; stop kiwi-id (or that server) before running init`);
  }
  const child = execa(o.bin, ['server', '-c', o.config], {
    reject: false,
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
    env: { RUST_BACKTRACE: '0' },
  });
  let output = '';
  const keep = (b: Buffer) => (output = (output + b.toString()).slice(-4000));
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let exited = false;
  const exit = child.then((r) => ((exited = true), r));
  try {
    const deadline = Date.now() + (o.startTimeoutMs ?? 120_000);
    while (!(await probeStatus(o.upstreamAddr, o.dispatcher, 2_000))) {
      if (exited) throw new Error(`Kanidm exited during first boot: ${lastLines(output)}`);
      if (Date.now() > deadline) throw new Error(`Kanidm did not answer /status at ${o.upstreamAddr} in time: ${lastLines(output)}`);
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
    return await task();
  } finally {
    if (!exited) {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await exit;
      clearTimeout(t);
    }
  }
}

function lastLines(s: string): string {
  return s.trim().split('\n').slice(-3).join(' | ') || '(no output)';
}
