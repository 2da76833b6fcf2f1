import * as assert from 'assert';
import * as fs from 'fs';
import * as path from 'path';

import { SERVER_SETTINGS, SettingsError, parseAddress, readSettings } from '../src/settings';

const ROOT = path.resolve(__dirname, '..', '..'); // editors/vscode (tests run from out/test)
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
const properties: Record<string, { default: unknown }> = pkg.contributes.configuration.properties;

/** A getter over package.json's defaults with `overrides` on top, as VS Code's would be. */
function getter(overrides: Record<string, unknown> = {}) {
  return (key: string) => (key in overrides ? overrides[key] : properties[`loopcoder.${key}`]?.default);
}

function throwsSettings(overrides: Record<string, unknown>, pattern: RegExp) {
  assert.throws(() => readSettings(getter(overrides)), (e: unknown) => e instanceof SettingsError && pattern.test(e.message));
}

describe('settings', () => {
  it('package.json contributes every server setting of docs/configuration.md, and no other', () => {
    const doc = fs.readFileSync(path.join(ROOT, '..', '..', 'docs', 'configuration.md'), 'utf8');
    const section = doc.split('## Language server settings')[1].split('\n## ')[0];
    const documented = [...section.matchAll(/^\| `(\w+)` \|/gm)].map((m) => m[1]).sort();
    assert.deepStrictEqual(Object.keys(SERVER_SETTINGS).sort(), documented);
    const contributed = Object.keys(properties).map((k) => k.replace(/^loopcoder\./, ''))
      .filter((k) => !k.startsWith('server.') && k !== 'languages').sort();
    assert.deepStrictEqual(contributed, documented);
  });

  it('defaults start `loopcoder lsp` from PATH and send the defaults, nulls left out', () => {
    const settings = readSettings(getter());
    assert.deepStrictEqual(settings.launch, { kind: 'spawn', path: 'loopcoder', args: ['lsp'] });
    assert.deepStrictEqual(settings.languages, ['*']);
    assert.strictEqual(settings.serverSettings.maxTokens, 64);
    assert.strictEqual(settings.serverSettings.backend, 'local');
    assert.ok(!('model' in settings.serverSettings) && !('url' in settings.serverSettings));
  });

  it('passes extra server arguments and connects to a running server when told to', () => {
    assert.deepStrictEqual(readSettings(getter({ 'server.args': ['--no-prewarm'] })).launch.kind, 'spawn');
    assert.deepStrictEqual(readSettings(getter({ 'server.args': ['--no-prewarm'] })).launch,
                           { kind: 'spawn', path: 'loopcoder', args: ['lsp', '--no-prewarm'] });
    assert.deepStrictEqual(readSettings(getter({ 'server.connect': '127.0.0.1:2087' })).launch,
                           { kind: 'connect', host: '127.0.0.1', port: 2087 });
    assert.deepStrictEqual(parseAddress('[::1]:2087'), { host: '::1', port: 2087 });
  });

  it('rejects bad values with a message naming the setting', () => {
    throwsSettings({ maxTokens: 0 }, /loopcoder\.maxTokens must be an integer >= 1, not 0/);
    throwsSettings({ maxTokens: 2.5 }, /loopcoder\.maxTokens must be an integer/);
    throwsSettings({ temperature: -1 }, /loopcoder\.temperature must be a number >= 0/);
    throwsSettings({ prewarm: 'yes' }, /loopcoder\.prewarm must be true or false/);
    throwsSettings({ quant: 'int3' }, /loopcoder\.quant must be one of auto, none, gguf, int8, int4, fp8, not "int3"/);
    throwsSettings({ backend: 'openai' }, /loopcoder\.backend "openai" needs loopcoder\.url/);
    throwsSettings({ 'server.path': '' }, /loopcoder\.server\.path must be the loopcoder executable/);
    throwsSettings({ 'server.args': 'lsp --tcp' }, /loopcoder\.server\.args must be a list of strings/);
    throwsSettings({ 'server.connect': 'localhost' }, /loopcoder\.server\.connect must be HOST:PORT/);
    throwsSettings({ 'server.connect': 'localhost:99999' }, /must be HOST:PORT/);
    throwsSettings({ languages: [] }, /loopcoder\.languages is empty/);
  });

  it('takes a remote backend with its url, and an empty text box as unset', () => {
    const settings = readSettings(getter({ backend: 'openai', url: 'http://gpu:8000', model: '' }));
    assert.strictEqual(settings.serverSettings.url, 'http://gpu:8000');
    assert.ok(!('model' in settings.serverSettings));
  });
});
