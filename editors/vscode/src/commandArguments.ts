// The arguments of the server's commands (docs/protocol.md) and how their answers are told. Pure.

export interface LspPosition { line: number; character: number }
export interface LspRange { start: LspPosition; end: LspPosition }

export class ArgumentError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ArgumentError';
  }
}

function isEmpty(range: LspRange): boolean {
  return range.start.line === range.end.line && range.start.character === range.end.character;
}

/** {uri, range?} for loopcoder.review / explain / hint: no range (the whole file) for an empty selection. */
export function targetArgument(uri: string, range?: LspRange): { uri: string; range?: LspRange } {
  return range && !isEmpty(range) ? { uri, range } : { uri };
}

export function editArgument(uri: string, range: LspRange | undefined, instruction: string | undefined) {
  if (!instruction || instruction.trim() === '') {
    throw new ArgumentError('an edit needs an instruction, such as "add logging"');
  }
  return { ...targetArgument(uri, range), instruction: instruction.trim() };
}

export function scaffoldArgument(description: string | undefined, folderUri: string | undefined) {
  if (!description || description.trim() === '') {
    throw new ArgumentError('a form needs a description, such as "a form to record equipment repairs with date, id, '
      + 'fault type and handler"');
  }
  if (!folderUri) {
    throw new ArgumentError('a form needs a target folder');
  }
  return { description: description.trim(), target: folderUri };
}

export function describeReview(result: { findings?: unknown[]; complete?: boolean } | null | undefined): string {
  const count = Array.isArray(result?.findings) ? result!.findings!.length : 0;
  const partial = result?.complete === false ? ' (the answer ran out of loopcoder.actionTokens)' : '';
  return count === 0 ? `loopcoder: no findings${partial}`
    : `loopcoder: ${count} finding${count === 1 ? '' : 's'}, shown in Problems${partial}`;
}

export function describeScaffold(result: { applied?: boolean; files?: string[]; run?: string; failureReason?: string }
                                 | null | undefined): { ok: boolean; message: string } {
  if (!result?.applied) {
    return { ok: false, message: `loopcoder: the form's files were not written: ${result?.failureReason ?? 'the edit was refused'}` };
  }
  return { ok: true, message: `loopcoder: wrote ${result.files?.length ?? 0} files. Run the app with: ${result.run}` };
}

/** The message of a failed request: JSON-RPC errors carry the server's own words. */
export function errorMessage(error: unknown): string {
  if (error instanceof Error) {
    return error.message;
  }
  if (typeof error === 'object' && error !== null && typeof (error as { message?: unknown }).message === 'string') {
    return (error as { message: string }).message;
  }
  return String(error);
}

/** What loopcoder.scaffoldForm answers with "preview": true (docs/protocol.md): nothing is written yet. */
export interface ScaffoldPreview {
  spec?: unknown; summary?: string[]; notes?: string[]; repairs?: string[]; files?: string[]; folder?: string;
}

/** The file path of a file:// URI, for showing. */
function shownPath(uri: string | undefined): string {
  if (!uri) {
    return '';
  }
  try {
    return decodeURIComponent(new URL(uri).pathname).replace(/^\/([A-Za-z]:)/, '$1');
  } catch {
    return uri;
  }
}

/** The argument that writes the previewed app: its spec, as the user saw it (the model is not asked again). */
export function confirmArgument(preview: ScaffoldPreview | null | undefined, folderUri: string) {
  const spec = preview?.spec;
  if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) {
    throw new ArgumentError('the server\'s preview has no form spec to confirm');
  }
  return { target: folderUri, spec };
}

/** The confirmation: a question, and as its detail the spec's summary (the server's words, the same in every
 *  editor), the notes on what the sentence said that the spec does not hold, and where the files go. */
export function describePreview(preview: ScaffoldPreview): { message: string; detail: string } {
  const [title, ...fields] = preview.summary ?? [];
  const lines = [...fields.map((f) => `• ${f}`)];
  if (preview.notes?.length) {
    lines.push('', 'Notes:', ...preview.notes.map((n) => `• ${n}`));
  }
  if (preview.repairs?.length) {
    lines.push('', 'Names changed:', ...preview.repairs.map((r) => `• ${r}`));
  }
  lines.push('', `${preview.files?.length ?? 0} files in ${shownPath(preview.folder)}`);
  return { message: title ? `loopcoder: create the form app — ${title}` : 'loopcoder: create the form app',
           detail: lines.join('\n') };
}

/** What the New Form App command asks of the editor; VS Code's dialogs in extension.ts, fakes in the tests. */
export interface ScaffoldUi {
  askDescription(): Promise<string | undefined>;
  askFolder(): Promise<string | undefined>; // a folder URI
  confirm(message: string, detail: string): Promise<boolean>;
}

/** The New Form App flow: the sentence, the folder, a preview (nothing written), the user's confirmation, then
 *  the spec they confirmed is written. Undefined when the user cancelled at any step: nothing was written. */
export async function runScaffold(ui: ScaffoldUi, execute: (argument: object) => Promise<unknown>)
  : Promise<{ ok: boolean; message: string } | undefined> {
  const description = await ui.askDescription();
  if (description === undefined) {
    return undefined;
  }
  scaffoldArgument(description, 'pending'); // says what is missing before the folder dialog opens
  const folder = await ui.askFolder();
  if (!folder) {
    return undefined;
  }
  const preview = await execute({ ...scaffoldArgument(description, folder), preview: true }) as ScaffoldPreview;
  const argument = confirmArgument(preview, folder); // a bad answer is an error before the user is asked
  const { message, detail } = describePreview(preview);
  if (!await ui.confirm(message, detail)) {
    return undefined;
  }
  return describeScaffold(await execute(argument) as Parameters<typeof describeScaffold>[0]);
}
