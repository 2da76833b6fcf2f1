import * as assert from 'assert';

import { StatusModel, formatMs, timed } from '../src/status';
import { StatusBar } from '../src/statusBar';
import { created } from './vscodeStub';

describe('status', () => {
  it('shows the state, and the latency once ready', () => {
    const model = new StatusModel();
    assert.strictEqual(model.text(), '$(loading~spin) loopcoder');
    model.recordLatency(123.4);
    model.setState('ready');
    assert.strictEqual(model.text(), '$(sparkle) loopcoder 123 ms');
    assert.match(model.tooltip(), /latest suggestion: 123 ms/);
    model.setState('failed', 'no executable "loopcoder" on PATH');
    assert.strictEqual(model.text(), '$(error) loopcoder');
    assert.match(model.tooltip(), /failed \(no executable "loopcoder" on PATH\)/);
    assert.strictEqual(formatMs(2345), '2.3 s');
  });

  it('times a request unless it was cancelled', async () => {
    let clock = 0;
    const seen: number[] = [];
    const result = await timed(async () => { clock += 40; return 'x'; }, () => false, (ms) => seen.push(ms), () => clock);
    assert.strictEqual(result, 'x');
    await timed(async () => { clock += 10; return null; }, () => true, (ms) => seen.push(ms), () => clock);
    assert.deepStrictEqual(seen, [40]);
  });

  it('draws the model on a status bar item that runs `loopcoder status` when clicked', () => {
    const bar = new StatusBar('loopcoder.showStatus');
    const item = created[created.length - 1];
    assert.ok(item.shown);
    assert.strictEqual(item.command, 'loopcoder.showStatus');
    bar.setState('ready');
    bar.recordLatency(87);
    assert.strictEqual(item.text, '$(sparkle) loopcoder 87 ms');
    bar.setState('failed', 'boom');
    assert.strictEqual((item.backgroundColor as { id: string }).id, 'statusBarItem.errorBackground');
    bar.dispose();
    assert.ok(item.disposed);
  });
});
