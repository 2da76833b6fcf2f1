// What the status bar says: the language server's state and the latest suggestion's latency. Pure.

export type ServerState = 'starting' | 'ready' | 'stopped' | 'failed';

const ICONS: Record<ServerState, string> = {
  starting: '$(loading~spin)',
  ready: '$(sparkle)',
  stopped: '$(circle-slash)',
  failed: '$(error)',
};

export class StatusModel {
  state: ServerState = 'starting';
  latencyMs: number | undefined;
  detail: string | undefined;

  setState(state: ServerState, detail?: string): void {
    this.state = state;
    this.detail = detail;
  }

  /** The round trip of one inline completion request, as the editor waited for it. */
  recordLatency(ms: number): void {
    this.latencyMs = Math.max(0, Math.round(ms));
  }

  text(): string {
    const latency = this.state === 'ready' && this.latencyMs !== undefined ? ` ${formatMs(this.latencyMs)}` : '';
    return `${ICONS[this.state]} loopcoder${latency}`;
  }

  tooltip(): string {
    const lines = [`loopcoder: ${this.state}${this.detail ? ` (${this.detail})` : ''}`];
    if (this.latencyMs !== undefined) {
      lines.push(`latest suggestion: ${formatMs(this.latencyMs)}`);
    }
    lines.push('Click to run `loopcoder status` (the engine: model, memory, warm documents, latency).');
    return lines.join('\n');
  }
}

export function formatMs(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** Run `work`, then report how long it took unless it was cancelled. */
export async function timed<T>(work: () => PromiseLike<T>, cancelled: () => boolean, report: (ms: number) => void,
                               now: () => number = () => performance.now()): Promise<T> {
  const start = now();
  const result = await work();
  if (!cancelled()) {
    report(now() - start);
  }
  return result;
}
