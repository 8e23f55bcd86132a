// Drives `kiwi-id client ...` in-process on a clients file: a fresh Command
// per run with exitOverride, its output and anything written straight to
// process.stdout captured (the secret `add` prints never reaches the test log).
import { Command, CommanderError } from 'commander';
import { registerClientCommands } from '../../../wrapper/src/cli/client.js';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export async function runClientCli(file: string, ...args: string[]): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const program = new Command('kiwi-id')
    .exitOverride()
    .configureOutput({ writeOut: (s) => void (stdout += s), writeErr: (s) => void (stderr += s) });
  registerClientCommands(program, () => file, (err) => {
    throw err;
  });
  const realWrite = process.stdout.write;
  process.stdout.write = ((chunk: string | Uint8Array) => {
    stdout += String(chunk);
    return true;
  }) as typeof process.stdout.write;
  try {
    await program.parseAsync(['client', ...args], { from: 'user' });
    return { code: 0, stdout, stderr };
  } catch (e) {
    if (!(e instanceof CommanderError)) throw e;
    return { code: e.exitCode, stdout, stderr };
  } finally {
    process.stdout.write = realWrite;
  }
}
