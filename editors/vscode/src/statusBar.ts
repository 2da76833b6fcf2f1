// The status bar item: StatusModel drawn, with a click that runs `loopcoder status`.
import * as vscode from 'vscode';

import { ServerState, StatusModel } from './status';

export class StatusBar implements vscode.Disposable {
  readonly model = new StatusModel();
  private readonly item: vscode.StatusBarItem;

  constructor(command: string) {
    this.item = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Right, 100);
    this.item.command = command;
    this.render();
    this.item.show();
  }

  setState(state: ServerState, detail?: string): void {
    this.model.setState(state, detail);
    this.render();
  }

  recordLatency(ms: number): void {
    this.model.recordLatency(ms);
    this.render();
  }

  private render(): void {
    this.item.text = this.model.text();
    this.item.tooltip = this.model.tooltip();
    this.item.backgroundColor = this.model.state === 'failed'
      ? new vscode.ThemeColor('statusBarItem.errorBackground') : undefined;
  }

  dispose(): void {
    this.item.dispose();
  }
}
