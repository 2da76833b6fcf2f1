import * as assert from 'assert';
import * as fs from 'fs';
import * as path from 'path';

import {
  ArgumentError, ScaffoldUi, confirmArgument, describePreview, describeReview, describeScaffold, editArgument, errorMessage,
  runScaffold, scaffoldArgument, targetArgument,
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

  it('a preview is told as its summary, notes and files, and confirmed with its spec', () => {
    const preview = {
      spec: { title: '访客登记', fields: [] }, summary: ['访客登记 (table visitor), 1 field', '姓名 (name): text, required'],
      notes: ['车牌号: type not stated'], repairs: [], files: ['file:///w/app/app.py', 'file:///w/app/README.md'],
      folder: 'file:///w/my%20app',
    };
    assert.deepStrictEqual(describePreview(preview), {
      message: 'loopcoder: create the form app — 访客登记 (table visitor), 1 field',
      detail: '• 姓名 (name): text, required\n\nNotes:\n• 车牌号: type not stated\n\n2 files in /w/my app',
    });
    assert.deepStrictEqual(confirmArgument(preview, 'file:///w/app'), { target: 'file:///w/app', spec: preview.spec });
    assert.throws(() => confirmArgument({ summary: [] }, 'file:///w/app'), /no form spec to confirm/);
    assert.throws(() => confirmArgument(null, 'file:///w/app'), /no form spec to confirm/);
  });

  function fakeUi(description: string | undefined, folder: string | undefined, answer: boolean)
    : ScaffoldUi & { asked: string[] } {
    const asked: string[] = [];
    return {
      asked,
      askDescription: async () => { asked.push('description'); return description; },
      askFolder: async () => { asked.push('folder'); return folder; },
      confirm: async (message, detail) => { asked.push(`confirm: ${message} | ${detail.split('\n')[0]}`); return answer; },
    };
  }

  function fakeServer(preview: object) {
    const sent: object[] = [];
    const execute = async (argument: object) => {
      sent.push(argument);
      return 'preview' in argument ? preview
        : { applied: true, files: ['file:///w/app/app.py'], run: 'cd /w/app && python3 app.py' };
    };
    return { sent, execute };
  }

  const PREVIEW = { preview: true, spec: { title: 'T', fields: [{ name: 'a', label: 'A', type: 'text' }] },
                    summary: ['T (table record), 1 field', 'A (a): text'], files: ['file:///w/app/app.py'],
                    folder: 'file:///w/app' };

  it('New Form App previews, asks, and on Create writes the spec it showed', async () => {
    const ui = fakeUi('a form with A', 'file:///w/app', true);
    const server = fakeServer(PREVIEW);
    const told = await runScaffold(ui, server.execute);
    assert.deepStrictEqual(server.sent, [
      { description: 'a form with A', target: 'file:///w/app', preview: true },
      { target: 'file:///w/app', spec: PREVIEW.spec },
    ]);
    assert.deepStrictEqual(ui.asked, ['description', 'folder',
      'confirm: loopcoder: create the form app — T (table record), 1 field | • A (a): text']);
    assert.deepStrictEqual(told, { ok: true, message: 'loopcoder: wrote 1 files. Run the app with: cd /w/app && python3 app.py' });
  });

  it('New Form App writes nothing when the user cancels at any step', async () => {
    for (const [description, folder, answer, calls] of [
      [undefined, 'file:///w/app', true, 0], ['a form', undefined, true, 0], ['a form', 'file:///w/app', false, 1],
    ] as const) {
      const server = fakeServer(PREVIEW);
      assert.strictEqual(await runScaffold(fakeUi(description, folder, answer), server.execute), undefined);
      assert.strictEqual(server.sent.length, calls);
      assert.ok(server.sent.every((a) => 'preview' in a));
    }
  });

  it('New Form App stops on a bad sentence before the folder, and on a preview without a spec before asking', async () => {
    const blank = fakeUi('  ', 'file:///w/app', true);
    await assert.rejects(runScaffold(blank, fakeServer(PREVIEW).execute), /a form needs a description/);
    assert.deepStrictEqual(blank.asked, ['description']);
    const ui = fakeUi('a form', 'file:///w/app', true);
    const server = fakeServer({ summary: [] });
    await assert.rejects(runScaffold(ui, server.execute), /no form spec to confirm/);
    assert.strictEqual(server.sent.length, 1);
    assert.ok(!ui.asked.some((a) => a.startsWith('confirm')));
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
