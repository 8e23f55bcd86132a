// What the cluster's Kanidm replication coordinator may do to the supervised
// Kanidm: its replication admin commands, and a restart through the
// supervisor (so health, metrics and the pid file stay right).
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { KanidmControl } from '../cluster/kanidm-replication.js';
import type { Supervisor } from './supervisor.js';

const execFileAsync = promisify(execFile);

export function supervisedKanidmControl(bin: string, configPath: string, supervisor: Supervisor): KanidmControl {
  const admin = async (...args: string[]) => {
    const { stdout, stderr } = await execFileAsync(bin, [...args, '-c', configPath], { maxBuffer: 1 << 20 });
    return stdout + stderr;
  };
  return {
    showCertificate: async () => {
      await supervisor.waitHealthy();
      return admin('show-replication-certificate');
    },
    refreshConsumer: async () => {
      await supervisor.waitHealthy();
      await admin('refresh-replication-consumer', '--i-want-to-refresh-this-servers-database');
    },
    restart: async () => {
      await supervisor.stop();
      await supervisor.start();
      await supervisor.waitHealthy();
    },
  };
}
