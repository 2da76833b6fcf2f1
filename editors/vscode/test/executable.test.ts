import * as assert from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { resolveExecutable } from '../src/executable';
import { SettingsError } from '../src/settings';

describe('resolveExecutable', () => {
  let dir: string;
  let exe: string;

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loopcoder-vscode-'));
    fs.mkdirSync(path.join(dir, 'bin'));
    exe = path.join(dir, 'bin', 'loopcoder');
    fs.writeFileSync(exe, '#!/bin/sh\n', { mode: 0o755 });
    fs.writeFileSync(path.join(dir, 'bin', 'not-executable'), '', { mode: 0o644 });
  });

  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('finds a bare name on PATH, an absolute path, a relative path and ${workspaceFolder}', () => {
    assert.strictEqual(resolveExecutable('loopcoder', undefined, `/nonexistent${path.delimiter}${path.join(dir, 'bin')}`), exe);
    assert.strictEqual(resolveExecutable(exe, undefined, ''), exe);
    assert.strictEqual(resolveExecutable('bin/loopcoder', dir, ''), exe);
    assert.strictEqual(resolveExecutable('${workspaceFolder}/bin/loopcoder', dir, ''), exe);
  });

  it('says what is missing, and how to fix it', () => {
    const fails = (setting: string, folder: string | undefined, pattern: RegExp) => assert.throws(
      () => resolveExecutable(setting, folder, path.join(dir, 'bin')),
      (e: unknown) => e instanceof SettingsError && pattern.test(e.message));
    fails('loopcoder-missing', dir, /no executable "loopcoder-missing" on PATH\. Install loopcoder/);
    fails('/nonexistent/loopcoder', dir, /\/nonexistent\/loopcoder is not an executable file/);
    fails(path.join(dir, 'bin', 'not-executable'), dir, /not-executable is not an executable file/);
    fails(path.join(dir, 'bin'), dir, /is not an executable file/); // a folder
    fails('${workspaceFolder}/bin/loopcoder', undefined, /no folder is open/);
  });
});
