// The `vscode` module exists only inside VS Code: tests get this stub, with the parts statusBar.ts
// uses and placeholders for what the bundle reads while loading. Loaded with `mocha --require`.
import Module = require('module');

export interface FakeStatusBarItem {
  text: string; tooltip: unknown; command: unknown; backgroundColor: unknown; shown: boolean; disposed: boolean;
  alignment: number; priority: number | undefined;
  show(): void; dispose(): void;
}

export const created: FakeStatusBarItem[] = [];

const vscode = {
  StatusBarAlignment: { Left: 1, Right: 2 },
  ThemeColor: class { constructor(readonly id: string) {} },
  window: {
    createStatusBarItem(alignment: number, priority?: number): FakeStatusBarItem {
      const item: FakeStatusBarItem = {
        text: '', tooltip: undefined, command: undefined, backgroundColor: undefined, shown: false, disposed: false,
        alignment, priority,
        show() { this.shown = true; },
        dispose() { this.disposed = true; },
      };
      created.push(item);
      return item;
    },
  },
};

/** Whatever else the bundled vscode-languageclient touches while loading: classes to extend, enums to read. */
function anything(): any {
  return new Proxy(class {}, {
    get(target: any, key) {
      return key in target || typeof key === 'symbol' || key === 'then' ? target[key] : anything();
    },
  });
}

const stub = new Proxy(vscode as any, { get: (target, key) => (key in target ? target[key] : anything()) });

const load = (Module as any)._load;
(Module as any)._load = function (request: string, ...rest: unknown[]) {
  return request === 'vscode' ? stub : load.call(this, request, ...rest);
};
