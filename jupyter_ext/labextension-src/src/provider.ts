/**
 * Ghost text in notebook cells: an inline completion provider that sends the whole
 * notebook (the server builds the prompt from the cells above, and keeps the notebook warm).
 *
 * `fetch` waits for the first streamed piece and returns it marked incomplete; the
 * completer then calls `stream(token)`, which yields the suggestion as it grows.
 */
import {
  CompletionHandler,
  IInlineCompletionContext,
  IInlineCompletionItem,
  IInlineCompletionList,
  IInlineCompletionProvider,
  InlineCompletionTriggerKind
} from '@jupyterlab/completer';
import { NotebookPanel } from '@jupyterlab/notebook';

import { cellBody } from './cells';
import { ICompletionLine, streamCompletion } from './request';

export interface IProviderSettings {
  enabled: boolean;
  streaming: boolean;
  includeOutputs: boolean;
}

export class LoopcoderInlineProvider implements IInlineCompletionProvider {
  readonly identifier = 'loopcoder';
  readonly name = 'loopcoder';

  settings: IProviderSettings = { enabled: true, streaming: true, includeOutputs: true };

  async fetch(
    request: CompletionHandler.IRequest,
    context: IInlineCompletionContext
  ): Promise<IInlineCompletionList> {
    const panel = context.widget;
    if (!this.settings.enabled || !(panel instanceof NotebookPanel)) {
      return { items: [] };
    }
    const index = panel.content.activeCellIndex;
    const cell = panel.content.activeCell;
    if (!cell || cell.model.type !== 'code') {
      return { items: [] };
    }
    this._abort?.abort(); // a newer keystroke: the server stops the older one too
    const abort = (this._abort = new AbortController());
    const body = {
      ...cellBody(panel, index, this.settings.includeOutputs, request.text),
      offset: request.offset,
      stream: this.settings.streaming,
      multiline: context.triggerKind === InlineCompletionTriggerKind.Invoke
    };
    const lines = streamCompletion(body, abort.signal);
    const first = await lines.next();
    const line: ICompletionLine = first.done ? {} : first.value;
    if (line.error) {
      return { items: [{ insertText: '', error: { message: line.message } }] };
    }
    if (line.done || !this.settings.streaming || first.done) {
      return line.text ? { items: [{ insertText: line.text }] } : { items: [] };
    }
    const token = `loopcoder-${++this._counter}`;
    this._streams.set(token, lines);
    return { items: [{ insertText: line.text ?? '', isIncomplete: true, token }] };
  }

  async *stream(token: string): AsyncGenerator<{ response: IInlineCompletionItem }> {
    const lines = this._streams.get(token);
    this._streams.delete(token);
    if (!lines) {
      return;
    }
    try {
      for await (const line of lines) {
        if (line.error) {
          yield { response: { insertText: '', error: { message: line.message } } };
          return;
        }
        if (line.text !== undefined && !(line.done && line.cancelled)) {
          yield { response: { insertText: line.text, isIncomplete: !line.done } };
        }
      }
    } catch (error) {
      if ((error as Error).name !== 'AbortError') {
        yield { response: { insertText: '', error: { message: String(error) } } };
      }
    }
  }

  private _abort: AbortController | null = null;
  private _counter = 0;
  private _streams = new Map<string, AsyncGenerator<ICompletionLine>>();
}
