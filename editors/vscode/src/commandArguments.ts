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
