// loopcoder for VS Code: a thin client of `loopcoder lsp`. Ghost text is LSP 3.18's
// textDocument/inlineCompletion, which vscode-languageclient 10 implements itself; the
// commands call the server's workspace/executeCommand commands (docs/protocol.md).
import { execFile } from 'child_process';
import * as net from 'net';
import * as vscode from 'vscode';
import {
  DidChangeConfigurationNotification, ExecuteCommandRequest, LanguageClient, LanguageClientOptions, ServerOptions,
  State, StreamInfo, TransportKind,
} from 'vscode-languageclient/node';

import {
  ArgumentError, LspRange, describeReview, editArgument, errorMessage, runScaffold, targetArgument,
} from './commandArguments';
import { resolveExecutable } from './executable';
import { Settings, readSettings } from './settings';
import { timed } from './status';
import { StatusBar } from './statusBar';

let client: LanguageClient | undefined;
let settings: Settings | undefined;
let statusBar: StatusBar;
let output: vscode.LogOutputChannel;

function readConfiguration(): Settings {
  const configuration = vscode.workspace.getConfiguration('loopcoder');
  return readSettings((key) => configuration.get(key));
}

function workspaceFolder(): string | undefined {
  return vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
}

function serverOptions(current: Settings): ServerOptions {
  const launch = current.launch;
  if (launch.kind === 'spawn') {
    const command = resolveExecutable(launch.path, workspaceFolder());
    return { command, args: launch.args, transport: TransportKind.stdio, options: { cwd: workspaceFolder() } };
  }
  return () => new Promise<StreamInfo>((resolve, reject) => {
    const socket = net.connect(launch.port, launch.host);
    socket.once('connect', () => resolve({ reader: socket, writer: socket }));
    socket.once('error', (error) => reject(new Error(`could not connect to loopcoder lsp at ${launch.host}:${launch.port}`
      + ` (${error.message}); start it with \`loopcoder lsp --tcp ${launch.host}:${launch.port}\``)));
  });
}

function clientOptions(current: Settings): LanguageClientOptions {
  const all = current.languages.includes('*');
  const documentSelector = ['file', 'untitled'].flatMap((scheme) =>
    all ? [{ scheme }] : current.languages.map((language) => ({ scheme, language })));
  return {
    documentSelector,
    initializationOptions: current.serverSettings,
    outputChannel: output,
    middleware: {
      provideInlineCompletionItems: (document, position, context, token, next) =>
        timed(async () => next(document, position, context, token), () => token.isCancellationRequested,
              (ms) => statusBar.recordLatency(ms)),
      workspace: {
        // The server pulls section "loopcoder": answer with the server's keys only, not the extension's own.
        configuration: (params) => params.items.map((item) =>
          item.section === 'loopcoder' ? settings?.serverSettings ?? {} : null),
      },
    },
  };
}

async function start(): Promise<void> {
  statusBar.setState('starting');
  try {
    settings = readConfiguration();
    client = new LanguageClient('loopcoder', 'loopcoder', serverOptions(settings), clientOptions(settings));
  } catch (error) {
    return failed(error);
  }
  client.registerProposedFeatures(); // inline completion is standard in this client version; any newer proposals too
  client.onDidChangeState(({ newState }) => {
    statusBar.setState(newState === State.Running ? 'ready' : newState === State.Starting ? 'starting' : 'stopped');
  });
  try {
    await client.start();
  } catch (error) {
    return failed(error);
  }
}

function failed(error: unknown): void {
  const message = errorMessage(error);
  statusBar.setState('failed', message);
  output.appendLine(`loopcoder: ${message}`);
  void vscode.window.showErrorMessage(`loopcoder: ${message}`, 'Open Settings').then((choice) => {
    if (choice) {
      void vscode.commands.executeCommand('workbench.action.openSettings', 'loopcoder');
    }
  });
}

async function restart(): Promise<void> {
  const old = client;
  client = undefined;
  if (old) {
    await old.stop().catch((error) => output.appendLine(`loopcoder: stopping the server: ${errorMessage(error)}`));
  }
  await start();
}

async function onConfigurationChanged(event: vscode.ConfigurationChangeEvent): Promise<void> {
  if (!event.affectsConfiguration('loopcoder')) {
    return;
  }
  if (event.affectsConfiguration('loopcoder.server') || event.affectsConfiguration('loopcoder.languages') || !client) {
    return restart();
  }
  try {
    settings = readConfiguration();
  } catch (error) {
    return void vscode.window.showErrorMessage(`loopcoder: ${errorMessage(error)}`);
  }
  await client.sendNotification(DidChangeConfigurationNotification.type, { settings: { loopcoder: settings.serverSettings } });
}

function runningClient(): LanguageClient {
  if (!client || client.state !== State.Running) {
    throw new ArgumentError('the loopcoder server is not running (see the loopcoder output, or run "loopcoder: Restart Server")');
  }
  return client;
}

function activeEditor(): vscode.TextEditor {
  const editor = vscode.window.activeTextEditor;
  if (!editor) {
    throw new ArgumentError('open a file first');
  }
  return editor;
}

