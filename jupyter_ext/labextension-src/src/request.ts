/**
 * Calls to the server extension (jupyter_ext/handlers.py): typed JSON requests, and the
 * newline-delimited JSON stream of a completion.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** A cell as the server reads it: nbformat's shape, text outputs only. */
export interface ICellPayload {
  cell_type: string;
  source: string;
  outputs?: Array<Record<string, unknown>>;
}

export interface ICellBody {
  path: string;
  cells: ICellPayload[];
  cell_index: number;
}

export interface ICompletionBody extends ICellBody {
  offset: number;
  stream: boolean;
  multiline: boolean;
}

export interface IFinding {
  line: number;
  start: number;
  end: number;
  from: number;
  to: number;
  severity: 'error' | 'warning' | 'info';
  category: string;
  message: string;
  replacement: string | null;
}

/** One line of a streamed completion: the suggestion so far, or the final answer. */
export interface ICompletionLine {
  text?: string;
  done?: boolean;
  cancelled?: boolean;
  error?: string;
  message?: string;
}

export class LoopcoderError extends Error {}

function url(route: string, settings: ServerConnection.ISettings): string {
  return URLExt.join(settings.baseUrl, 'loopcoder', route);
}

async function post(route: string, body: unknown, signal?: AbortSignal): Promise<Response> {
  const settings = ServerConnection.makeSettings();
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(
      url(route, settings),
      { method: 'POST', body: JSON.stringify(body), signal },
      settings
    );
  } catch (error) {
    throw new LoopcoderError(`loopcoder: the server cannot be reached (${error})`);
  }
  if (!response.ok) {
    let message = response.statusText;
    try {
      message = (await response.json()).message ?? message;
    } catch {
      // not JSON: keep the status text
    }
    throw new LoopcoderError(`loopcoder: ${message}`);
  }
  return response;
}

export async function requestAPI<T>(route: string, body: unknown): Promise<T> {
  const response = await post(route, body);
  return (await response.json()) as T;
}

/** The lines of a streamed completion, as they arrive. */
export async function* streamCompletion(
  body: ICompletionBody,
  signal?: AbortSignal
): AsyncGenerator<ICompletionLine> {
  const response = await post('complete', body, signal);
  if (!response.body) {
    yield (await response.json()) as ICompletionLine;
    return;
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let pending = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) {
      break;
    }
    pending += decoder.decode(value, { stream: true });
    let newline: number;
    while ((newline = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, newline).trim();
      pending = pending.slice(newline + 1);
      if (line) {
        yield JSON.parse(line) as ICompletionLine;
      }
    }
  }
  if (pending.trim()) {
    yield JSON.parse(pending) as ICompletionLine;
  }
}
