/**
 * Baseline of measurement 1: the same artifact bytes streamed over a plain TCP socket on
 * loopback between two Node child processes, the receiver writing (and fsyncing) a file.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { stopProcess, trackProcess } from './cleanup';
import { Tail, waitForStdout } from './node-process';
import { withTimeout } from './util';

const CHILD = join(__dirname, 'tcp-child.js');

export interface TcpResult {
  bytes: number;
  /** From the accepted connection to the fsynced file, measured by the receiver. */
  ms: number;
  /** Same, but without the final fsync. */
  receivedMs: number;
}

/**
 * `through`: given the receiver's port, returns the port the sender should connect to
 * instead (a proxy in front of the receiver).
 */
export async function rawTcpCopy(
  source: string,
  out: string,
  timeoutMs: number,
  through?: (receiverPort: number) => Promise<number>,
): Promise<TcpResult> {
  const receiverErr = new Tail();
  const receiver = spawn(process.execPath, [CHILD, 'recv', out], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const receiverPid = trackProcess('tcp-receiver', receiver);
  receiver.stderr?.on('data', (p: Buffer) => receiverErr.push(p));
  let senderPid: number | undefined;
  try {
    const port = Number(
      (await waitForStdout(receiver, /port (\d+)\n/, 15_000, 'tcp receiver', receiverErr))[1],
    );
    const resultLine = waitForStdout(
      receiver,
      /(\{.*\})\n/,
      timeoutMs,
      'tcp receiver',
      receiverErr,
    );
    const senderErr = new Tail();
    const sendTo = through ? await through(port) : port;
    const sender = spawn(process.execPath, [CHILD, 'send', source, String(sendTo)], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    senderPid = trackProcess('tcp-sender', sender);
    sender.stderr?.on('data', (p: Buffer) => senderErr.push(p));
    const senderDone = new Promise<void>((resolve, reject) =>
      sender.once('exit', (code) =>
        code === 0
          ? resolve()
          : reject(new Error(`tcp sender exited with ${code}: ${senderErr.toString()}`)),
      ),
    );
    const [match] = await withTimeout(
      Promise.all([resultLine, senderDone]),
      timeoutMs,
      'raw TCP copy',
    );
    return JSON.parse(match[1] as string) as TcpResult;
  } finally {
    if (senderPid !== undefined) await stopProcess(senderPid, 2_000);
    await stopProcess(receiverPid, 2_000);
  }
}
