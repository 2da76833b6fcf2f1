// The extension's settings (package.json "contributes.configuration"), read and checked once.
// Pure: `get` is VS Code's `workspace.getConfiguration("loopcoder").get`, or a stub in tests.

export class SettingsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SettingsError';
  }
}

/** How a server setting (docs/configuration.md) is checked; the server checks it again. */
type Kind =
  | { type: 'string'; nullable: boolean; choices?: readonly string[] }
  | { type: 'integer'; min: number }
  | { type: 'number'; min: number }
  | { type: 'boolean' };

/** The server's settings: sent as initializationOptions and on workspace/didChangeConfiguration. */
export const SERVER_SETTINGS: Readonly<Record<string, Kind>> = {
  model: { type: 'string', nullable: true },
  backend: { type: 'string', nullable: false, choices: ['local', 'inprocess', 'openai', 'tgi'] },
  url: { type: 'string', nullable: true },
  apiKey: { type: 'string', nullable: true },
  tokenizer: { type: 'string', nullable: true },
  threads: { type: 'integer', min: 0 },
  socket: { type: 'string', nullable: true },
  device: { type: 'string', nullable: false },
  dtype: { type: 'string', nullable: false, choices: ['auto', 'float32', 'bfloat16', 'float16'] },
  quant: { type: 'string', nullable: false, choices: ['auto', 'none', 'gguf', 'int8', 'int4', 'fp8'] },
  maxTokens: { type: 'integer', min: 1 },
  suffixTokens: { type: 'integer', min: 0 },
  contextTokens: { type: 'integer', min: 1 },
  repoContextTokens: { type: 'integer', min: 0 },
  actionTokens: { type: 'integer', min: 1 },
  temperature: { type: 'number', min: 0 },
  prewarm: { type: 'boolean' },
  cache: { type: 'boolean' },
  fimTemplate: { type: 'string', nullable: true },
};

/** Where the language server comes from: a process the extension starts, or one already listening on TCP. */
export type ServerLaunch =
  | { kind: 'spawn'; path: string; args: string[] }
  | { kind: 'connect'; host: string; port: number };

export interface Settings {
  launch: ServerLaunch;
  /** The executable that runs `loopcoder status` (the status bar's click). */
  statusPath: string;
  languages: string[];
  serverSettings: Record<string, unknown>;
}

export type Getter = (key: string) => unknown;

function checkServerSetting(key: string, value: unknown): unknown {
  const kind = SERVER_SETTINGS[key];
  const name = `loopcoder.${key}`;
  switch (kind.type) {
    case 'string':
      if (typeof value !== 'string' || (value.trim() === '' && !kind.nullable)) {
        throw new SettingsError(`${name} must be a string${kind.nullable ? ' or null' : ''}, not ${JSON.stringify(value)}`);
      }
      if (kind.choices && !kind.choices.includes(value)) {
        throw new SettingsError(`${name} must be one of ${kind.choices.join(', ')}, not ${JSON.stringify(value)}`);
      }
      return value.trim() === '' ? undefined : value; // an empty text box is "not set"
    case 'integer':
      if (typeof value !== 'number' || !Number.isInteger(value) || value < kind.min) {
        throw new SettingsError(`${name} must be an integer >= ${kind.min}, not ${JSON.stringify(value)}`);
      }
      return value;
    case 'number':
      if (typeof value !== 'number' || !Number.isFinite(value) || value < kind.min) {
        throw new SettingsError(`${name} must be a number >= ${kind.min}, not ${JSON.stringify(value)}`);
      }
      return value;
    case 'boolean':
      if (typeof value !== 'boolean') {
        throw new SettingsError(`${name} must be true or false, not ${JSON.stringify(value)}`);
      }
      return value;
  }
}

/** The server settings the user set; unset ones are left out, so `loopcoder lsp`'s flags apply. */
export function serverSettings(get: Getter): Record<string, unknown> {
  const result: Record<string, unknown> = {};
  for (const key of Object.keys(SERVER_SETTINGS)) {
    const value = get(key);
    if (value === undefined || value === null) {
      continue;
    }
    const checked = checkServerSetting(key, value);
    if (checked !== undefined) {
      result[key] = checked;
    }
  }
  if ((result.backend === 'openai' || result.backend === 'tgi') && result.url === undefined) {
    throw new SettingsError(`loopcoder.backend ${JSON.stringify(result.backend)} needs loopcoder.url, e.g. http://127.0.0.1:8000`);
  }
  return result;
}

/** "host:port" of a running `loopcoder lsp --tcp HOST:PORT`. */
export function parseAddress(text: string): { host: string; port: number } {
  const match = /^\s*(\[[^\]]+\]|[^:\s]+):(\d{1,5})\s*$/.exec(text);
  const port = match ? Number(match[2]) : NaN;
  if (!match || port < 1 || port > 65535) {
    throw new SettingsError(`loopcoder.server.connect must be HOST:PORT, e.g. 127.0.0.1:2087, not ${JSON.stringify(text)}`);
  }
  return { host: match[1].replace(/^\[|\]$/g, ''), port };
}

function stringList(get: Getter, key: string, fallback: string[]): string[] {
  const value = get(key) ?? fallback;
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) {
    throw new SettingsError(`loopcoder.${key} must be a list of strings, not ${JSON.stringify(value)}`);
  }
  return value;
}

export function readSettings(get: Getter): Settings {
  const path = get('server.path') ?? 'loopcoder';
  if (typeof path !== 'string' || path.trim() === '') {
    throw new SettingsError(`loopcoder.server.path must be the loopcoder executable, not ${JSON.stringify(path)}`);
  }
  const args = stringList(get, 'server.args', []);
  const connect = get('server.connect');
  if (connect !== undefined && connect !== null && typeof connect !== 'string') {
    throw new SettingsError(`loopcoder.server.connect must be HOST:PORT or empty, not ${JSON.stringify(connect)}`);
  }
  const launch: ServerLaunch = connect && connect.trim() !== ''
    ? { kind: 'connect', ...parseAddress(connect) }
    : { kind: 'spawn', path: path.trim(), args: ['lsp', ...args] };
  const languages = stringList(get, 'languages', ['*']);
  if (languages.length === 0) {
    throw new SettingsError('loopcoder.languages is empty: list language ids such as "python", or "*" for all');
  }
  return { launch, statusPath: path.trim(), languages, serverSettings: serverSettings(get) };
}
