import * as assert from 'assert';
import * as fs from 'fs';
import * as path from 'path';

import {
  ArgumentError, describeReview, describeScaffold, editArgument, errorMessage, scaffoldArgument, targetArgument,
} from '../src/commandArguments';

const range = { start: { line: 1, character: 0 }, end: { line: 3, character: 4 } };
const empty = { start: { line: 2, character: 5 }, end: { line: 2, character: 5 } };

describe('command arguments', () => {
  it('review, explain and hint take the selection, or the whole file for an empty one', () => {
    assert.deepStrictEqual(targetArgument('file:///a.py', range), { uri: 'file:///a.py', range });
    assert.deepStrictEqual(targetArgument('file:///a.py', empty), { uri: 'file:///a.py' });
    assert.deepStrictEqual(targetArgument('file:///a.py'), { uri: 'file:///a.py' });
  });

  it('an edit needs an instruction, a form a description and a folder', () => {
    assert.deepStrictEqual(editArgument('file:///a.py', range, ' add logging '),
                           { uri: 'file:///a.py', range, instruction: 'add logging' });
    assert.throws(() => editArgument('file:///a.py', range, '  '), ArgumentError);
    assert.deepStrictEqual(scaffoldArgument('a form to record repairs', 'file:///w/repairs'),
                           { description: 'a form to record repairs', target: 'file:///w/repairs' });
    assert.throws(() => scaffoldArgument('', 'file:///w'), /a form needs a description/);
    assert.throws(() => scaffoldArgument('a form', undefined), /a form needs a target folder/);
  });

  it('tells the answers', () => {
    assert.strictEqual(describeReview({ findings: [{}, {}], complete: true }), 'loopcoder: 2 findings, shown in Problems');
    assert.match(describeReview({ findings: [], complete: false }), /no findings \(the answer ran out/);
    assert.deepStrictEqual(describeScaffold({ applied: true, files: ['a', 'b'], run: 'cd x && make' }),
                           { ok: true, message: 'loopcoder: wrote 2 files. Run the app with: cd x && make' });
    assert.strictEqual(describeScaffold({ applied: false, failureReason: 'exists' }).ok, false);
    assert.strictEqual(errorMessage({ code: -32602, message: 'loopcoder.edit: the range ends before it starts' }),
                       'loopcoder.edit: the range ends before it starts');
  });

  it('every command package.json contributes is registered by the extension', () => {
    const root = path.resolve(__dirname, '..', '..');
    const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
    const source = fs.readFileSync(path.join(root, 'src', 'extension.ts'), 'utf8');
    const registered = [...source.matchAll(/command\('(loopcoder\.\w+)'/g)].map((m) => m[1]).sort();
    assert.deepStrictEqual(pkg.contributes.commands.map((c: { command: string }) => c.command).sort(), registered);
    // The server's own commands are registered by vscode-languageclient: ours must not clash with them.
    for (const server of ['loopcoder.review', 'loopcoder.explain', 'loopcoder.hint', 'loopcoder.edit', 'loopcoder.scaffoldForm']) {
      assert.ok(!registered.includes(server), server);
    }
  });
});

describe('the bundle', () => {
  it('loads with only `vscode` outside it, and exports activate and deactivate', function () {
    const bundle = path.resolve(__dirname, '..', '..', 'dist', 'extension.js');
    if (!fs.existsSync(bundle)) {
      this.skip(); // `npm test` bundles first; a bare mocha run may not have
    }
    const extension = require(bundle);
    assert.strictEqual(typeof extension.activate, 'function');
    assert.strictEqual(typeof extension.deactivate, 'function');
  });
});
