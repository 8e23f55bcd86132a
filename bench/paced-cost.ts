// Why a request paced at ~1,000/s costs a front more CPU than one at full
// speed (bench/RESULTS.md, "The EPYC again"): the thinnest Node HTTPS server
// (it answers `true`, like Kanidm's /status) under wrk at full speed and paced,
// alternating, with its CPU per request split by thread (user / system, from
// /proc) and, where `perf` can count software events, its event-loop turns
// (epoll_pwait), reads, writes and context switches per request. No Kanidm,
// no wrapper: what any Node front pays on this machine.
//
//   node --import tsx bench/paced-cost.ts [seconds=5] [rounds=2] [rate=1000] [server-cpu] [busy]
// `server-cpu` pins the server to that core (and the bench, wrk included, to
// the others); `busy` adds a SCHED_IDLE busy loop on the server's core, so it
// never idles. Figures are printed, never asserted; the run fails only if a
// request failed. Needs: wrk; perf (optional, root or perf_event_paranoid ≤ 1
// for the tracepoints).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { generateDevCertificate } from '../wrapper/src/crypto/tls-certs.js';
import { need, wrk } from './kiwi-front.js';

const seconds = Number(process.argv[2] ?? 5);
const rounds = Number(process.argv[3] ?? 2);
const rate = Number(process.argv[4] ?? 1000);
const serverCpu = process.argv[5];
const busy = process.argv[6] === 'busy';
const CONNECTIONS = 32;
const EVENTS = ['syscalls:sys_enter_epoll_pwait', 'syscalls:sys_enter_read', 'syscalls:sys_enter_write', 'context-switches'];
const HZ = 100; // USER_HZ

need('wrk', 'apt-get install wrk');
const perfWorks = spawnSync('perf', ['stat', '-e', EVENTS.join(','), 'true'], { encoding: 'utf8' }).status === 0;

/** Per thread (the main thread, or by name): user and system seconds so far. */
function threadTimes(pid: number): Map<string, { user: number; sys: number }> {
  const out = new Map<string, { user: number; sys: number }>();
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    } catch {
      continue; // the thread ended
    }
    const name = tid === String(pid) ? 'main' : stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const t = out.get(name) ?? { user: 0, sys: 0 };
    t.user += Number(f[11]) / HZ;
    t.sys += Number(f[12]) / HZ;
    out.set(name, t);
  }
  return out;
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiwi-paced-cost-'));
const children: ChildProcess[] = [];
const cleanup = () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  fs.rmSync(dir, { recursive: true, force: true });
};
process.on('SIGINT', () => (cleanup(), process.exit(130)));
try {
  if (serverCpu !== undefined) {
    // The bench and its wrk on the other cores; the server alone on its own.
    const others = [...Array(os.cpus().length).keys()].filter((c) => String(c) !== serverCpu).join(',');
    spawnSync('taskset', ['-pc', others, String(process.pid)], { stdio: 'ignore' });
  }
  const tls = { certPath: path.join(dir, 'tls.crt'), keyPath: path.join(dir, 'tls.key'), caPath: path.join(dir, 'ca.crt'), hostnames: ['localhost'], ips: ['127.0.0.1'], days: 1 };
  generateDevCertificate(tls);
  const src = `const https = require('node:https'), fs = require('node:fs');
    const s = https.createServer({ cert: fs.readFileSync(${JSON.stringify(tls.certPath)}), key: fs.readFileSync(${JSON.stringify(tls.keyPath)}) },
      (q, r) => r.writeHead(200, { 'content-type': 'application/json', 'content-length': 4 }).end('true'));
    s.listen(0, '127.0.0.1', () => console.log(s.address().port));`;
  const pin = (argv: string[]) => (serverCpu === undefined ? argv : ['taskset', '-c', serverCpu, ...argv]);
  const [cmd, ...args] = pin([process.execPath, '-e', src]);
  const server = spawn(cmd!, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(server);
  const port = await new Promise<number>((resolve, reject) => {
    server.once('exit', (c) => reject(new Error(`server exited ${c}`)));
    server.stdout!.once('data', (d) => resolve(Number(String(d).trim())));
  });
  if (busy) {
    const [bcmd, ...bargs] = pin(['chrt', '--idle', '0', process.execPath, '-e', 'for (;;) {}']);
    children.push(spawn(bcmd!, bargs, { stdio: 'ignore' }));
  }
  console.log(`minimal Node HTTPS server${serverCpu === undefined ? '' : ` pinned to core ${serverCpu}`}${busy ? ', a SCHED_IDLE busy loop on its core' : ''}; wrk -t1 -c${CONNECTIONS}, ${seconds}s per row, ${rounds} rounds, paced = ${rate} req/s; ${perfWorks ? 'perf counts per request' : 'perf unavailable: no syscall counts'}`);
  await wrk(port, '/', 2, CONNECTIONS); // warm-up: JIT, TLS sessions
  let failures = 0;
  for (let r = 1; r <= rounds; r++) {
    for (const paced of [false, true]) {
      const perf = perfWorks ? spawn('perf', ['stat', '-x', ',', '-e', EVENTS.join(','), '-p', String(server.pid)], { stdio: ['ignore', 'ignore', 'pipe'] }) : null;
      let counts = '';
      perf?.stderr!.on('data', (d) => (counts += d));
      const before = threadTimes(server.pid!);
      const load = await wrk(port, '/', seconds, CONNECTIONS, paced ? { rate } : {});
      const after = threadTimes(server.pid!);
      if (perf) {
        perf.kill('SIGINT');
        await new Promise((res) => perf.once('exit', res));
      }
      failures += load.failures;
      const per = (v: number) => ((v / load.requests) * 1e6).toFixed(0);
      let total = 0;
      const threads: string[] = [];
      for (const [name, t] of after) {
        const b = before.get(name) ?? { user: 0, sys: 0 };
        const [u, s] = [t.user - b.user, t.sys - b.sys];
        total += u + s;
        if (per(u + s) !== '0') threads.push(`${name} ${per(u)}/${per(s)}`);
      }
      const events = counts.trim().split('\n').filter((l) => /^\d/.test(l)).map((l) => {
        const [n, , event] = l.split(',');
        return `${event!.replace('syscalls:sys_enter_', '')} ${(Number(n) / load.requests).toFixed(2)}`;
      });
      console.log(
        `  round ${r}  ${(paced ? 'paced' : 'full').padEnd(5)} ${load.rps.toFixed(0).padStart(6)} req/s   CPU ${per(total).padStart(3)} µs/req` +
          `   user/sys µs/req by thread: ${threads.join(', ')}${events.length ? `   per request: ${events.join(', ')}` : ''}` +
          (load.failures ? `   FAILED REQUESTS ${load.failures}` : ''),
      );
    }
  }
  if (failures > 0) {
    console.error(`${failures} requests failed during the run`);
    process.exitCode = 1;
  }
} finally {
  cleanup();
}