function selectionRange(c: LanguageClient, editor: vscode.TextEditor): LspRange {
  return c.code2ProtocolConverter.asRange(editor.selection);
}

function executeCommand(c: LanguageClient, command: string, argument: object): Promise<any> {
  return c.sendRequest(ExecuteCommandRequest.type, { command, arguments: [argument] });
}

async function review(wholeFile: boolean): Promise<void> {
  const c = runningClient();
  const editor = activeEditor();
  const uri = editor.document.uri.toString();
  const argument = targetArgument(uri, wholeFile ? undefined : selectionRange(c, editor));
  void vscode.window.showInformationMessage(describeReview(await executeCommand(c, 'loopcoder.review', argument)));
}

async function explainOrHint(command: 'loopcoder.explain' | 'loopcoder.hint'): Promise<void> {
  const c = runningClient();
  const editor = activeEditor();
  // The server shows the answer itself: window/showDocument for an explanation, window/showMessage for a hint.
  await executeCommand(c, command, targetArgument(editor.document.uri.toString(), selectionRange(c, editor)));
}

async function edit(): Promise<void> {
  const c = runningClient();
  const editor = activeEditor();
  const instruction = await vscode.window.showInputBox({
    title: 'loopcoder: Edit', prompt: 'What should change in the selection (the whole file if nothing is selected)?',
    placeHolder: 'add logging',
  });
  if (instruction === undefined) {
    return; // cancelled
  }
  const argument = editArgument(editor.document.uri.toString(), selectionRange(c, editor), instruction);
  const result = await executeCommand(c, 'loopcoder.edit', argument);
  if (!result?.applied) {
    void vscode.window.showWarningMessage(`loopcoder: the edit was not applied: ${result?.failureReason ?? 'refused'}`);
  }
}

async function scaffold(): Promise<void> {
  const c = runningClient();
  const told = await runScaffold({
    askDescription: () => Promise.resolve(vscode.window.showInputBox({
      title: 'loopcoder: New Form App', prompt: 'Describe the form in a sentence',
      placeHolder: 'a form to record equipment repairs with date, id, fault type and handler',
    })),
    askFolder: async () => {
      const folders = await vscode.window.showOpenDialog({
        canSelectFolders: true, canSelectFiles: false, canSelectMany: false, openLabel: 'Create the form app here',
        defaultUri: vscode.workspace.workspaceFolders?.[0]?.uri,
      });
      return folders?.[0]?.toString();
    },
    // A modal message rather than a QuickPick: the spec is read as a whole, one field a line, and the only
    // choice is yes or no; a QuickPick would offer each field as something to pick. Closing it is Cancel.
    confirm: async (message, detail) =>
      await vscode.window.showInformationMessage(message, { modal: true, detail }, 'Create') === 'Create',
  }, (argument) => executeCommand(c, 'loopcoder.scaffoldForm', argument));
  if (told) {
    void (told.ok ? vscode.window.showInformationMessage(told.message) : vscode.window.showWarningMessage(told.message));
  }
}

async function showStatus(): Promise<void> {
  const current = settings ?? readConfiguration();
  const executable = resolveExecutable(current.statusPath, workspaceFolder());
  const socket = current.serverSettings.socket;
  const args = ['status', ...(typeof socket === 'string' ? ['--socket', socket] : [])];
  output.appendLine(`$ ${executable} ${args.join(' ')}`);
  output.show(true);
  await new Promise<void>((resolve) => {
    execFile(executable, args, { timeout: 30_000 }, (error, stdout, stderr) => {
      output.append(stdout);
      output.append(stderr);
      if (error) {
        void vscode.window.showWarningMessage(`loopcoder status: ${stderr.trim() || error.message}`);
      }
      resolve();
    });
  });
}

/** A command that reports its failure (a bad setting, a server error) as an error message. */
function command(name: string, run: () => Promise<void>): vscode.Disposable {
  return vscode.commands.registerCommand(name, async () => {
    try {
      await run();
    } catch (error) {
      void vscode.window.showErrorMessage(`loopcoder: ${errorMessage(error)}`);
    }
  });
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  output = vscode.window.createOutputChannel('loopcoder', { log: true });
  statusBar = new StatusBar('loopcoder.showStatus');
  context.subscriptions.push(
    output, statusBar,
    command('loopcoder.reviewFile', () => review(true)),
    command('loopcoder.reviewSelection', () => review(false)),
    command('loopcoder.explainSelection', () => explainOrHint('loopcoder.explain')),
    command('loopcoder.hintSelection', () => explainOrHint('loopcoder.hint')),
    command('loopcoder.editSelection', edit),
    command('loopcoder.newForm', scaffold),
    command('loopcoder.showStatus', showStatus),
    command('loopcoder.restartServer', restart),
    vscode.workspace.onDidChangeConfiguration((event) => void onConfigurationChanged(event)),
  );
  await start();
}

export function deactivate(): Promise<void> | undefined {
  return client?.stop();
}
